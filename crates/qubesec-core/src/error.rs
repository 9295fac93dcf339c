//! The error type of `qubesec-core`.
//!
//! Encoding problems are precise (what was expected, what was found); crypto
//! failures are opaque so that no error message becomes an oracle.

/// Every error `qubesec-core` returns.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An algorithm name that is not one of the supported names or aliases.
    #[error("unknown algorithm {name:?}; expected one of: {expected}")]
    UnknownAlgorithm {
        /// The name as given.
        name: String,
        /// The accepted canonical names.
        expected: &'static str,
    },
    /// A byte string of the wrong length.
    #[error("{what}: expected {expected} bytes, found {found}")]
    InvalidLength {
        /// What the bytes were meant to be.
        what: &'static str,
        /// The expected length (or a description of the accepted lengths).
        expected: String,
        /// The length found.
        found: usize,
    },
    /// A key that is well-sized but fails the FIPS 203/204 input checks
    /// (for ML-KEM: an encapsulation key whose coefficients are not reduced,
    /// or a decapsulation key whose embedded hash does not match).
    #[error("{what} is malformed: {reason}")]
    InvalidKey {
        /// Which key.
        what: &'static str,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A key for a different algorithm than the operation needs.
    #[error("wrong key type: expected {expected}, found {found}")]
    WrongAlgorithm {
        /// What the operation accepts.
        expected: String,
        /// What was given.
        found: String,
    },
    /// A DER, PEM or PKCS#8/SPKI structure that could not be decoded.
    #[error("invalid {what}: {reason}")]
    Encoding {
        /// Which structure.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// An object identifier that names no algorithm this crate supports.
    #[error("unsupported algorithm identifier {oid}")]
    UnsupportedAlgorithm {
        /// The dotted OID.
        oid: String,
    },
    /// Certificate or CSR parameters that break a rule (an issuer that is not
    /// a CA, an impossible validity, a usage the key cannot have, ...).
    #[error("{what}: {reason}")]
    InvalidParameters {
        /// Which parameter.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A private key in both seed and expanded form whose halves disagree.
    #[error("private key is inconsistent: the expanded key does not match the seed")]
    InconsistentKey,
    /// A private key that carries a public key which does not belong to it.
    #[error("private key is inconsistent: the embedded public key does not match")]
    InconsistentPublicKey,
    /// A signing context longer than FIPS 204/205 allow.
    #[error("context string is {found} bytes; at most 255 are allowed")]
    ContextTooLong {
        /// The length given.
        found: usize,
    },
    /// An HKDF output length outside `1..=255*HashLen`.
    #[error("HKDF output length {requested} is out of range; {hash} allows 1..={max} bytes")]
    KdfLength {
        /// The length asked for.
        requested: usize,
        /// The largest length the hash allows.
        max: usize,
        /// The hash.
        hash: &'static str,
    },
    /// The key has no public key attached (an expanded-only ML-DSA private key
    /// without the optional public key cannot produce one).
    #[error("the private key carries no public key and none can be derived from its expanded form")]
    NoPublicKey,
    /// A signature did not verify. Deliberately says nothing more.
    #[error("signature verification failed")]
    VerificationFailed,
    /// An internal cryptographic operation failed. Deliberately says nothing more.
    #[error("cryptographic operation failed")]
    Crypto,
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Randomness,
}

/// Shorthand for `Result<T, qubesec_core::Error>`.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Converts a slice to a fixed-size array, or an [`Error::InvalidLength`] naming `what`.
pub(crate) fn fixed<const N: usize>(what: &'static str, bytes: &[u8]) -> Result<[u8; N]> {
    bytes.try_into().map_err(|_| Error::length(what, N, bytes.len()))
}

impl Error {
    pub(crate) fn length(what: &'static str, expected: usize, found: usize) -> Self {
        Error::InvalidLength { what, expected: expected.to_string(), found }
    }

    pub(crate) fn encoding(what: &'static str, reason: impl core::fmt::Display) -> Self {
        Error::Encoding { what, reason: reason.to_string() }
    }
}
