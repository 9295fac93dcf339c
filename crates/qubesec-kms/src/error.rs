//! Domain errors of the KMS plugin. [`crate::grpc`] maps them to gRPC codes.

use std::path::PathBuf;

/// What can go wrong serving a request or managing keys.
///
/// Messages never contain secret bytes: no plaintext, no key material, no PIN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed (empty, oversized, wrong layout).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The key id names no key this plugin holds (never had, or retired).
    #[error("unknown key id {0:?}")]
    UnknownKey(String),
    /// The ciphertext is not authentic under the named key (tampered, or the
    /// key id does not belong to it). Deliberately says nothing more.
    #[error("ciphertext failed authentication under key {0}")]
    NotAuthentic(String),
    /// The backend (HSM token, session, keystore file) is not reachable now;
    /// retrying later may succeed.
    #[error("key backend unavailable: {0}")]
    Unavailable(String),
    /// A PKCS#11 error that retrying will not fix (wrong PIN, missing key, bad module).
    #[error("PKCS#11: {0}")]
    Pkcs11(String),
    /// The software keystore could not be read or written.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// A replication bundle could not be made or opened.
    #[error("bundle: {0}")]
    Bundle(String),
    /// The unix socket could not be set up.
    #[error("socket {path}: {reason}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An unexpected internal failure (a bug, or the OS random generator failing).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Errors of the software keystore file (see `docs/kms-keystore-format.md`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// No keystore at the path (run `qubesec-kms keystore init`).
    #[error("no keystore at {0} (create one with `qubesec-kms keystore init`)")]
    Missing(PathBuf),
    /// A keystore already exists where `init` would create one.
    #[error("a keystore already exists at {0}")]
    AlreadyExists(PathBuf),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a QubeSec keystore (bad magic).
    #[error("{0} is not a qubesec-kms keystore (bad magic)")]
    Foreign(PathBuf),
    /// The file has a format version this build does not read.
    #[error("{path}: keystore format version {found} is not supported (this build reads versions 1 to {supported})")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// The file is shorter than its header says.
    #[error("{path}: keystore is truncated ({found} bytes, expected {expected})")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes found.
        found: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// The file's checksum or structure is wrong.
    #[error("{path}: keystore is corrupt: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The checksum is intact but the master key does not open the file.
    #[error("{0}: wrong master key or passphrase")]
    WrongMasterKey(PathBuf),
    /// The keystore was sealed with the other kind of master key.
    #[error("{path}: keystore is sealed with a {sealed_with}, but a {given} was given")]
    MasterKeyKind {
        /// The file.
        path: PathBuf,
        /// What the file was sealed with.
        sealed_with: &'static str,
        /// What the caller supplied.
        given: &'static str,
    },
    /// The master key file or passphrase file is unusable.
    #[error("{path}: {what}")]
    MasterKeySource {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The OS random generator failed.
    #[error("randomness: {0}")]
    Randomness(String),
    /// `retire` was asked to remove the active version.
    #[error("version {0} is the active key version; rotate first, then retire it")]
    RetireActive(u32),
    /// No such key version.
    #[error("no key version {0} in the keystore")]
    NoSuchVersion(u32),
    /// An imported version differs from the local one with the same number.
    #[error("key version {0} exists locally with different key material; refusing to overwrite it")]
    Conflict(u32),
    /// `activate` was asked to go back to an older version without `--allow-older`.
    #[error("version {version} is older than the active version {active}; pass --allow-older to roll back on purpose")]
    ActivateOlder {
        /// The version asked for.
        version: u32,
        /// The active version.
        active: u32,
    },
    /// A bundle is not newer than the last one imported from its signer.
    #[error(
        "bundle replayed or out of date: it was created at {created_ms} ms (Unix), but a bundle created at \
         {last_ms} ms by signer sha256:{signer} was already imported; export a fresh bundle"
    )]
    Replayed {
        /// The bundle's creation time.
        created_ms: u64,
        /// The newest creation time already imported from this signer.
        last_ms: u64,
        /// The signer's fingerprint (hex).
        signer: String,
    },
    /// A secret file (master key, passphrase, PIN) is readable by others or owned by someone else.
    #[error("{path}: {what}")]
    UnsafeFile {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        what: String,
    },
    /// Argon2id parameters outside the bounds this build accepts.
    #[error("{path}: {what}")]
    Argon2Bounds {
        /// The keystore (or the command line, for `init`).
        path: PathBuf,
        /// Which parameter and the bounds.
        what: String,
    },
    /// The node identity file is missing, damaged or does not match the keystore.
    #[error("{path}: {what}")]
    Identity {
        /// The identity file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

impl KeystoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

/// Short for `std::result::Result<T, Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
