//! Composite ML-DSA signatures: ML-DSA paired with ECDSA, so that a
//! signature stays unforgeable while either component algorithm holds
//! (draft-ietf-lamps-pq-composite-sigs; the OIDs are the IANA-assigned ones
//! under `id-pkix.6`, the draft and version are recorded in `docs/decisions.md`).
//!
//! Construction, for message `M` and context `ctx` (at most 255 bytes):
//! `M' = Prefix || Label || len(ctx) || ctx || PH(M)`; the ML-DSA component
//! signs `M'` with the label as its FIPS 204 context, the ECDSA component signs
//! `M'` with the curve's hash; the signature is `mldsaSig || DER(ECDSA-Sig-Value)`.
//! Public key: `mldsaPK || uncompressed EC point`. Private key:
//! `mldsaSeed || DER(ECPrivateKey)` (RFC 5915, named curve, no public key).
//!
//! ```
//! use qubesec_core::sig::composite::{CompositeAlgorithm, CompositeSigningKey};
//! let key = CompositeSigningKey::generate(CompositeAlgorithm::MlDsa65EcdsaP256Sha512)?;
//! let sig = key.sign(b"hybrid", b"")?;
//! key.verifying_key().verify(b"hybrid", b"", &sig)?;
//! # Ok::<(), qubesec_core::Error>(())
//! ```

use core::fmt;
use core::str::FromStr;

use der::asn1::{BitString, ObjectIdentifier, OctetStringRef};
use der::pem::LineEnding;
use der::{Decode, Encode};
use p256::ecdsa::signature::{Signer, Verifier};
use sec1::{EcParameters, EcPrivateKey};
use sha2::Digest;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use zeroize::Zeroizing;

use crate::alg::SignatureAlgorithm;
use crate::error::{Error, Result};
use crate::sig::{SigningKey, VerifyingKey};

/// The domain-separation prefix, "CompositeAlgorithmSignatures2025" in ASCII.
const PREFIX: &[u8] = b"CompositeAlgorithmSignatures2025";

/// The composite algorithms this crate implements (ML-DSA with NIST-curve ECDSA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum CompositeAlgorithm {
    /// id-MLDSA44-ECDSA-P256-SHA256.
    MlDsa44EcdsaP256Sha256,
    /// id-MLDSA65-ECDSA-P256-SHA512.
    MlDsa65EcdsaP256Sha512,
    /// id-MLDSA65-ECDSA-P384-SHA512.
    MlDsa65EcdsaP384Sha512,
    /// id-MLDSA87-ECDSA-P384-SHA512.
    MlDsa87EcdsaP384Sha512,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    const fn oid(self) -> ObjectIdentifier {
        match self {
            Self::P256 => ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7"),
            Self::P384 => ObjectIdentifier::new_unwrap("1.3.132.0.34"),
        }
    }

    /// Scalar (and coordinate) length in bytes.
    const fn len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }
}

impl CompositeAlgorithm {
    /// Every supported composite algorithm.
    pub const ALL: [Self; 4] = [
        Self::MlDsa44EcdsaP256Sha256,
        Self::MlDsa65EcdsaP256Sha512,
        Self::MlDsa65EcdsaP384Sha512,
        Self::MlDsa87EcdsaP384Sha512,
    ];

    /// The canonical name (the draft's identifier without `id-`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::MlDsa44EcdsaP256Sha256 => "MLDSA44-ECDSA-P256-SHA256",
            Self::MlDsa65EcdsaP256Sha512 => "MLDSA65-ECDSA-P256-SHA512",
            Self::MlDsa65EcdsaP384Sha512 => "MLDSA65-ECDSA-P384-SHA512",
            Self::MlDsa87EcdsaP384Sha512 => "MLDSA87-ECDSA-P384-SHA512",
        }
    }

    /// The object identifier (IANA "SMI Security for PKIX Algorithms").
    pub const fn oid(self) -> ObjectIdentifier {
        match self {
            Self::MlDsa44EcdsaP256Sha256 => ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.6.40"),
            Self::MlDsa65EcdsaP256Sha512 => ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.6.45"),
            Self::MlDsa65EcdsaP384Sha512 => ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.6.46"),
            Self::MlDsa87EcdsaP384Sha512 => ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.6.49"),
        }
    }

    /// The algorithm for an object identifier, if it is one of ours.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.oid() == *oid)
    }

    /// The domain-separation label.
    const fn label(self) -> &'static [u8] {
        match self {
            Self::MlDsa44EcdsaP256Sha256 => b"COMPSIG-MLDSA44-ECDSA-P256-SHA256",
            Self::MlDsa65EcdsaP256Sha512 => b"COMPSIG-MLDSA65-ECDSA-P256-SHA512",
            Self::MlDsa65EcdsaP384Sha512 => b"COMPSIG-MLDSA65-ECDSA-P384-SHA512",
            Self::MlDsa87EcdsaP384Sha512 => b"COMPSIG-MLDSA87-ECDSA-P384-SHA512",
        }
    }

    /// The ML-DSA component.
    pub const fn ml_dsa(self) -> SignatureAlgorithm {
        match self {
            Self::MlDsa44EcdsaP256Sha256 => SignatureAlgorithm::MlDsa44,
            Self::MlDsa65EcdsaP256Sha512 | Self::MlDsa65EcdsaP384Sha512 => SignatureAlgorithm::MlDsa65,
            Self::MlDsa87EcdsaP384Sha512 => SignatureAlgorithm::MlDsa87,
        }
    }

    const fn curve(self) -> Curve {
        match self {
            Self::MlDsa44EcdsaP256Sha256 | Self::MlDsa65EcdsaP256Sha512 => Curve::P256,
            Self::MlDsa65EcdsaP384Sha512 | Self::MlDsa87EcdsaP384Sha512 => Curve::P384,
        }
    }

    /// Length of the encoded public key.
    pub const fn public_key_len(self) -> usize {
        self.ml_dsa().public_key_len() + 1 + 2 * self.curve().len()
    }

    /// `M' = Prefix || Label || len(ctx) || ctx || PH(M)`.
    fn message_representative(self, msg: &[u8], ctx: &[u8]) -> Result<Vec<u8>> {
        let ctx_len = u8::try_from(ctx.len()).map_err(|_| Error::ContextTooLong { found: ctx.len() })?;
        let label = self.label();
        let mut out = Vec::with_capacity(PREFIX.len() + label.len() + 1 + ctx.len() + 64);
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(label);
        out.push(ctx_len);
        out.extend_from_slice(ctx);
        match self {
            Self::MlDsa44EcdsaP256Sha256 => out.extend_from_slice(&sha2::Sha256::digest(msg)),
            _ => out.extend_from_slice(&sha2::Sha512::digest(msg)),
        }
        Ok(out)
    }
}

impl fmt::Display for CompositeAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CompositeAlgorithm {
    type Err = Error;

    /// Parses a name case-insensitively, with or without the `id-` prefix.
    fn from_str(s: &str) -> Result<Self> {
        let bare = s.strip_prefix("id-").unwrap_or(s);
        Self::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(bare)).ok_or_else(|| Error::UnknownAlgorithm {
            name: s.to_owned(),
            expected: "MLDSA44-ECDSA-P256-SHA256, MLDSA65-ECDSA-P256-SHA512, MLDSA65-ECDSA-P384-SHA512, MLDSA87-ECDSA-P384-SHA512",
        })
    }
}

#[derive(Clone, PartialEq, Eq)]
enum EcPublic {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

impl EcPublic {
    fn from_sec1(curve: Curve, bytes: &[u8]) -> Result<Self> {
        let bad = |_| Error::InvalidKey { what: "composite ECDSA public key", reason: "not a point on the curve" };
        if bytes.first() != Some(&0x04) {
            return Err(Error::InvalidKey { what: "composite ECDSA public key", reason: "not an uncompressed point" });
        }
        Ok(match curve {
            Curve::P256 => Self::P256(p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map_err(bad)?),
            Curve::P384 => Self::P384(p384::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map_err(bad)?),
        })
    }

    fn verify(&self, msg: &[u8], der_sig: &[u8]) -> bool {
        match self {
            Self::P256(k) => p256::ecdsa::DerSignature::from_bytes(der_sig).is_ok_and(|s| k.verify(msg, &s).is_ok()),
            Self::P384(k) => p384::ecdsa::DerSignature::from_bytes(der_sig).is_ok_and(|s| k.verify(msg, &s).is_ok()),
        }
    }
}

/// ECDSA signing keys; both RustCrypto types zeroize their scalar on drop.
enum EcSecret {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

impl EcSecret {
    fn from_scalar(curve: Curve, scalar: &[u8]) -> Result<Self> {
        let bad = |_| Error::InvalidKey {
            what: "composite ECDSA private key",
            reason: "scalar is zero or not below the order",
        };
        if scalar.len() != curve.len() {
            return Err(Error::length("composite ECDSA private scalar", curve.len(), scalar.len()));
        }
        Ok(match curve {
            Curve::P256 => Self::P256(p256::ecdsa::SigningKey::from_slice(scalar).map_err(bad)?),
            Curve::P384 => Self::P384(p384::ecdsa::SigningKey::from_slice(scalar).map_err(bad)?),
        })
    }

    fn generate(curve: Curve) -> Result<Self> {
        // Rejection sampling: a uniformly random string is a valid scalar with overwhelming probability.
        loop {
            let scalar = crate::rand::bytes(curve.len())?;
            if let Ok(key) = Self::from_scalar(curve, &scalar) {
                return Ok(key);
            }
        }
    }

    fn public(&self) -> EcPublic {
        match self {
            Self::P256(k) => EcPublic::P256(*k.verifying_key()),
            Self::P384(k) => EcPublic::P384(*k.verifying_key()),
        }
    }

    fn scalar(&self) -> Zeroizing<Vec<u8>> {
        match self {
            Self::P256(k) => Zeroizing::new(k.to_bytes().to_vec()),
            Self::P384(k) => Zeroizing::new(k.to_bytes().to_vec()),
        }
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        Ok(match self {
            Self::P256(k) => {
                let s: p256::ecdsa::DerSignature = k.try_sign(msg).map_err(|_| Error::Crypto)?;
                s.as_bytes().to_vec()
            }
            Self::P384(k) => {
                let s: p384::ecdsa::DerSignature = k.try_sign(msg).map_err(|_| Error::Crypto)?;
                s.as_bytes().to_vec()
            }
        })
    }
}

fn sec1_point(ec: &EcPublic) -> Vec<u8> {
    match ec {
        EcPublic::P256(k) => k.to_sec1_bytes().to_vec(),
        EcPublic::P384(k) => k.to_sec1_bytes().to_vec(),
    }
}

/// A composite verifying key: an ML-DSA public key and an ECDSA public key.
#[derive(Clone, PartialEq, Eq)]
pub struct CompositeVerifyingKey {
    alg: CompositeAlgorithm,
    ml_dsa: VerifyingKey,
    ec: EcPublic,
    bytes: Vec<u8>,
}

impl fmt::Debug for CompositeVerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fp = self.to_spki_der().map(|d| crate::Fingerprint::of_bytes(&d).to_string());
        f.debug_struct("CompositeVerifyingKey").field("alg", &self.alg).field("fingerprint", &fp.ok()).finish()
    }
}

impl CompositeVerifyingKey {
    /// Reads `mldsaPK || uncompressed EC point`, checking the point is on the curve.
    ///
    /// # Errors
    /// [`Error::InvalidLength`], [`Error::InvalidKey`].
    pub fn from_bytes(alg: CompositeAlgorithm, bytes: &[u8]) -> Result<Self> {
        if bytes.len() != alg.public_key_len() {
            return Err(Error::length("composite public key", alg.public_key_len(), bytes.len()));
        }
        let (pq, ec) = bytes.split_at(alg.ml_dsa().public_key_len());
        Ok(Self {
            alg,
            ml_dsa: VerifyingKey::from_bytes(alg.ml_dsa(), pq)?,
            ec: EcPublic::from_sec1(alg.curve(), ec)?,
            bytes: bytes.to_vec(),
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> CompositeAlgorithm {
        self.alg
    }

    /// The encoded key (`mldsaPK || EC point`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The ML-DSA component.
    pub fn ml_dsa(&self) -> &VerifyingKey {
        &self.ml_dsa
    }

    /// Verifies a composite signature: both components must verify.
    ///
    /// # Errors
    /// [`Error::VerificationFailed`] (opaque), [`Error::ContextTooLong`].
    pub fn verify(&self, msg: &[u8], ctx: &[u8], signature: &[u8]) -> Result<()> {
        let m = self.alg.message_representative(msg, ctx)?;
        let split = self.alg.ml_dsa().signature_len();
        let (pq, ec) = signature.split_at_checked(split).ok_or(Error::VerificationFailed)?;
        // Both components are always checked, so timing does not reveal which one failed.
        let pq_ok = self.ml_dsa.verify_bytes(&m, self.alg.label(), pq).is_ok();
        let ec_ok = self.ec.verify(&m, ec);
        if pq_ok && ec_ok { Ok(()) } else { Err(Error::VerificationFailed) }
    }

    /// DER SubjectPublicKeyInfo (parameters absent).
    ///
    /// # Errors
    /// [`Error::Encoding`] only if encoding itself fails.
    pub fn to_spki_der(&self) -> Result<Vec<u8>> {
        SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned { oid: self.alg.oid(), parameters: None },
            subject_public_key: BitString::from_bytes(&self.bytes)
                .map_err(|e| Error::encoding("SubjectPublicKeyInfo", e))?,
        }
        .to_der()
        .map_err(|e| Error::encoding("SubjectPublicKeyInfo", e))
    }

    /// PEM `PUBLIC KEY`.
    ///
    /// # Errors
    /// As [`Self::to_spki_der`].
    pub fn to_spki_pem(&self) -> Result<String> {
        der::pem::encode_string("PUBLIC KEY", LineEnding::LF, &self.to_spki_der()?)
            .map_err(|e| Error::encoding("PEM", e))
    }

    /// Reads a DER SubjectPublicKeyInfo with a composite OID.
    ///
    /// # Errors
    /// [`Error::Encoding`], [`Error::UnsupportedAlgorithm`], and the key checks.
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| Error::encoding("SubjectPublicKeyInfo", e))?;
        let (alg, bytes) = crate::encoding::spki_parts(&spki, CompositeAlgorithm::from_oid)?;
        Self::from_bytes(alg, bytes)
    }
}

/// A composite signing key. Zeroized on drop; `Debug` redacts.
pub struct CompositeSigningKey {
    alg: CompositeAlgorithm,
    ml_dsa: SigningKey,
    ec: EcSecret,
    public: CompositeVerifyingKey,
}

impl fmt::Debug for CompositeSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompositeSigningKey")
            .field("alg", &self.alg)
            .field("private", &"<redacted>")
            .field("public", &self.public)
            .finish()
    }
}

impl CompositeSigningKey {
    /// Generates both component keys from OS randomness.
    ///
    /// # Errors
    /// [`Error::Randomness`].
    pub fn generate(alg: CompositeAlgorithm) -> Result<Self> {
        let ml_dsa = SigningKey::generate(alg.ml_dsa())?;
        Self::assemble(alg, ml_dsa, EcSecret::generate(alg.curve())?)
    }

    fn assemble(alg: CompositeAlgorithm, ml_dsa: SigningKey, ec: EcSecret) -> Result<Self> {
        let mut bytes = ml_dsa.verifying_key()?.as_bytes().to_vec();
        let ec_public = ec.public();
        bytes.extend_from_slice(&sec1_point(&ec_public));
        let public = CompositeVerifyingKey { alg, ml_dsa: ml_dsa.verifying_key()?.clone(), ec: ec_public, bytes };
        Ok(Self { alg, ml_dsa, ec, public })
    }

    /// Reads `mldsaSeed || DER(ECPrivateKey)`. An embedded EC public key, if
    /// present, must match; curve parameters, if present, must name the right curve.
    ///
    /// # Errors
    /// [`Error::InvalidLength`], [`Error::Encoding`], [`Error::InvalidKey`], [`Error::InconsistentPublicKey`].
    pub fn from_bytes(alg: CompositeAlgorithm, bytes: &[u8]) -> Result<Self> {
        let (seed, ec_der) = bytes
            .split_at_checked(32)
            .ok_or_else(|| Error::length("composite private key", 32 + 2 * alg.curve().len(), bytes.len()))?;
        let ml_dsa = SigningKey::from_seed(alg.ml_dsa(), seed)?;
        let ec_key = EcPrivateKey::from_der(ec_der).map_err(|e| Error::encoding("ECPrivateKey", e))?;
        match ec_key.parameters {
            None => {}
            Some(EcParameters::NamedCurve(oid)) if oid == alg.curve().oid() => {}
            Some(_) => return Err(Error::encoding("ECPrivateKey", format!("curve parameters do not match {alg}"))),
        }
        let ec = EcSecret::from_scalar(alg.curve(), ec_key.private_key)?;
        let key = Self::assemble(alg, ml_dsa, ec)?;
        if let Some(pk) = ec_key.public_key
            && pk != sec1_point(&key.public.ec).as_slice()
        {
            return Err(Error::InconsistentPublicKey);
        }
        Ok(key)
    }

    /// The encoded private key: `mldsaSeed || DER(ECPrivateKey)` (named curve, no public key).
    ///
    /// # Errors
    /// [`Error::Encoding`] only if encoding itself fails.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>> {
        let seed = self.ml_dsa.seed().ok_or(Error::Crypto)?;
        let scalar = self.ec.scalar();
        let ec = EcPrivateKey {
            private_key: &scalar,
            parameters: Some(EcParameters::NamedCurve(self.alg.curve().oid())),
            public_key: None,
        };
        let ec_der = crate::encoding::encode_secret(&ec)?;
        let mut out = Zeroizing::new(Vec::with_capacity(32 + ec_der.len()));
        out.extend_from_slice(seed);
        out.extend_from_slice(&ec_der);
        Ok(out)
    }

    /// PKCS#8 DER (`OneAsymmetricKey` v1, the composite OID, the private key octets as [`Self::to_bytes`]).
    ///
    /// # Errors
    /// [`Error::Encoding`] only if encoding itself fails.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        let octets = self.to_bytes()?;
        let info = pkcs8::PrivateKeyInfoRef::new(
            spki::AlgorithmIdentifierRef { oid: self.alg.oid(), parameters: None },
            OctetStringRef::new(&octets).map_err(|e| Error::encoding("PKCS#8", e))?,
        );
        crate::encoding::encode_secret(&info)
    }

    /// PEM `PRIVATE KEY`.
    ///
    /// # Errors
    /// As [`Self::to_pkcs8_der`].
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &self.to_pkcs8_der()?)
            .map(Zeroizing::new)
            .map_err(|e| Error::encoding("PEM", e))
    }

    /// Reads PKCS#8 DER with a composite OID.
    ///
    /// # Errors
    /// [`Error::Encoding`], [`Error::UnsupportedAlgorithm`], and as [`Self::from_bytes`].
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let info = pkcs8::PrivateKeyInfoRef::from_der(der).map_err(|e| Error::encoding("PKCS#8", e))?;
        let oid = info.algorithm.oid;
        let alg =
            CompositeAlgorithm::from_oid(&oid).ok_or_else(|| Error::UnsupportedAlgorithm { oid: oid.to_string() })?;
        if info.algorithm.parameters.is_some() {
            return Err(Error::encoding("PKCS#8", format!("{alg} requires absent parameters")));
        }
        let key = Self::from_bytes(alg, info.private_key.as_bytes())?;
        if let Some(pk) = info.public_key.as_ref().and_then(|p| p.as_bytes())
            && pk != key.public.as_bytes()
        {
            return Err(Error::InconsistentPublicKey);
        }
        Ok(key)
    }

    /// Reads PEM `PRIVATE KEY`.
    ///
    /// # Errors
    /// As [`Self::from_pkcs8_der`].
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let (label, der) = crate::encoding::decode_pem(pem)?;
        if label != "PRIVATE KEY" {
            return Err(Error::encoding("PEM", format!("expected a \"PRIVATE KEY\" block, found \"{label}\"")));
        }
        Self::from_pkcs8_der(&der)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> CompositeAlgorithm {
        self.alg
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> &CompositeVerifyingKey {
        &self.public
    }

    /// Signs `msg` with context `ctx`: hedged ML-DSA, deterministic (RFC 6979) ECDSA.
    ///
    /// # Errors
    /// [`Error::ContextTooLong`], [`Error::Randomness`].
    pub fn sign(&self, msg: &[u8], ctx: &[u8]) -> Result<Vec<u8>> {
        let m = self.alg.message_representative(msg, ctx)?;
        let mut sig = self.ml_dsa.sign(&m, self.alg.label())?.into_bytes();
        sig.extend_from_slice(&self.ec.sign(&m)?);
        Ok(sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_oids_are_distinct() {
        for a in CompositeAlgorithm::ALL {
            assert_eq!(a.name().parse::<CompositeAlgorithm>().unwrap(), a);
            assert_eq!(format!("id-{}", a.name().to_lowercase()).parse::<CompositeAlgorithm>().unwrap(), a);
            assert_eq!(CompositeAlgorithm::from_oid(&a.oid()), Some(a));
        }
        assert!("MLDSA65-RSA3072-PSS-SHA512".parse::<CompositeAlgorithm>().is_err());
    }

    #[test]
    fn keys_round_trip_and_each_component_is_load_bearing() {
        for a in CompositeAlgorithm::ALL {
            let key = CompositeSigningKey::generate(a).unwrap();
            let again = CompositeSigningKey::from_pkcs8_der(&key.to_pkcs8_der().unwrap()).unwrap();
            assert_eq!(again.verifying_key(), key.verifying_key());
            let vk = CompositeVerifyingKey::from_spki_der(&key.verifying_key().to_spki_der().unwrap()).unwrap();
            let sig = again.sign(b"m", b"c").unwrap();
            vk.verify(b"m", b"c", &sig).unwrap();
            assert!(vk.verify(b"m", b"", &sig).is_err());
            assert!(vk.verify(b"n", b"c", &sig).is_err());
            // Corrupting either half breaks the signature.
            for at in [10, sig.len() - 5] {
                let mut bad = sig.clone();
                bad[at] ^= 1;
                assert!(vk.verify(b"m", b"c", &bad).is_err(), "{a} at {at}");
            }
            // Stripping the ECDSA half breaks it too.
            assert!(vk.verify(b"m", b"c", &sig[..a.ml_dsa().signature_len()]).is_err());
        }
    }

    #[test]
    fn debug_redacts() {
        let key = CompositeSigningKey::generate(CompositeAlgorithm::MlDsa44EcdsaP256Sha256).unwrap();
        let text = format!("{key:?}");
        assert!(text.contains("<redacted>") && text.contains("sha256:"));
        assert!(!text.contains(&hex::encode(&key.to_bytes().unwrap()[..8])));
    }
}
