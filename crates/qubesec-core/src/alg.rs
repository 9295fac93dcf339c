//! Algorithm identifiers: canonical names, accepted aliases, sizes and OIDs.
//!
//! Names parse case-insensitively. Each algorithm has one canonical spelling,
//! which `Display` prints; legacy aliases (`Kyber768`, `Dilithium3`, ...) are
//! accepted by [`KemAlgorithm::parse`] / [`SignatureAlgorithm::parse`], which
//! report them as deprecated so a caller can warn, and are never printed.

use core::fmt;
use core::str::FromStr;

use der::asn1::ObjectIdentifier;

use crate::error::{Error, Result};

/// A deprecated alias that was accepted while parsing an algorithm name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeprecatedAlias {
    /// The alias as spelled in this crate's table (e.g. `Kyber768`).
    pub alias: &'static str,
    /// The canonical name it stands for (e.g. `ML-KEM-768`).
    pub canonical: &'static str,
}

impl fmt::Display for DeprecatedAlias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "algorithm name {:?} is deprecated; use {:?}", self.alias, self.canonical)
    }
}

/// Looks `name` up case-insensitively in a table of (canonical, aliases, deprecated aliases).
fn lookup<T: Copy>(
    name: &str,
    table: &[(T, &'static str, &[&'static str], &[&'static str])],
    expected: &'static str,
) -> Result<(T, Option<DeprecatedAlias>)> {
    let wanted = name.trim();
    for &(value, canonical, aliases, deprecated) in table {
        if canonical.eq_ignore_ascii_case(wanted) || aliases.iter().any(|a| a.eq_ignore_ascii_case(wanted)) {
            return Ok((value, None));
        }
        if let Some(alias) = deprecated.iter().find(|a| a.eq_ignore_ascii_case(wanted)) {
            return Ok((value, Some(DeprecatedAlias { alias, canonical })));
        }
    }
    Err(Error::UnknownAlgorithm { name: name.to_owned(), expected })
}

macro_rules! canonical_impls {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::parse(s).map(|(alg, _)| alg)
            }
        }

        #[cfg(feature = "serde")]
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Key-encapsulation mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum KemAlgorithm {
    /// ML-KEM-512 (FIPS 203, security category 1).
    MlKem512,
    /// ML-KEM-768 (FIPS 203, security category 3).
    MlKem768,
    /// ML-KEM-1024 (FIPS 203, security category 5).
    MlKem1024,
    /// X-Wing: ML-KEM-768 + X25519 hybrid (draft-connolly-cfrg-xwing-kem-06).
    XWing,
}

const KEM_NAMES: &str = "ML-KEM-512, ML-KEM-768, ML-KEM-1024, X-Wing";

type Row<T> = (T, &'static str, &'static [&'static str], &'static [&'static str]);

const KEM_TABLE: &[Row<KemAlgorithm>] = &[
    (KemAlgorithm::MlKem512, "ML-KEM-512", &["MLKEM512", "ML_KEM_512"], &["Kyber512"]),
    (KemAlgorithm::MlKem768, "ML-KEM-768", &["MLKEM768", "ML_KEM_768"], &["Kyber768"]),
    (KemAlgorithm::MlKem1024, "ML-KEM-1024", &["MLKEM1024", "ML_KEM_1024"], &["Kyber1024"]),
    (KemAlgorithm::XWing, "X-Wing", &["XWing", "X_Wing", "MLKEM768-X25519"], &[]),
];

impl KemAlgorithm {
    /// Every supported KEM, in a stable order.
    pub const ALL: [KemAlgorithm; 4] = [Self::MlKem512, Self::MlKem768, Self::MlKem1024, Self::XWing];

    /// The canonical name, e.g. `ML-KEM-768`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::MlKem512 => "ML-KEM-512",
            Self::MlKem768 => "ML-KEM-768",
            Self::MlKem1024 => "ML-KEM-1024",
            Self::XWing => "X-Wing",
        }
    }

    /// Parses a name or alias (case-insensitive), reporting a deprecated alias if one was used.
    ///
    /// # Errors
    /// [`Error::UnknownAlgorithm`] listing the canonical names.
    pub fn parse(name: &str) -> Result<(Self, Option<DeprecatedAlias>)> {
        lookup(name, KEM_TABLE, KEM_NAMES)
    }

    /// Length of the encoded public (encapsulation) key in bytes.
    pub const fn public_key_len(self) -> usize {
        match self {
            Self::MlKem512 => 800,
            Self::MlKem768 => 1184,
            Self::MlKem1024 => 1568,
            Self::XWing => 1216,
        }
    }

    /// Length of the expanded private (decapsulation) key in bytes.
    /// For X-Wing the private key is its 32-byte seed.
    pub const fn expanded_key_len(self) -> usize {
        match self {
            Self::MlKem512 => 1632,
            Self::MlKem768 => 2400,
            Self::MlKem1024 => 3168,
            Self::XWing => 32,
        }
    }

    /// Length of the private-key seed: 64 (`d || z`) for ML-KEM, 32 for X-Wing.
    pub const fn seed_len(self) -> usize {
        match self {
            Self::XWing => 32,
            _ => 64,
        }
    }

    /// Length of a ciphertext in bytes.
    pub const fn ciphertext_len(self) -> usize {
        match self {
            Self::MlKem512 => 768,
            Self::MlKem768 => 1088,
            Self::MlKem1024 => 1568,
            Self::XWing => 1120,
        }
    }

    /// Length of the randomness consumed by deterministic encapsulation:
    /// 32 bytes (`m`) for ML-KEM, 64 bytes (`eseed`) for X-Wing.
    pub const fn encaps_randomness_len(self) -> usize {
        match self {
            Self::XWing => 64,
            _ => 32,
        }
    }

    /// The algorithm's object identifier (NIST CSOR for ML-KEM; the draft's for X-Wing).
    pub const fn oid(self) -> ObjectIdentifier {
        match self {
            Self::MlKem512 => crate::encoding::oid::ML_KEM_512,
            Self::MlKem768 => crate::encoding::oid::ML_KEM_768,
            Self::MlKem1024 => crate::encoding::oid::ML_KEM_1024,
            Self::XWing => crate::encoding::oid::X_WING,
        }
    }
}

canonical_impls!(KemAlgorithm);

/// Signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// ML-DSA-44 (FIPS 204, category 2).
    MlDsa44,
    /// ML-DSA-65 (FIPS 204, category 3).
    MlDsa65,
    /// ML-DSA-87 (FIPS 204, category 5).
    MlDsa87,
    /// SLH-DSA-SHA2-128s (FIPS 205).
    SlhDsaSha2_128s,
    /// SLH-DSA-SHA2-128f (FIPS 205).
    SlhDsaSha2_128f,
    /// SLH-DSA-SHA2-192s (FIPS 205).
    SlhDsaSha2_192s,
    /// SLH-DSA-SHA2-192f (FIPS 205).
    SlhDsaSha2_192f,
    /// SLH-DSA-SHA2-256s (FIPS 205).
    SlhDsaSha2_256s,
    /// SLH-DSA-SHA2-256f (FIPS 205).
    SlhDsaSha2_256f,
    /// SLH-DSA-SHAKE-128s (FIPS 205).
    SlhDsaShake128s,
    /// SLH-DSA-SHAKE-128f (FIPS 205).
    SlhDsaShake128f,
    /// SLH-DSA-SHAKE-192s (FIPS 205).
    SlhDsaShake192s,
    /// SLH-DSA-SHAKE-192f (FIPS 205).
    SlhDsaShake192f,
    /// SLH-DSA-SHAKE-256s (FIPS 205).
    SlhDsaShake256s,
    /// SLH-DSA-SHAKE-256f (FIPS 205).
    SlhDsaShake256f,
}

const SIG_NAMES: &str = "ML-DSA-44, ML-DSA-65, ML-DSA-87, SLH-DSA-SHA2-128s, SLH-DSA-SHA2-128f, SLH-DSA-SHA2-192s, SLH-DSA-SHA2-192f, SLH-DSA-SHA2-256s, SLH-DSA-SHA2-256f, SLH-DSA-SHAKE-128s, SLH-DSA-SHAKE-128f, SLH-DSA-SHAKE-192s, SLH-DSA-SHAKE-192f, SLH-DSA-SHAKE-256s, SLH-DSA-SHAKE-256f";

const SIG_TABLE: &[Row<SignatureAlgorithm>] = &[
    (SignatureAlgorithm::MlDsa44, "ML-DSA-44", &["MLDSA44", "ML_DSA_44"], &["Dilithium2"]),
    (SignatureAlgorithm::MlDsa65, "ML-DSA-65", &["MLDSA65", "ML_DSA_65"], &["Dilithium3"]),
    (SignatureAlgorithm::MlDsa87, "ML-DSA-87", &["MLDSA87", "ML_DSA_87"], &["Dilithium5"]),
    (SignatureAlgorithm::SlhDsaSha2_128s, "SLH-DSA-SHA2-128s", &["SLH_DSA_SHA2_128S"], &[]),
    (SignatureAlgorithm::SlhDsaSha2_128f, "SLH-DSA-SHA2-128f", &["SLH_DSA_SHA2_128F"], &[]),
    (SignatureAlgorithm::SlhDsaSha2_192s, "SLH-DSA-SHA2-192s", &["SLH_DSA_SHA2_192S"], &[]),
    (SignatureAlgorithm::SlhDsaSha2_192f, "SLH-DSA-SHA2-192f", &["SLH_DSA_SHA2_192F"], &[]),
    (SignatureAlgorithm::SlhDsaSha2_256s, "SLH-DSA-SHA2-256s", &["SLH_DSA_SHA2_256S"], &[]),
    (SignatureAlgorithm::SlhDsaSha2_256f, "SLH-DSA-SHA2-256f", &["SLH_DSA_SHA2_256F"], &[]),
    (SignatureAlgorithm::SlhDsaShake128s, "SLH-DSA-SHAKE-128s", &["SLH_DSA_SHAKE_128S"], &[]),
    (SignatureAlgorithm::SlhDsaShake128f, "SLH-DSA-SHAKE-128f", &["SLH_DSA_SHAKE_128F"], &[]),
    (SignatureAlgorithm::SlhDsaShake192s, "SLH-DSA-SHAKE-192s", &["SLH_DSA_SHAKE_192S"], &[]),
    (SignatureAlgorithm::SlhDsaShake192f, "SLH-DSA-SHAKE-192f", &["SLH_DSA_SHAKE_192F"], &[]),
    (SignatureAlgorithm::SlhDsaShake256s, "SLH-DSA-SHAKE-256s", &["SLH_DSA_SHAKE_256S"], &[]),
    (SignatureAlgorithm::SlhDsaShake256f, "SLH-DSA-SHAKE-256f", &["SLH_DSA_SHAKE_256F"], &[]),
];

impl SignatureAlgorithm {
    /// Every supported signature algorithm, in a stable order.
    pub const ALL: [SignatureAlgorithm; 15] = [
        Self::MlDsa44,
        Self::MlDsa65,
        Self::MlDsa87,
        Self::SlhDsaSha2_128s,
        Self::SlhDsaSha2_128f,
        Self::SlhDsaSha2_192s,
        Self::SlhDsaSha2_192f,
        Self::SlhDsaSha2_256s,
        Self::SlhDsaSha2_256f,
        Self::SlhDsaShake128s,
        Self::SlhDsaShake128f,
        Self::SlhDsaShake192s,
        Self::SlhDsaShake192f,
        Self::SlhDsaShake256s,
        Self::SlhDsaShake256f,
    ];

    /// The canonical name, e.g. `ML-DSA-65`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::MlDsa44 => "ML-DSA-44",
            Self::MlDsa65 => "ML-DSA-65",
            Self::MlDsa87 => "ML-DSA-87",
            Self::SlhDsaSha2_128s => "SLH-DSA-SHA2-128s",
            Self::SlhDsaSha2_128f => "SLH-DSA-SHA2-128f",
            Self::SlhDsaSha2_192s => "SLH-DSA-SHA2-192s",
            Self::SlhDsaSha2_192f => "SLH-DSA-SHA2-192f",
            Self::SlhDsaSha2_256s => "SLH-DSA-SHA2-256s",
            Self::SlhDsaSha2_256f => "SLH-DSA-SHA2-256f",
            Self::SlhDsaShake128s => "SLH-DSA-SHAKE-128s",
            Self::SlhDsaShake128f => "SLH-DSA-SHAKE-128f",
            Self::SlhDsaShake192s => "SLH-DSA-SHAKE-192s",
            Self::SlhDsaShake192f => "SLH-DSA-SHAKE-192f",
            Self::SlhDsaShake256s => "SLH-DSA-SHAKE-256s",
            Self::SlhDsaShake256f => "SLH-DSA-SHAKE-256f",
        }
    }

    /// Parses a name or alias (case-insensitive), reporting a deprecated alias if one was used.
    ///
    /// # Errors
    /// [`Error::UnknownAlgorithm`] listing the canonical names.
    pub fn parse(name: &str) -> Result<(Self, Option<DeprecatedAlias>)> {
        lookup(name, SIG_TABLE, SIG_NAMES)
    }

    /// True for the ML-DSA parameter sets.
    pub const fn is_ml_dsa(self) -> bool {
        matches!(self, Self::MlDsa44 | Self::MlDsa65 | Self::MlDsa87)
    }

    /// The SLH-DSA security parameter n in bytes (16, 24 or 32); 0 for ML-DSA.
    pub const fn slh_dsa_n(self) -> usize {
        match self {
            Self::MlDsa44 | Self::MlDsa65 | Self::MlDsa87 => 0,
            Self::SlhDsaSha2_128s | Self::SlhDsaSha2_128f | Self::SlhDsaShake128s | Self::SlhDsaShake128f => 16,
            Self::SlhDsaSha2_192s | Self::SlhDsaSha2_192f | Self::SlhDsaShake192s | Self::SlhDsaShake192f => 24,
            _ => 32,
        }
    }

    /// Length of the encoded public (verifying) key in bytes.
    pub const fn public_key_len(self) -> usize {
        match self {
            Self::MlDsa44 => 1312,
            Self::MlDsa65 => 1952,
            Self::MlDsa87 => 2592,
            _ => 2 * self.slh_dsa_n(),
        }
    }

    /// Length of the expanded private (signing) key in bytes.
    pub const fn expanded_key_len(self) -> usize {
        match self {
            Self::MlDsa44 => 2560,
            Self::MlDsa65 => 4032,
            Self::MlDsa87 => 4896,
            _ => 4 * self.slh_dsa_n(),
        }
    }

    /// Length of the private seed for ML-DSA (`xi`, 32 bytes); `None` for
    /// SLH-DSA, whose RFC 9909 private key is the full 4n-byte key.
    pub const fn seed_len(self) -> Option<usize> {
        if self.is_ml_dsa() { Some(32) } else { None }
    }

    /// Length of a signature in bytes.
    pub const fn signature_len(self) -> usize {
        match self {
            Self::MlDsa44 => 2420,
            Self::MlDsa65 => 3309,
            Self::MlDsa87 => 4627,
            Self::SlhDsaSha2_128s => 7856,
            Self::SlhDsaSha2_128f => 17088,
            Self::SlhDsaSha2_192s => 16224,
            Self::SlhDsaSha2_192f => 35664,
            Self::SlhDsaSha2_256s => 29792,
            Self::SlhDsaSha2_256f => 49856,
            Self::SlhDsaShake128s => 7856,
            Self::SlhDsaShake128f => 17088,
            Self::SlhDsaShake192s => 16224,
            Self::SlhDsaShake192f => 35664,
            Self::SlhDsaShake256s => 29792,
            Self::SlhDsaShake256f => 49856,
        }
    }

    /// The algorithm's object identifier (NIST CSOR, parameters absent).
    pub const fn oid(self) -> ObjectIdentifier {
        use crate::encoding::oid;
        match self {
            Self::MlDsa44 => oid::ML_DSA_44,
            Self::MlDsa65 => oid::ML_DSA_65,
            Self::MlDsa87 => oid::ML_DSA_87,
            Self::SlhDsaSha2_128s => oid::SLH_DSA_SHA2_128S,
            Self::SlhDsaSha2_128f => oid::SLH_DSA_SHA2_128F,
            Self::SlhDsaSha2_192s => oid::SLH_DSA_SHA2_192S,
            Self::SlhDsaSha2_192f => oid::SLH_DSA_SHA2_192F,
            Self::SlhDsaSha2_256s => oid::SLH_DSA_SHA2_256S,
            Self::SlhDsaSha2_256f => oid::SLH_DSA_SHA2_256F,
            Self::SlhDsaShake128s => oid::SLH_DSA_SHAKE_128S,
            Self::SlhDsaShake128f => oid::SLH_DSA_SHAKE_128F,
            Self::SlhDsaShake192s => oid::SLH_DSA_SHAKE_192S,
            Self::SlhDsaShake192f => oid::SLH_DSA_SHAKE_192F,
            Self::SlhDsaShake256s => oid::SLH_DSA_SHAKE_256S,
            Self::SlhDsaShake256f => oid::SLH_DSA_SHAKE_256F,
        }
    }
}

canonical_impls!(SignatureAlgorithm);

/// Hash functions for HKDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum HashAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
    /// SHA3-256.
    Sha3_256,
    /// SHA3-512.
    Sha3_512,
}

const HASH_NAMES: &str = "sha256, sha384, sha512, sha3-256, sha3-512";

const HASH_TABLE: &[Row<HashAlgorithm>] = &[
    (HashAlgorithm::Sha256, "sha256", &["SHA-256", "SHA2-256"], &[]),
    (HashAlgorithm::Sha384, "sha384", &["SHA-384", "SHA2-384"], &[]),
    (HashAlgorithm::Sha512, "sha512", &["SHA-512", "SHA2-512"], &[]),
    (HashAlgorithm::Sha3_256, "sha3-256", &["SHA3_256", "SHA3256"], &[]),
    (HashAlgorithm::Sha3_512, "sha3-512", &["SHA3_512", "SHA3512"], &[]),
];

impl HashAlgorithm {
    /// Every supported hash, in a stable order.
    pub const ALL: [HashAlgorithm; 5] = [Self::Sha256, Self::Sha384, Self::Sha512, Self::Sha3_256, Self::Sha3_512];

    /// The canonical name, e.g. `sha3-256`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
            Self::Sha3_256 => "sha3-256",
            Self::Sha3_512 => "sha3-512",
        }
    }

    /// Parses a name or alias (case-insensitive).
    ///
    /// # Errors
    /// [`Error::UnknownAlgorithm`] listing the canonical names.
    pub fn parse(name: &str) -> Result<(Self, Option<DeprecatedAlias>)> {
        lookup(name, HASH_TABLE, HASH_NAMES)
    }

    /// Output length in bytes.
    pub const fn output_len(self) -> usize {
        match self {
            Self::Sha256 | Self::Sha3_256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 | Self::Sha3_512 => 64,
        }
    }
}

canonical_impls!(HashAlgorithm);

/// Any algorithm this crate has keys for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// A key-encapsulation mechanism.
    Kem(KemAlgorithm),
    /// A signature scheme.
    Signature(SignatureAlgorithm),
}

impl Algorithm {
    /// The canonical name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Kem(a) => a.name(),
            Self::Signature(a) => a.name(),
        }
    }

    /// Parses any KEM or signature name or alias.
    ///
    /// # Errors
    /// [`Error::UnknownAlgorithm`] listing every canonical name.
    pub fn parse(name: &str) -> Result<(Self, Option<DeprecatedAlias>)> {
        if let Ok((a, d)) = KemAlgorithm::parse(name) {
            return Ok((Self::Kem(a), d));
        }
        SignatureAlgorithm::parse(name)
            .map(|(a, d)| (Self::Signature(a), d))
            .map_err(|_| Error::UnknownAlgorithm { name: name.to_owned(), expected: ALL_NAMES })
    }

    /// The algorithm for a public-key OID, if supported.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        KemAlgorithm::ALL
            .iter()
            .find(|a| a.oid() == *oid)
            .map(|a| Self::Kem(*a))
            .or_else(|| SignatureAlgorithm::ALL.iter().find(|a| a.oid() == *oid).map(|a| Self::Signature(*a)))
    }

    /// The algorithm's OID.
    pub const fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Kem(a) => a.oid(),
            Self::Signature(a) => a.oid(),
        }
    }
}

const ALL_NAMES: &str = "ML-KEM-512, ML-KEM-768, ML-KEM-1024, X-Wing, ML-DSA-44, ML-DSA-65, ML-DSA-87, SLH-DSA-SHA2-128s, SLH-DSA-SHA2-128f, SLH-DSA-SHA2-192s, SLH-DSA-SHA2-192f, SLH-DSA-SHA2-256s, SLH-DSA-SHA2-256f, SLH-DSA-SHAKE-128s, SLH-DSA-SHAKE-128f, SLH-DSA-SHAKE-192s, SLH-DSA-SHAKE-192f, SLH-DSA-SHAKE-256s, SLH-DSA-SHAKE-256f";

canonical_impls!(Algorithm);

impl From<KemAlgorithm> for Algorithm {
    fn from(a: KemAlgorithm) -> Self {
        Self::Kem(a)
    }
}

impl From<SignatureAlgorithm> for Algorithm {
    fn from(a: SignatureAlgorithm) -> Self {
        Self::Signature(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_round_trip_and_are_case_insensitive() {
        for a in KemAlgorithm::ALL {
            assert_eq!(a.name().parse::<KemAlgorithm>().unwrap(), a);
            assert_eq!(a.name().to_lowercase().parse::<KemAlgorithm>().unwrap(), a);
            assert_eq!(a.to_string(), a.name());
        }
        for a in SignatureAlgorithm::ALL {
            assert_eq!(a.name().to_uppercase().parse::<SignatureAlgorithm>().unwrap(), a);
            assert_eq!(Algorithm::from_oid(&a.oid()), Some(Algorithm::Signature(a)));
        }
        for h in HashAlgorithm::ALL {
            assert_eq!(h.name().parse::<HashAlgorithm>().unwrap(), h);
        }
    }

    #[test]
    fn legacy_names_are_reported_as_deprecated() {
        let (a, d) = KemAlgorithm::parse("kyber768").unwrap();
        assert_eq!(a, KemAlgorithm::MlKem768);
        assert_eq!(d.unwrap().canonical, "ML-KEM-768");
        let (a, d) = Algorithm::parse("DILITHIUM5").unwrap();
        assert_eq!(a, Algorithm::Signature(SignatureAlgorithm::MlDsa87));
        assert!(d.unwrap().to_string().contains("ML-DSA-87"));
        assert!(KemAlgorithm::parse("ML-KEM-768").unwrap().1.is_none());
    }

    #[test]
    fn unknown_names_list_the_choices() {
        let err = Algorithm::parse("RSA-2048").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("RSA-2048") && msg.contains("ML-DSA-65"), "{msg}");
    }
}
