//! `qubesec fingerprint FILE.pem`.

use std::io::Write;

use qubesec_core::Fingerprint;
use qubesec_core::encoding::{self, CERTIFICATE_LABEL, PRIVATE_KEY_LABEL, PUBLIC_KEY_LABEL};

use crate::cli::FingerprintArgs;
use crate::error::Failure;
use crate::files::{self, PEM_LIMIT};

pub(super) fn run(args: &FingerprintArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let shown = args.file.display();
    let pem = files::read(&args.file, Some(PEM_LIMIT))?;
    let (label, der) = encoding::decode_pem(&pem).map_err(|e| Failure::input(&shown, e))?;
    let spki = match label.as_str() {
        PUBLIC_KEY_LABEL | CERTIFICATE_LABEL | PRIVATE_KEY_LABEL => super::cert::any_spki(&label, &der),
        other => {
            return Err(Failure::input(
                &shown,
                format_args!(
                    "expected a PEM \"{PUBLIC_KEY_LABEL}\", \"{CERTIFICATE_LABEL}\" or \"{PRIVATE_KEY_LABEL}\" block, found \"{other}\""
                ),
            ));
        }
    }
    .map_err(|e| Failure::input(&shown, e))?;
    let fingerprint = Fingerprint::of_bytes(&spki);
    writeln!(out, "{fingerprint}\n{}", fingerprint.short()).map_err(|e| Failure::io("stdout", "cannot write", &e))
}
