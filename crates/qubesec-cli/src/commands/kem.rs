//! `qubesec kem keygen|encaps|decaps`.

use std::io::Write;

use qubesec_core::{KemAlgorithm, KemCiphertext};

use super::{distinct_outputs, generate_key_pair, load_private_key, load_public_key, names, parse_alg_of_kind};
use crate::cli::{KemCommand, KemDecapsArgs, KemEncapsArgs, KemKeygenArgs};
use crate::error::Failure;
use crate::files::{self, Sensitivity};

/// Largest ciphertext file worth reading (the largest ciphertext is 1568 bytes).
const CIPHERTEXT_LIMIT: u64 = 64 * 1024;

pub(super) fn run(command: KemCommand, err: &mut dyn Write) -> Result<(), Failure> {
    match command {
        KemCommand::Keygen(a) => keygen(&a, err),
        KemCommand::Encaps(a) => encaps(&a),
        KemCommand::Decaps(a) => decaps(&a),
    }
}

/// Parses `--alg`, accepting only KEM algorithms.
fn parse_alg(name: &str, err: &mut dyn Write) -> Result<KemAlgorithm, Failure> {
    let hint = |other| {
        format!(
            "{other} is a signature algorithm; `kem keygen` needs a KEM: {} (use `sig keygen` for signature keys)",
            names(&KemAlgorithm::ALL)
        )
    };
    parse_alg_of_kind(name, KemAlgorithm::parse, hint, err)
}

fn keygen(args: &KemKeygenArgs, err: &mut dyn Write) -> Result<(), Failure> {
    let alg = parse_alg(&args.alg, err)?;
    generate_key_pair(alg.into(), &args.key, &args.public, "kem keygen")
}

fn encaps(args: &KemEncapsArgs) -> Result<(), Failure> {
    distinct_outputs(("--ciphertext", &args.ciphertext), ("--secret", &args.secret))?;
    let public = load_public_key(&args.public)?.into_kem().map_err(|e| Failure::input(args.public.display(), e))?;
    let (ciphertext, secret) = public.encapsulate().map_err(|e| Failure::input("kem encaps", e))?;
    files::write(&args.ciphertext, ciphertext.as_bytes(), Sensitivity::Public)?;
    files::write(&args.secret, secret.as_bytes(), Sensitivity::Secret)
}

fn decaps(args: &KemDecapsArgs) -> Result<(), Failure> {
    let key = load_private_key(&args.key)?.into_kem().map_err(|e| Failure::input(args.key.display(), e))?;
    let bytes = files::read(&args.ciphertext, Some(CIPHERTEXT_LIMIT))?;
    let ciphertext = KemCiphertext::from_bytes(key.algorithm(), &bytes)
        .map_err(|e| Failure::input(args.ciphertext.display(), format_args!("{e} (the key is {})", key.algorithm())))?;
    let secret = key.decapsulate(&ciphertext).map_err(|e| Failure::input(args.ciphertext.display(), e))?;
    files::write(&args.secret, secret.as_bytes(), Sensitivity::Secret)
}
