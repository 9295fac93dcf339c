//! `qubesec sig keygen|sign|verify`.

use std::io::Write;

use qubesec_core::{Error, PublicKey, SignatureAlgorithm};

use super::{generate_key_pair, load_private_key, load_public_key, names, parse_alg_of_kind, parse_hex};
use qubesec_core::sig::composite::{CompositeAlgorithm, CompositeSigningKey};

use crate::cli::{SigCommand, SigKeygenArgs, SigSignArgs, SigVerifyArgs};
use crate::error::Failure;
use crate::files::{self, Sensitivity};

/// FIPS 204/205 limit on context strings.
const MAX_CONTEXT: usize = 255;

/// Largest signature file worth reading (the largest signature is 49856 bytes).
const SIGNATURE_LIMIT: u64 = 1 << 20;

pub(super) fn run(command: SigCommand, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), Failure> {
    match command {
        SigCommand::Keygen(a) => keygen(&a, err),
        SigCommand::Sign(a) => sign(&a),
        SigCommand::Verify(a) => verify(&a, out),
    }
}

/// Parses `--alg`, accepting only signature algorithms.
fn parse_alg(name: &str, err: &mut dyn Write) -> Result<SignatureAlgorithm, Failure> {
    let hint = |other| {
        format!(
            "{other} is a KEM; `sig keygen` needs a signature algorithm: {} (use `kem keygen` for KEM keys)",
            names(&SignatureAlgorithm::ALL)
        )
    };
    parse_alg_of_kind(name, SignatureAlgorithm::parse, hint, err)
}

/// Parses `--context`, enforcing the 255-byte limit up front.
fn parse_context(value: Option<&str>) -> Result<zeroize::Zeroizing<Vec<u8>>, Failure> {
    let context = parse_hex("--context", value)?;
    if context.len() > MAX_CONTEXT {
        return Err(Failure::input(
            "--context",
            format_args!("context is {} bytes; at most {MAX_CONTEXT} are allowed", context.len()),
        ));
    }
    Ok(context)
}

fn keygen(args: &SigKeygenArgs, err: &mut dyn Write) -> Result<(), Failure> {
    // Composite ML-DSA + ECDSA keys are for certificates; they have their own names.
    if let Ok(composite) = args.alg.trim().parse::<CompositeAlgorithm>() {
        return keygen_composite(composite, args);
    }
    let alg = parse_alg(&args.alg, err)?;
    generate_key_pair(alg.into(), &args.key, &args.public, "sig keygen")
}

fn keygen_composite(alg: CompositeAlgorithm, args: &SigKeygenArgs) -> Result<(), Failure> {
    super::distinct_outputs(("--key", &args.key), ("--pub", &args.public))?;
    let key = CompositeSigningKey::generate(alg).map_err(|e| Failure::input("sig keygen", e))?;
    let private_pem = key.to_pkcs8_pem().map_err(|e| Failure::input(args.key.display(), e))?;
    let public_pem = key.verifying_key().to_spki_pem().map_err(|e| Failure::input(args.public.display(), e))?;
    files::write(&args.key, private_pem.as_bytes(), files::Sensitivity::Secret)?;
    files::write(&args.public, public_pem.as_bytes(), files::Sensitivity::Public)
}

fn sign(args: &SigSignArgs) -> Result<(), Failure> {
    let context = parse_context(args.context.as_deref())?;
    let key = load_private_key(&args.key)?.into_signature().map_err(|e| Failure::input(args.key.display(), e))?;
    let message = files::read(&args.input, None)?;
    let signature = key.sign(&message, &context).map_err(|e| match e {
        Error::ContextTooLong { .. } => Failure::input("--context", e),
        other => Failure::input(args.key.display(), other),
    })?;
    files::write(&args.out, signature.as_bytes(), Sensitivity::Public)
}

fn verify(args: &SigVerifyArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let context = parse_context(args.context.as_deref())?;
    let public: PublicKey = load_public_key(&args.public)?;
    let key = public.into_signature().map_err(|e| Failure::input(args.public.display(), e))?;
    let message = files::read(&args.input, None)?;
    let signature = files::read(&args.sig, Some(SIGNATURE_LIMIT))?;
    match key.verify_bytes(&message, &context, &signature) {
        Ok(()) => writeln!(out, "OK").map_err(|e| Failure::io("stdout", "cannot write", &e)),
        Err(Error::VerificationFailed) => Err(Failure::invalid(
            args.sig.display(),
            format_args!(
                "invalid {} signature: it does not verify for {} with {}{}",
                key.algorithm(),
                args.input.display(),
                args.public.display(),
                if context.is_empty() { " and an empty context" } else { " and the given context" }
            ),
        )),
        Err(e @ Error::ContextTooLong { .. }) => Err(Failure::input("--context", e)),
        Err(e) => Err(Failure::input(args.sig.display(), e)),
    }
}
