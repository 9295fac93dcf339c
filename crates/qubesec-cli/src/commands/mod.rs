//! One module per command; shared loading and parsing helpers here.

use std::fmt::Display;
use std::io::Write;
use std::path::Path;

use qubesec_core::{DeprecatedAlias, PrivateKey, PublicKey};
use zeroize::Zeroizing;

use crate::cli::Command;
use crate::error::Failure;
use crate::files::{self, PEM_LIMIT};

mod cert;
mod fingerprint;
mod kdf;
mod kem;
mod rand;
mod sig;

/// Runs one parsed command.
pub(crate) fn dispatch(command: Command, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), Failure> {
    match command {
        Command::Kem(c) => kem::run(c, err),
        Command::Sig(c) => sig::run(c, out, err),
        Command::Kdf(a) => kdf::run(&a),
        Command::Cert(c) => cert::run(&c, out),
        Command::Csr(c) => cert::run_csr(&c),
        Command::Fingerprint(a) => fingerprint::run(&a, out),
        Command::Rand(a) => rand::run(&a, out),
    }
}

/// Prints the one-line deprecation warning for an alias, if one was used.
fn warn_deprecated(alias: Option<DeprecatedAlias>, err: &mut dyn Write) {
    if let Some(alias) = alias {
        // A warning that cannot be printed is not worth failing the command over.
        let _ = writeln!(err, "qubesec: warning: {alias}");
    }
}

/// `KemAlgorithm::parse` or `SignatureAlgorithm::parse`.
type AlgParser<A> = fn(&str) -> qubesec_core::Result<(A, Option<DeprecatedAlias>)>;

/// Parses `--alg` for one kind of algorithm (KEM or signature), warning on a
/// deprecated alias; a valid name of the other kind gets `wrong_kind`'s hint.
fn parse_alg_of_kind<A>(
    name: &str,
    parse: AlgParser<A>,
    wrong_kind: impl FnOnce(qubesec_core::Algorithm) -> String,
    err: &mut dyn Write,
) -> Result<A, Failure> {
    match parse(name) {
        Ok((alg, alias)) => {
            warn_deprecated(alias, err);
            Ok(alg)
        }
        Err(e) => Err(match qubesec_core::Algorithm::parse(name) {
            Ok((other, _)) => Failure::input("--alg", wrong_kind(other)),
            Err(_) => Failure::input("--alg", e),
        }),
    }
}

/// The canonical names, comma-separated.
fn names<T: Display>(all: &[T]) -> String {
    all.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// `kem keygen` / `sig keygen` after parsing: generates a key for `alg` and
/// writes the private key (seed-only PKCS#8 PEM, mode 0600) and its SPKI PEM.
fn generate_key_pair(alg: qubesec_core::Algorithm, key: &Path, public: &Path, command: &str) -> Result<(), Failure> {
    distinct_outputs(("--key", key), ("--pub", public))?;
    let private = PrivateKey::generate(alg).map_err(|e| Failure::input(command, e))?;
    let public_key = private.public_key().map_err(|e| Failure::input(command, e))?;
    let private_pem = private.to_pkcs8_pem().map_err(|e| Failure::input(key.display(), e))?;
    let public_pem = public_key.to_spki_pem().map_err(|e| Failure::input(public.display(), e))?;
    files::write(key, private_pem.as_bytes(), files::Sensitivity::Secret)?;
    files::write(public, public_pem.as_bytes(), files::Sensitivity::Public)
}

/// Reads a PEM private key, naming the file in any error.
fn load_private_key(path: &Path) -> Result<PrivateKey, Failure> {
    let pem = files::read(path, Some(PEM_LIMIT))?;
    PrivateKey::from_pem(&pem).map_err(|e| Failure::input(path.display(), e))
}

/// Reads a PEM public key or certificate, naming the file in any error.
fn load_public_key(path: &Path) -> Result<PublicKey, Failure> {
    let pem = files::read(path, Some(PEM_LIMIT))?;
    PublicKey::from_pem(&pem).map_err(|e| Failure::input(path.display(), e))
}

/// Parses an optional hex option (`--context`, `--salt-hex`, ...); absent means empty.
fn parse_hex(option: &str, value: Option<&str>) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let Some(text) = value else {
        return Ok(Zeroizing::new(Vec::new()));
    };
    hex::decode(text.trim()).map(Zeroizing::new).map_err(|e| {
        let problem = match e {
            hex::FromHexError::OddLength => "odd number of hex digits".to_owned(),
            hex::FromHexError::InvalidHexCharacter { c, index } => {
                format!("invalid hex character {c:?} at position {index}")
            }
            other => other.to_string(),
        };
        Failure::input(option, format_args!("not valid hex: {problem}"))
    })
}

/// Parses a decimal count for `option`, which must lie in `min..=max`.
fn parse_count(option: &str, text: &str, min: usize, max: usize, unit: impl Display) -> Result<usize, Failure> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| Failure::input(option, format_args!("{text:?} is not a whole number of {unit}")))?;
    if n < min || n > max {
        return Err(Failure::input(option, format_args!("{n} is out of range; expected {min} to {max} {unit}")));
    }
    Ok(n)
}

/// Refuses to let two outputs of one command clobber each other.
fn distinct_outputs(a: (&str, &Path), b: (&str, &Path)) -> Result<(), Failure> {
    if files::same_file(a.1, b.1) {
        return Err(Failure::input(
            b.1.display(),
            format_args!("{} and {} name the same file; refusing to overwrite one with the other", a.0, b.0),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_errors_are_clear() {
        assert_eq!(*parse_hex("--context", Some("00ff")).unwrap(), vec![0, 255]);
        assert!(parse_hex("--context", None).unwrap().is_empty());
        let e = parse_hex("--salt-hex", Some("abc")).unwrap_err();
        assert_eq!(e.message(), "qubesec: --salt-hex: not valid hex: odd number of hex digits");
        let e = parse_hex("--info-hex", Some("zz")).unwrap_err();
        assert_eq!(e.message(), "qubesec: --info-hex: not valid hex: invalid hex character 'z' at position 0");
    }

    #[test]
    fn counts_are_range_checked() {
        assert_eq!(parse_count("--len", "32", 1, 64, "bytes").unwrap(), 32);
        assert!(parse_count("--len", "0", 1, 64, "bytes").unwrap_err().message().contains("out of range"));
        assert!(parse_count("--len", "-1", 1, 64, "bytes").unwrap_err().message().contains("not a whole number"));
    }
}
