//! `qubesec cert ...`: reserved for the X.509 issue.

use crate::cli::CertCommand;
use crate::error::{Failure, Status};

/// The exact message the contract's placeholder promises.
pub(crate) const NOT_YET: &str = "qubesec cert: not yet implemented (X.509 support lands with the X.509 issue)";

pub(super) fn run(_command: &CertCommand) -> Result<(), Failure> {
    Err(Failure::line(Status::Usage, NOT_YET.to_owned()))
}
