//! Key encodings: SubjectPublicKeyInfo and PKCS#8 `OneAsymmetricKey`, DER and PEM.
//!
//! - ML-KEM per RFC 9935 and ML-DSA per RFC 9881: public keys are the raw key in
//!   the SPKI BIT STRING, parameters absent; private keys are the CHOICE
//!   `seed [0] IMPLICIT OCTET STRING | expandedKey OCTET STRING | both SEQUENCE`.
//!   We write the seed-only form and read all three (`both` must be consistent).
//! - SLH-DSA per RFC 9909: the private key octets are the raw 4n-byte key.
//! - X-Wing (draft-connolly-cfrg-xwing-kem-06): the raw 1216-byte public key and
//!   the raw 32-byte seed as private key, under OID 1.3.6.1.4.1.62253.25722.
//! - A PEM `CERTIFICATE` is accepted wherever a public key is read.
//!
//! ```
//! use qubesec_core::{PrivateKey, PublicKey, SignatureAlgorithm, SigningKey};
//! let key = PrivateKey::from(SigningKey::generate(SignatureAlgorithm::MlDsa44)?);
//! let pem = key.to_pkcs8_pem()?;
//! assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
//! let again = PrivateKey::from_pem(pem.as_bytes())?;
//! assert_eq!(again.public_key()?, key.public_key()?);
//! # Ok::<(), qubesec_core::Error>(())
//! ```

pub mod oid;

use der::asn1::{BitString, OctetStringRef};
use der::pem::LineEnding;
use der::{Decode, Encode};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use zeroize::Zeroizing;

use crate::alg::{Algorithm, KemAlgorithm};
use crate::error::{Error, Result};
use crate::kem::{KemPrivateKey, KemPublicKey};
use crate::sig::{SigningKey, VerifyingKey};

/// PEM label of a SubjectPublicKeyInfo.
pub const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";
/// PEM label of a PKCS#8 private key.
pub const PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";
/// PEM label of an X.509 certificate.
pub const CERTIFICATE_LABEL: &str = "CERTIFICATE";

/// Tag of `seed [0] IMPLICIT OCTET STRING` (context-specific, primitive, 0).
const SEED_TAG: u8 = 0x80;

/// Which RFC 9935 / RFC 9881 private-key form to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PrivateKeyForm {
    /// Seed only (the recommended form; the default).
    #[default]
    Seed,
    /// Expanded key only.
    Expanded,
    /// Both seed and expanded key.
    Both,
}

/// Any public key this crate understands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicKey {
    /// A KEM encapsulation key.
    Kem(KemPublicKey),
    /// A signature verifying key.
    Signature(VerifyingKey),
}

impl From<KemPublicKey> for PublicKey {
    fn from(k: KemPublicKey) -> Self {
        Self::Kem(k)
    }
}

impl From<VerifyingKey> for PublicKey {
    fn from(k: VerifyingKey) -> Self {
        Self::Signature(k)
    }
}

impl PublicKey {
    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Kem(k) => Algorithm::Kem(k.algorithm()),
            Self::Signature(k) => Algorithm::Signature(k.algorithm()),
        }
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Kem(k) => k.as_bytes(),
            Self::Signature(k) => k.as_bytes(),
        }
    }

    /// Reads a raw public key for a known algorithm.
    ///
    /// # Errors
    /// As [`KemPublicKey::from_bytes`] / [`VerifyingKey::from_bytes`].
    pub fn from_raw(alg: Algorithm, bytes: &[u8]) -> Result<Self> {
        Ok(match alg {
            Algorithm::Kem(a) => Self::Kem(KemPublicKey::from_bytes(a, bytes)?),
            Algorithm::Signature(a) => Self::Signature(VerifyingKey::from_bytes(a, bytes)?),
        })
    }

    /// DER SubjectPublicKeyInfo.
    ///
    /// # Errors
    /// [`Error::Encoding`] (only if DER encoding itself fails).
    pub fn to_spki_der(&self) -> Result<Vec<u8>> {
        let spki = SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned { oid: self.algorithm().oid(), parameters: None },
            subject_public_key: BitString::from_bytes(self.as_bytes())
                .map_err(|e| Error::encoding("SubjectPublicKeyInfo", e))?,
        };
        spki.to_der().map_err(|e| Error::encoding("SubjectPublicKeyInfo", e))
    }

    /// PEM `PUBLIC KEY`.
    ///
    /// # Errors
    /// [`Error::Encoding`] (only if encoding itself fails).
    pub fn to_spki_pem(&self) -> Result<String> {
        der::pem::encode_string(PUBLIC_KEY_LABEL, LineEnding::LF, &self.to_spki_der()?)
            .map_err(|e| Error::encoding("PEM", e))
    }

    /// Reads a DER SubjectPublicKeyInfo.
    ///
    /// # Errors
    /// [`Error::Encoding`] for bad DER or present parameters,
    /// [`Error::UnsupportedAlgorithm`] for an unknown OID, and the key's own checks.
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| Error::encoding("SubjectPublicKeyInfo", e))?;
        Self::from_spki(&spki)
    }

    fn from_spki(spki: &SubjectPublicKeyInfoRef<'_>) -> Result<Self> {
        let (alg, bytes) = spki_parts(spki, Algorithm::from_oid)?;
        Self::from_raw(alg, bytes)
    }

    /// Reads the SubjectPublicKeyInfo of a DER X.509 certificate.
    ///
    /// # Errors
    /// [`Error::Encoding`] for a malformed certificate, and as [`Self::from_spki_der`].
    pub fn from_certificate_der(der: &[u8]) -> Result<Self> {
        let cert = x509_cert::Certificate::from_der(der).map_err(|e| Error::encoding("certificate", e))?;
        let spki = cert.tbs_certificate().subject_public_key_info();
        let spki_der = spki.to_der().map_err(|e| Error::encoding("certificate", e))?;
        Self::from_spki_der(&spki_der)
    }

    /// Reads PEM: a `PUBLIC KEY` or a `CERTIFICATE` (whose public key is used).
    ///
    /// # Errors
    /// [`Error::Encoding`] naming the label found when it is neither.
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let (label, der) = decode_pem(pem)?;
        match label.as_str() {
            PUBLIC_KEY_LABEL => Self::from_spki_der(&der),
            CERTIFICATE_LABEL => Self::from_certificate_der(&der),
            other => Err(Error::encoding(
                "PEM",
                format!("expected a \"{PUBLIC_KEY_LABEL}\" or \"{CERTIFICATE_LABEL}\" block, found \"{other}\""),
            )),
        }
    }

    /// The KEM key, or a [`Error::WrongAlgorithm`].
    ///
    /// # Errors
    /// [`Error::WrongAlgorithm`] for a signature key.
    pub fn into_kem(self) -> Result<KemPublicKey> {
        match self {
            Self::Kem(k) => Ok(k),
            Self::Signature(k) => Err(wrong("a KEM public key", k.algorithm().name())),
        }
    }

    /// The signature key, or a [`Error::WrongAlgorithm`].
    ///
    /// # Errors
    /// [`Error::WrongAlgorithm`] for a KEM key.
    pub fn into_signature(self) -> Result<VerifyingKey> {
        match self {
            Self::Signature(k) => Ok(k),
            Self::Kem(k) => Err(wrong("a signature public key", k.algorithm().name())),
        }
    }
}

/// The algorithm (looked up by OID, parameters required absent) and key bytes of an SPKI.
pub(crate) fn spki_parts<'a, A: core::fmt::Display>(
    spki: &SubjectPublicKeyInfoRef<'a>,
    from_oid: impl FnOnce(&der::asn1::ObjectIdentifier) -> Option<A>,
) -> Result<(A, &'a [u8])> {
    let oid = spki.algorithm.oid;
    let alg = from_oid(&oid).ok_or_else(|| Error::UnsupportedAlgorithm { oid: oid.to_string() })?;
    if spki.algorithm.parameters.is_some() {
        return Err(Error::encoding("SubjectPublicKeyInfo", format!("{alg} requires absent parameters")));
    }
    let bytes = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| Error::encoding("SubjectPublicKeyInfo", "public key BIT STRING has unused bits"))?;
    Ok((alg, bytes))
}

fn wrong(expected: &str, found: &str) -> Error {
    Error::WrongAlgorithm { expected: expected.to_owned(), found: found.to_owned() }
}

/// Decodes one PEM block, returning its label and DER bytes.
///
/// # Errors
/// [`Error::Encoding`] for malformed PEM.
pub fn decode_pem(pem: &[u8]) -> Result<(String, Zeroizing<Vec<u8>>)> {
    let text = core::str::from_utf8(pem).map_err(|_| Error::encoding("PEM", "not UTF-8 text"))?;
    let start = text.find("-----BEGIN ").ok_or_else(|| Error::encoding("PEM", "no \"-----BEGIN\" line"))?;
    let block = &text[start..];
    // Only the first block counts; text before and after it (and further blocks) is ignored.
    let end = block
        .find("-----END ")
        .and_then(|e| block[e + 9..].find("-----").map(|close| e + 9 + close + 5))
        .ok_or_else(|| Error::encoding("PEM", "no \"-----END\" line"))?;
    let (label, der) = der::pem::decode_vec(&block.as_bytes()[..end]).map_err(|e| Error::encoding("PEM", e))?;
    Ok((label.to_owned(), Zeroizing::new(der)))
}

/// Any private key this crate understands.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrivateKey {
    /// A KEM decapsulation key.
    Kem(KemPrivateKey),
    /// A signing key.
    Signature(SigningKey),
}

impl From<KemPrivateKey> for PrivateKey {
    fn from(k: KemPrivateKey) -> Self {
        Self::Kem(k)
    }
}

impl From<SigningKey> for PrivateKey {
    fn from(k: SigningKey) -> Self {
        Self::Signature(k)
    }
}

impl PrivateKey {
    /// Generates a key for any algorithm.
    ///
    /// # Errors
    /// [`Error::Randomness`].
    pub fn generate(alg: Algorithm) -> Result<Self> {
        Ok(match alg {
            Algorithm::Kem(a) => Self::Kem(KemPrivateKey::generate(a)?),
            Algorithm::Signature(a) => Self::Signature(SigningKey::generate(a)?),
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Kem(k) => Algorithm::Kem(k.algorithm()),
            Self::Signature(k) => Algorithm::Signature(k.algorithm()),
        }
    }

    /// The matching public key.
    ///
    /// # Errors
    /// [`Error::NoPublicKey`] for an expanded-only ML-DSA key without one.
    pub fn public_key(&self) -> Result<PublicKey> {
        Ok(match self {
            Self::Kem(k) => PublicKey::Kem(k.public_key().clone()),
            Self::Signature(k) => PublicKey::Signature(k.verifying_key()?.clone()),
        })
    }

    fn seed(&self) -> Option<&[u8]> {
        match self {
            Self::Kem(k) => k.seed(),
            Self::Signature(k) => k.seed(),
        }
    }

    fn expanded(&self) -> &[u8] {
        match self {
            Self::Kem(k) => k.expanded_key(),
            Self::Signature(k) => k.expanded_key(),
        }
    }

    /// Does this algorithm use the RFC 9935/9881 seed/expanded CHOICE?
    fn has_choice(&self) -> bool {
        match self.algorithm() {
            Algorithm::Kem(a) => a != KemAlgorithm::XWing,
            Algorithm::Signature(a) => a.is_ml_dsa(),
        }
    }

    /// The `privateKey` octets for the requested form.
    fn private_key_octets(&self, form: PrivateKeyForm) -> Result<Zeroizing<Vec<u8>>> {
        if !self.has_choice() {
            return Ok(Zeroizing::new(self.expanded().to_vec()));
        }
        let seed = || self.seed().ok_or_else(|| Error::encoding("PKCS#8", "the key was loaded without its seed"));
        let octet = |b| OctetStringRef::new(b).map_err(|e| Error::encoding("PKCS#8", e));
        match form {
            PrivateKeyForm::Seed => {
                let seed = seed()?;
                let mut out = Zeroizing::new(Vec::with_capacity(seed.len() + 2));
                out.push(SEED_TAG);
                out.push(u8::try_from(seed.len()).map_err(|e| Error::encoding("PKCS#8", e))?);
                out.extend_from_slice(seed);
                Ok(out)
            }
            PrivateKeyForm::Expanded => encode_secret(&octet(self.expanded())?),
            PrivateKeyForm::Both => encode_secret(&[octet(seed()?)?, octet(self.expanded())?]),
        }
    }

    /// DER PKCS#8 in the seed-only form (RFC 9935/9881 recommendation).
    ///
    /// # Errors
    /// [`Error::Encoding`] if the key has no seed (loaded from an expanded key).
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        self.to_pkcs8_der_form(PrivateKeyForm::Seed)
    }

    /// DER PKCS#8 in a chosen form.
    ///
    /// # Errors
    /// [`Error::Encoding`] if the form needs a seed the key does not have.
    pub fn to_pkcs8_der_form(&self, form: PrivateKeyForm) -> Result<Zeroizing<Vec<u8>>> {
        let octets = self.private_key_octets(form)?;
        let info = pkcs8::PrivateKeyInfoRef::new(
            spki::AlgorithmIdentifierRef { oid: self.algorithm().oid(), parameters: None },
            OctetStringRef::new(&octets).map_err(|e| Error::encoding("PKCS#8", e))?,
        );
        encode_secret(&info)
    }

    /// PEM `PRIVATE KEY`, seed-only form.
    ///
    /// # Errors
    /// As [`Self::to_pkcs8_der`].
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        self.to_pkcs8_pem_form(PrivateKeyForm::Seed)
    }

    /// PEM `PRIVATE KEY` in a chosen form.
    ///
    /// # Errors
    /// As [`Self::to_pkcs8_der_form`].
    pub fn to_pkcs8_pem_form(&self, form: PrivateKeyForm) -> Result<Zeroizing<String>> {
        let der = self.to_pkcs8_der_form(form)?;
        der::pem::encode_string(PRIVATE_KEY_LABEL, LineEnding::LF, &der)
            .map(Zeroizing::new)
            .map_err(|e| Error::encoding("PEM", e))
    }

    /// Reads DER PKCS#8 (v1 or v2 `OneAsymmetricKey`) in any of the seed,
    /// expanded or both forms. A v2 public key, if present, must match.
    ///
    /// # Errors
    /// [`Error::Encoding`] saying what was expected and found, [`Error::UnsupportedAlgorithm`],
    /// [`Error::InconsistentKey`] / [`Error::InconsistentPublicKey`].
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let info = pkcs8::PrivateKeyInfoRef::from_der(der).map_err(|e| Error::encoding("PKCS#8 private key", e))?;
        let oid = info.algorithm.oid;
        let alg = Algorithm::from_oid(&oid).ok_or_else(|| Error::UnsupportedAlgorithm { oid: oid.to_string() })?;
        if info.algorithm.parameters.is_some() {
            return Err(Error::encoding("PKCS#8 private key", format!("{alg} requires absent parameters")));
        }
        let public = match &info.public_key {
            Some(bits) => Some(
                bits.as_bytes().ok_or_else(|| Error::encoding("PKCS#8 private key", "public key has unused bits"))?,
            ),
            None => None,
        };
        let octets = info.private_key.as_bytes();
        let key = match alg {
            Algorithm::Kem(KemAlgorithm::XWing) => Self::Kem(KemPrivateKey::from_seed(KemAlgorithm::XWing, octets)?),
            Algorithm::Kem(a) => Self::Kem(match parse_choice(octets, a.seed_len(), a.expanded_key_len())? {
                Choice::Seed(s) => KemPrivateKey::from_seed(a, s)?,
                Choice::Expanded(e) => KemPrivateKey::from_expanded(a, e)?,
                Choice::Both(s, e) => KemPrivateKey::from_seed_and_expanded(a, s, e)?,
            }),
            Algorithm::Signature(a) if a.is_ml_dsa() => {
                Self::Signature(match parse_choice(octets, 32, a.expanded_key_len())? {
                    Choice::Seed(s) => SigningKey::from_seed(a, s)?,
                    Choice::Expanded(e) => SigningKey::from_expanded(a, e, public)?,
                    Choice::Both(s, e) => SigningKey::from_seed_and_expanded(a, s, e)?,
                })
            }
            Algorithm::Signature(a) => Self::Signature(SigningKey::from_expanded(a, octets, public)?),
        };
        if public.is_some_and(|p| matches!(key.public_key(), Ok(k) if k.as_bytes() != p)) {
            return Err(Error::InconsistentPublicKey);
        }
        Ok(key)
    }

    /// Reads PEM `PRIVATE KEY`.
    ///
    /// # Errors
    /// [`Error::Encoding`] naming the label found when it is not `PRIVATE KEY`; as [`Self::from_pkcs8_der`].
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let (label, der) = decode_pem(pem)?;
        if label != PRIVATE_KEY_LABEL {
            return Err(Error::encoding("PEM", format!("expected a \"{PRIVATE_KEY_LABEL}\" block, found \"{label}\"")));
        }
        Self::from_pkcs8_der(&der)
    }

    /// The KEM key, or a [`Error::WrongAlgorithm`].
    ///
    /// # Errors
    /// [`Error::WrongAlgorithm`] for a signing key.
    pub fn into_kem(self) -> Result<KemPrivateKey> {
        match self {
            Self::Kem(k) => Ok(k),
            Self::Signature(k) => Err(wrong("a KEM private key", k.algorithm().name())),
        }
    }

    /// The signing key, or a [`Error::WrongAlgorithm`].
    ///
    /// # Errors
    /// [`Error::WrongAlgorithm`] for a KEM key.
    pub fn into_signature(self) -> Result<SigningKey> {
        match self {
            Self::Signature(k) => Ok(k),
            Self::Kem(k) => Err(wrong("a signing key", k.algorithm().name())),
        }
    }
}

/// DER-encodes a value holding secret bytes into an exact-size buffer that is wiped on drop.
pub(crate) fn encode_secret(value: &impl Encode) -> Result<Zeroizing<Vec<u8>>> {
    let len = value.encoded_len().and_then(usize::try_from).map_err(|e| Error::encoding("PKCS#8", e))?;
    let mut out = Zeroizing::new(vec![0u8; len]);
    value.encode_to_slice(&mut out).map_err(|e| Error::encoding("PKCS#8", e))?;
    Ok(out)
}

/// The RFC 9935 / RFC 9881 private-key CHOICE.
enum Choice<'a> {
    Seed(&'a [u8]),
    Expanded(&'a [u8]),
    Both(&'a [u8], &'a [u8]),
}

/// Parses the RFC 9935 / RFC 9881 private-key CHOICE, checking lengths.
fn parse_choice(octets: &[u8], seed_len: usize, expanded_len: usize) -> Result<Choice<'_>> {
    const WHAT: &str = "PKCS#8 private key";
    let any = der::asn1::AnyRef::from_der(octets)
        .map_err(|e| Error::encoding(WHAT, format!("privateKey is not a seed, expandedKey or both structure: {e}")))?;
    let check = |what: &'static str, b: &[u8], want: usize| {
        if b.len() == want { Ok(()) } else { Err(Error::length(what, want, b.len())) }
    };
    match der::Tagged::tag(&any) {
        der::Tag::ContextSpecific { constructed: false, number } if number.value() == 0 => {
            let seed = any.value();
            check("private key seed", seed, seed_len)?;
            Ok(Choice::Seed(seed))
        }
        der::Tag::OctetString => {
            let expanded = any.value();
            check("expanded private key", expanded, expanded_len)?;
            Ok(Choice::Expanded(expanded))
        }
        der::Tag::Sequence => {
            let mut reader = der::SliceReader::new(any.value()).map_err(|e| Error::encoding(WHAT, e))?;
            let seed =
                <&OctetStringRef>::decode(&mut reader).map_err(|e| Error::encoding(WHAT, format!("both.seed: {e}")))?;
            let expanded = <&OctetStringRef>::decode(&mut reader)
                .map_err(|e| Error::encoding(WHAT, format!("both.expandedKey: {e}")))?;
            if !der::Reader::is_finished(&reader) {
                return Err(Error::encoding(WHAT, "trailing data after both.expandedKey"));
            }
            check("private key seed", seed.as_bytes(), seed_len)?;
            check("expanded private key", expanded.as_bytes(), expanded_len)?;
            Ok(Choice::Both(seed.as_bytes(), expanded.as_bytes()))
        }
        other => Err(Error::encoding(
            WHAT,
            format!(
                "privateKey starts with tag {other}; expected [0] (seed), OCTET STRING (expandedKey) or SEQUENCE (both)"
            ),
        )),
    }
}
