//! `qubesec kdf`: HKDF (RFC 5869).

use qubesec_core::{HashAlgorithm, kdf};

use super::{parse_count, parse_hex};
use crate::cli::KdfArgs;
use crate::error::Failure;
use crate::files::{self, Sensitivity};

pub(super) fn run(args: &KdfArgs) -> Result<(), Failure> {
    let (hash, _) = HashAlgorithm::parse(&args.hash).map_err(|e| Failure::input("--hash", e))?;
    let salt = parse_hex("--salt-hex", args.salt_hex.as_deref())?;
    let info = parse_hex("--info-hex", args.info_hex.as_deref())?;
    let len = parse_count("--len", &args.len, 1, kdf::max_output_len(hash), format_args!("bytes for {hash}"))?;
    let ikm = files::read(&args.ikm, None)?;
    let okm = kdf::derive(hash, &ikm, &salt, &info, len).map_err(|e| Failure::input("--len", e))?;
    files::write(&args.out, &okm, Sensitivity::Secret)
}
