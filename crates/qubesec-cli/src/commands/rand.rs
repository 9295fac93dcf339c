//! `qubesec rand --bytes N [--hex]`.

use std::io::Write;

use super::parse_count;
use crate::cli::RandArgs;
use crate::error::Failure;

/// Upper bound on `--bytes`, to catch typos rather than stream for hours.
const MAX_BYTES: usize = 1 << 30;

/// Bytes drawn from the OS per write.
const CHUNK: usize = 64 * 1024;

pub(super) fn run(args: &RandArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let total = parse_count("--bytes", &args.bytes, 1, MAX_BYTES, "bytes")?;
    let mut left = total;
    while left > 0 {
        let n = left.min(CHUNK);
        let chunk = qubesec_core::rand::bytes(n).map_err(|e| Failure::input("rand", e))?;
        let written = if args.hex { out.write_all(hex::encode(&chunk[..]).as_bytes()) } else { out.write_all(&chunk) };
        written.map_err(|e| Failure::io("stdout", "cannot write", &e))?;
        left -= n;
    }
    if args.hex {
        writeln!(out).map_err(|e| Failure::io("stdout", "cannot write", &e))?;
    }
    Ok(())
}
