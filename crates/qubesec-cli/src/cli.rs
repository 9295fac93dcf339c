//! The command-line grammar (clap derive). Doc comments here double as
//! `--help` text.
//!
//! Algorithm names, hex strings and lengths are taken as plain strings and
//! validated by the commands, so that bad input gets the contract's one-line
//! `qubesec: SUBJECT: PROBLEM` message and deprecated aliases get their single
//! warning line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Exit status: 0 on success (for `sig verify` / `cert verify`: valid), 1 when `sig verify` \
finds the signature invalid or `cert verify` the chain invalid, 2 for a usage error or bad input (with one line on stderr \
naming the file and the problem).

Algorithms: ML-KEM-512, ML-KEM-768, ML-KEM-1024, X-Wing (KEMs); ML-DSA-44, ML-DSA-65, \
ML-DSA-87 and the twelve SLH-DSA sets, e.g. SLH-DSA-SHA2-128s (signatures); composite \
ML-DSA + ECDSA for `sig keygen` and certificates: MLDSA44-ECDSA-P256-SHA256, \
MLDSA65-ECDSA-P256-SHA512, MLDSA65-ECDSA-P384-SHA512, MLDSA87-ECDSA-P384-SHA512. Names are \
case-insensitive; Kyber512/768/1024 and Dilithium2/3/5 are accepted with a deprecation warning.";

/// Post-quantum keys, key encapsulation, signatures and key derivation for QubeSec.
///
/// Private keys are PEM `PRIVATE KEY` (PKCS#8; the seed-only form for ML-KEM and
/// ML-DSA); public keys are PEM `PUBLIC KEY` (SubjectPublicKeyInfo), and a PEM
/// certificate is accepted wherever a public key is read. Binary outputs
/// (ciphertexts, shared secrets, signatures, derived keys) are raw bytes.
#[derive(Debug, Parser)]
#[command(name = "qubesec", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Key encapsulation (ML-KEM, X-Wing): keygen, encaps, decaps.
    #[command(subcommand)]
    Kem(KemCommand),
    /// Signatures (ML-DSA, SLH-DSA): keygen, sign, verify.
    #[command(subcommand)]
    Sig(SigCommand),
    /// Derive key material with HKDF (RFC 5869).
    #[command(after_help = "The derived key is written raw to --out (mode 0600); nothing secret is printed.")]
    Kdf(KdfArgs),
    /// X.509 certificates: self-sign, issue, verify, show.
    #[command(subcommand)]
    Cert(CertCommand),
    /// PKCS#10 certificate signing requests.
    #[command(subcommand)]
    Csr(CsrCommand),
    /// Print the SHA-256 fingerprint of a public key, certificate or private key.
    ///
    /// Prints two lines: `sha256:` followed by 64 lowercase hex digits of the
    /// SHA-256 of the DER SubjectPublicKeyInfo, then the short form (the first
    /// 10 of those hex digits). For a certificate or private key, the
    /// fingerprint is that of its public key.
    Fingerprint(FingerprintArgs),
    /// Write random bytes from the operating system's CSPRNG to stdout.
    Rand(RandArgs),
}

/// `qubesec kem ...`
#[derive(Debug, Subcommand)]
pub enum KemCommand {
    /// Generate a KEM key pair.
    ///
    /// Writes the private key as PKCS#8 PEM (seed-only form, mode 0600) and the
    /// public key as SubjectPublicKeyInfo PEM. Existing files are replaced atomically.
    Keygen(KemKeygenArgs),
    /// Encapsulate a fresh shared secret to a public key.
    ///
    /// Writes the ciphertext (send it to the key holder) and the 32-byte shared
    /// secret (mode 0600), both raw.
    Encaps(KemEncapsArgs),
    /// Recover the shared secret from a ciphertext with the private key.
    ///
    /// A well-formed but wrong ciphertext still succeeds, yielding the FIPS 203
    /// implicit-rejection secret (which will not match the sender's); a
    /// ciphertext of the wrong length is bad input.
    Decaps(KemDecapsArgs),
}

/// Arguments of `kem keygen`.
#[derive(Debug, Args)]
pub struct KemKeygenArgs {
    /// KEM algorithm: ML-KEM-512, ML-KEM-768, ML-KEM-1024 or X-Wing.
    #[arg(long, value_name = "ALG")]
    pub alg: String,
    /// Where to write the private key (PEM `PRIVATE KEY`, mode 0600).
    #[arg(long, value_name = "KEY.pem")]
    pub key: PathBuf,
    /// Where to write the public key (PEM `PUBLIC KEY`).
    #[arg(long = "pub", value_name = "PUB.pem")]
    pub public: PathBuf,
}

/// Arguments of `kem encaps`.
#[derive(Debug, Args)]
pub struct KemEncapsArgs {
    /// The recipient's public key (PEM `PUBLIC KEY` or `CERTIFICATE`).
    #[arg(long = "pub", value_name = "PUB.pem")]
    pub public: PathBuf,
    /// Where to write the ciphertext (raw bytes).
    #[arg(long, value_name = "CT.bin")]
    pub ciphertext: PathBuf,
    /// Where to write the shared secret (32 raw bytes, mode 0600).
    #[arg(long, value_name = "SS.bin")]
    pub secret: PathBuf,
}

/// Arguments of `kem decaps`.
#[derive(Debug, Args)]
pub struct KemDecapsArgs {
    /// The private key (PEM `PRIVATE KEY`).
    #[arg(long, value_name = "KEY.pem")]
    pub key: PathBuf,
    /// The ciphertext (raw bytes).
    #[arg(long, value_name = "CT.bin")]
    pub ciphertext: PathBuf,
    /// Where to write the shared secret (32 raw bytes, mode 0600).
    #[arg(long, value_name = "SS.bin")]
    pub secret: PathBuf,
}

/// `qubesec sig ...`
#[derive(Debug, Subcommand)]
pub enum SigCommand {
    /// Generate a signature key pair.
    ///
    /// Writes the private key as PKCS#8 PEM (seed-only form for ML-DSA, mode
    /// 0600) and the public key as SubjectPublicKeyInfo PEM. Existing files are
    /// replaced atomically.
    Keygen(SigKeygenArgs),
    /// Sign a message (pure mode, hedged/randomized signing).
    Sign(SigSignArgs),
    /// Verify a signature: exit 0 if valid, 1 if invalid, 2 on bad input.
    Verify(SigVerifyArgs),
}

/// Arguments of `sig keygen`.
#[derive(Debug, Args)]
pub struct SigKeygenArgs {
    /// Signature algorithm: ML-DSA-44, ML-DSA-65, ML-DSA-87 or an SLH-DSA set
    /// (e.g. SLH-DSA-SHA2-128s, SLH-DSA-SHAKE-256f).
    #[arg(long, value_name = "ALG")]
    pub alg: String,
    /// Where to write the private key (PEM `PRIVATE KEY`, mode 0600).
    #[arg(long, value_name = "KEY.pem")]
    pub key: PathBuf,
    /// Where to write the public key (PEM `PUBLIC KEY`).
    #[arg(long = "pub", value_name = "PUB.pem")]
    pub public: PathBuf,
}

/// Arguments of `sig sign`.
#[derive(Debug, Args)]
pub struct SigSignArgs {
    /// The private key (PEM `PRIVATE KEY`).
    #[arg(long, value_name = "KEY.pem")]
    pub key: PathBuf,
    /// The message to sign (`-` for stdin).
    #[arg(long = "in", value_name = "MSG")]
    pub input: PathBuf,
    /// Where to write the signature (raw bytes).
    #[arg(long, value_name = "SIG.bin")]
    pub out: PathBuf,
    /// Context string as hex, at most 255 bytes (FIPS 204/205); empty if not given.
    #[arg(long, value_name = "HEX")]
    pub context: Option<String>,
}

/// Arguments of `sig verify`.
#[derive(Debug, Args)]
pub struct SigVerifyArgs {
    /// The signer's public key (PEM `PUBLIC KEY` or `CERTIFICATE`).
    #[arg(long = "pub", value_name = "PUB.pem")]
    pub public: PathBuf,
    /// The signed message (`-` for stdin).
    #[arg(long = "in", value_name = "MSG")]
    pub input: PathBuf,
    /// The signature (raw bytes).
    #[arg(long, value_name = "SIG.bin")]
    pub sig: PathBuf,
    /// Context string as hex, at most 255 bytes; must equal the signer's.
    #[arg(long, value_name = "HEX")]
    pub context: Option<String>,
}

/// Arguments of `kdf`.
#[derive(Debug, Args)]
pub struct KdfArgs {
    /// Hash function: sha256, sha384, sha512, sha3-256 or sha3-512.
    #[arg(long, value_name = "H")]
    pub hash: String,
    /// Input key material (raw bytes; `-` for stdin).
    #[arg(long, value_name = "IKM.bin")]
    pub ikm: PathBuf,
    /// Salt as hex (default: empty, i.e. HashLen zero bytes).
    #[arg(long, value_name = "HEX")]
    pub salt_hex: Option<String>,
    /// Context/application info as hex (default: empty).
    #[arg(long, value_name = "HEX")]
    pub info_hex: Option<String>,
    /// Output length in bytes: 1 to 255 times the hash length.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub len: String,
    /// Where to write the derived key (raw bytes, mode 0600).
    #[arg(long, value_name = "OKM.bin")]
    pub out: PathBuf,
}

/// Arguments of `fingerprint`.
#[derive(Debug, Args)]
pub struct FingerprintArgs {
    /// A PEM `PUBLIC KEY`, `CERTIFICATE` or `PRIVATE KEY` file.
    #[arg(value_name = "FILE.pem")]
    pub file: PathBuf,
}

/// Arguments of `rand`.
#[derive(Debug, Args)]
pub struct RandArgs {
    /// Number of random bytes (1 to 1073741824).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub bytes: String,
    /// Print lowercase hex and a newline instead of raw bytes.
    #[arg(long)]
    pub hex: bool,
}

/// `qubesec cert ...`.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Create a self-signed certificate (a root CA with --ca).
    SelfSign(CertSelfSignArgs),
    /// Issue a certificate signed by a CA, for a public key or a CSR.
    Issue(CertIssueArgs),
    /// Verify a certificate chain up to a trust anchor.
    #[command(after_help = "Checks every signature, validity at the current time, issuer/subject name chaining, \
and that every issuer is a CA (critical basicConstraints cA=true, keyCertSign, pathLen respected). \
Prints OK and exits 0 when valid; exits 1 with the failing certificate and reason when invalid.")]
    Verify(CertVerifyArgs),
    /// Print a human-readable summary of a certificate (or of each certificate in a PEM bundle).
    Show(CertShowArgs),
}

/// Arguments of `cert self-sign`.
#[derive(Debug, Args)]
pub struct CertSelfSignArgs {
    /// The signing (and subject) private key.
    #[arg(long, value_name = "KEY.pem")]
    pub key: PathBuf,
    /// What the certificate says about its subject.
    #[command(flatten)]
    pub profile: CertProfileArgs,
}

/// Subject, names, validity and CA flag: shared by `cert self-sign` and `cert issue`.
#[derive(Debug, Args)]
pub struct CertProfileArgs {
    /// Subject distinguished name (RFC 4514, most specific first), e.g. "CN=example,O=QubeSec".
    /// Required, except with `cert issue --csr` where it defaults to the CSR's subject.
    #[arg(long, value_name = "DN")]
    pub subject: Option<String>,
    /// Subject alternative names: DNS, IP, URI and email (each repeatable).
    #[command(flatten)]
    pub names: SanArgs,
    /// Validity in days (default 90; notBefore is set 5 minutes back).
    #[arg(long, value_name = "N")]
    pub days: Option<String>,
    /// Make it a CA certificate (keyCertSign, cRLSign, critical basicConstraints cA=true).
    #[arg(long)]
    pub ca: bool,
    /// The CA's path length constraint (needs --ca).
    #[arg(long, value_name = "N", requires = "ca")]
    pub path_len: Option<String>,
    /// Where to write the certificate (PEM).
    #[arg(long, value_name = "CERT.pem")]
    pub out: PathBuf,
}

/// Subject alternative names and extended key usages.
#[derive(Debug, Args)]
pub struct SanArgs {
    /// DNS subject alternative name (repeatable).
    #[arg(long, value_name = "NAME")]
    pub dns: Vec<String>,
    /// IP address subject alternative name (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub ip: Vec<String>,
    /// URI subject alternative name, e.g. a SPIFFE ID (repeatable).
    #[arg(long, value_name = "URI")]
    pub uri: Vec<String>,
    /// Email subject alternative name (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub email: Vec<String>,
    /// Extended key usage: serverAuth, clientAuth, codeSigning, emailProtection,
    /// timeStamping, OCSPSigning or a dotted OID (repeatable).
    #[arg(long, value_name = "USAGE")]
    pub eku: Vec<String>,
}

/// Arguments of `cert issue`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("subject-key").required(true).args(["public", "csr"])))]
pub struct CertIssueArgs {
    /// The issuing CA's certificate.
    #[arg(long, value_name = "CA.pem")]
    pub ca_cert: PathBuf,
    /// The issuing CA's private key.
    #[arg(long, value_name = "CA-KEY.pem")]
    pub ca_key: PathBuf,
    /// The subject's public key (or a certificate holding it).
    #[arg(long = "pub", value_name = "PUB.pem")]
    pub public: Option<PathBuf>,
    /// A certificate signing request: its signature is checked, its subject
    /// is the default subject, and its requested SANs and EKUs are copied
    /// (its requested CA flag and key usages never are).
    #[arg(long, value_name = "CSR.pem")]
    pub csr: Option<PathBuf>,
    /// What the certificate says about its subject.
    #[command(flatten)]
    pub profile: CertProfileArgs,
}

/// Arguments of `cert verify`.
#[derive(Debug, Args)]
pub struct CertVerifyArgs {
    /// The trust anchor (root) certificate.
    #[arg(long, value_name = "ROOT.pem")]
    pub ca: PathBuf,
    /// Intermediate certificates (repeatable; a file may hold several).
    #[arg(long, value_name = "INT.pem")]
    pub intermediate: Vec<PathBuf>,
    /// Also require the certificate to be valid for this DNS name or IP address.
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// The certificate to verify.
    #[arg(value_name = "CERT.pem")]
    pub cert: PathBuf,
}

/// Arguments of `cert show`.
#[derive(Debug, Args)]
pub struct CertShowArgs {
    /// The certificate (PEM; every certificate of a bundle is shown).
    #[arg(value_name = "CERT.pem")]
    pub cert: PathBuf,
}

/// `qubesec csr ...`.
#[derive(Debug, Subcommand)]
pub enum CsrCommand {
    /// Create a PKCS#10 request signed by the subject's own key.
    Create(CsrCreateArgs),
}

/// Arguments of `csr create`.
#[derive(Debug, Args)]
pub struct CsrCreateArgs {
    /// The subject's private key (ML-DSA, SLH-DSA or composite).
    #[arg(long, value_name = "KEY.pem")]
    pub key: PathBuf,
    /// Subject distinguished name (RFC 4514), e.g. "CN=svc,O=Tenant".
    #[arg(long, value_name = "DN")]
    pub subject: String,
    /// Requested subject alternative names and extended key usages.
    #[command(flatten)]
    pub names: SanArgs,
    /// Where to write the request (PEM `CERTIFICATE REQUEST`).
    #[arg(long, value_name = "CSR.pem")]
    pub out: PathBuf,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }
}
