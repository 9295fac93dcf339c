//! Post-quantum X.509: certificates, CSRs, CA chains and path validation.
//!
//! Certificates are signed with ML-DSA (RFC 9881), SLH-DSA (RFC 9909) or
//! composite ML-DSA + ECDSA ([`crate::sig::composite`]); subject keys may also
//! be ML-KEM or X-Wing (RFC 9935: `keyEncipherment` only). Any certificate
//! parses, whatever its algorithms; only verification reports an
//! unsupported algorithm.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use qubesec_core::{PublicKey, SignatureAlgorithm, SigningKey};
//! use qubesec_core::x509::{CertificateParams, DistinguishedName, SubjectAltName, verify_chain};
//!
//! let ca_key = SigningKey::generate(SignatureAlgorithm::MlDsa65)?;
//! let ca = CertificateParams::new("CN=Example Root CA,O=Example".parse()?)
//!     .ca(Some(0))
//!     .self_signed(&ca_key)?;
//!
//! let leaf_key = SigningKey::generate(SignatureAlgorithm::MlDsa44)?;
//! let mut params = CertificateParams::new(DistinguishedName::common_name("api.example.com")?);
//! params.subject_alt_names.push(SubjectAltName::dns("api.example.com")?);
//! let leaf_public = PublicKey::from(leaf_key.verifying_key()?.clone());
//! let leaf = params.issue(&leaf_public.try_into()?, &ca, &ca_key)?;
//!
//! let chain = verify_chain(&leaf, &[], &[ca], SystemTime::now())?;
//! assert_eq!(chain.len(), 2);
//! assert!(leaf.matches_host("API.example.com"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod builder;
mod csr;
mod ext;
mod name;
mod verify;

use core::fmt;
use std::time::SystemTime;

use der::asn1::{AnyRef, BitStringRef};
use der::pem::LineEnding;
use der::{Decode, Encode, Sequence};
use spki::AlgorithmIdentifierRef;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints as RawBasicConstraints, ExtendedKeyUsage as RawEku,
    KeyUsage as RawKeyUsage, SubjectAltName as RawSan, SubjectKeyIdentifier,
};

pub use builder::{BACKDATE, CertificateParams, DEFAULT_VALIDITY, SubjectPublicKey};
pub use csr::{CertificateRequest, CsrPolicy};
pub use ext::{ExtendedKeyUsage, KeyUsage, SubjectAltName};
pub use name::{DistinguishedName, NameAttribute};
pub use verify::{ChainError, ChainErrorKind, ChainOptions, verify_chain, verify_chain_with};

/// Object identifiers, as used by the accessors here.
pub use der::asn1::ObjectIdentifier;

/// A time as RFC 3339 UTC with whole seconds (`2026-11-23T16:12:00Z`), as certificates hold it.
pub fn format_time(t: SystemTime) -> String {
    verify::rfc3339(t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::sig::composite::{CompositeAlgorithm, CompositeSigningKey, CompositeVerifyingKey};
use crate::sig::{SigningKey, VerifyingKey};
use crate::{Algorithm, PublicKey};

const CERTIFICATE_LABEL: &str = "CERTIFICATE";

/// OIDs of the extensions this module understands (so a critical one does not fail validation).
pub(crate) mod ext_oid {
    use der::asn1::ObjectIdentifier;
    pub(crate) const SUBJECT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
    pub(crate) const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
    pub(crate) const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
    pub(crate) const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
    pub(crate) const AUTHORITY_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
    pub(crate) const EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
    pub(crate) const UNDERSTOOD: [ObjectIdentifier; 6] =
        [SUBJECT_KEY_ID, KEY_USAGE, SUBJECT_ALT_NAME, BASIC_CONSTRAINTS, AUTHORITY_KEY_ID, EXT_KEY_USAGE];
}

/// Any signed X.509 structure as it arrived: the signed bytes are kept exactly.
#[derive(Sequence)]
struct SignedRaw<'a> {
    body: AnyRef<'a>,
    algorithm: AlgorithmIdentifierRef<'a>,
    signature: BitStringRef<'a>,
}

/// A key that can sign certificates and CSRs: ML-DSA, SLH-DSA or composite.
#[derive(Clone, Copy, Debug)]
pub enum CertSigner<'a> {
    /// An ML-DSA or SLH-DSA key (pure mode, empty context, per RFC 9881 / RFC 9909).
    Pq(&'a SigningKey),
    /// A composite ML-DSA + ECDSA key (empty context).
    Composite(&'a CompositeSigningKey),
}

impl<'a> From<&'a SigningKey> for CertSigner<'a> {
    fn from(k: &'a SigningKey) -> Self {
        Self::Pq(k)
    }
}

impl<'a> From<&'a CompositeSigningKey> for CertSigner<'a> {
    fn from(k: &'a CompositeSigningKey) -> Self {
        Self::Composite(k)
    }
}

impl CertSigner<'_> {
    fn oid(&self) -> ObjectIdentifier {
        match self {
            Self::Pq(k) => k.algorithm().oid(),
            Self::Composite(k) => k.algorithm().oid(),
        }
    }

    fn spki_der(&self) -> Result<Vec<u8>> {
        match self {
            Self::Pq(k) => PublicKey::from(k.verifying_key()?.clone()).to_spki_der(),
            Self::Composite(k) => k.verifying_key().to_spki_der(),
        }
    }

    fn sign(&self, body: &[u8]) -> Result<Vec<u8>> {
        match self {
            Self::Pq(k) => Ok(k.sign(body, &[])?.into_bytes()),
            Self::Composite(k) => k.sign(body, &[]),
        }
    }

    /// Signs `body` (a DER TBS or CertificationRequestInfo) and wraps it with the algorithm and signature.
    fn sign_structure(&self, body: &[u8]) -> Result<Vec<u8>> {
        let signature = self.sign(body)?;
        let raw = SignedRaw {
            body: AnyRef::from_der(body).map_err(|e| Error::encoding("signed structure", e))?,
            algorithm: AlgorithmIdentifierRef { oid: self.oid(), parameters: None },
            signature: BitStringRef::from_bytes(&signature).map_err(|e| Error::encoding("signature", e))?,
        };
        raw.to_der().map_err(|e| Error::encoding("signed structure", e))
    }
}

/// The name of a signature or public-key algorithm OID, when this crate knows it.
pub fn algorithm_name(oid: &ObjectIdentifier) -> Option<&'static str> {
    Algorithm::from_oid(oid)
        .map(Algorithm::name)
        .or_else(|| CompositeAlgorithm::from_oid(oid).map(CompositeAlgorithm::name))
}

/// Checks `signature` over `body` with the key in `spki_der`. The signature
/// algorithm must be the key's own algorithm with absent parameters.
///
/// # Errors
/// [`Error::UnsupportedAlgorithm`] for an algorithm this crate does not verify,
/// [`Error::VerificationFailed`] otherwise.
pub(crate) fn verify_signature(
    spki_der: &[u8],
    alg: &AlgorithmIdentifierRef<'_>,
    body: &[u8],
    signature: &[u8],
) -> Result<()> {
    let spki =
        spki::SubjectPublicKeyInfoRef::from_der(spki_der).map_err(|e| Error::encoding("SubjectPublicKeyInfo", e))?;
    if CompositeAlgorithm::from_oid(&alg.oid).is_some() {
        if spki.algorithm.oid != alg.oid || alg.parameters.is_some() {
            return Err(Error::VerificationFailed);
        }
        return CompositeVerifyingKey::from_spki_der(spki_der)?.verify(body, &[], signature);
    }
    match Algorithm::from_oid(&alg.oid) {
        Some(Algorithm::Signature(_)) => {
            if spki.algorithm.oid != alg.oid || alg.parameters.is_some() {
                return Err(Error::VerificationFailed);
            }
            let key: VerifyingKey = PublicKey::from_spki_der(spki_der)?.into_signature()?;
            key.verify_bytes(body, &[], signature)
        }
        _ => Err(Error::UnsupportedAlgorithm { oid: alg.oid.to_string() }),
    }
}

/// The basicConstraints extension as found in a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BasicConstraints {
    /// `cA`.
    pub ca: bool,
    /// `pathLenConstraint`.
    pub path_len: Option<u8>,
    /// Whether the extension is marked critical.
    pub critical: bool,
}

/// A parsed X.509 certificate. Parsing accepts any algorithm; the DER is kept
/// exactly as given, so signatures are checked over the original bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    tbs: Vec<u8>,
    cert: x509_cert::Certificate,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject())
            .field("issuer", &self.issuer())
            .field("serial", &self.serial_hex())
            .finish()
    }
}

impl Certificate {
    /// Parses DER.
    ///
    /// # Errors
    /// [`Error::Encoding`] for malformed DER (never for an unknown algorithm).
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let raw = SignedRaw::from_der(der).map_err(|e| Error::encoding("certificate", e))?;
        let tbs = raw.body.to_der().map_err(|e| Error::encoding("certificate", e))?;
        let cert = x509_cert::Certificate::from_der(der).map_err(|e| Error::encoding("certificate", e))?;
        Ok(Self { der: der.to_vec(), tbs, cert })
    }

    /// Parses the first `CERTIFICATE` block of PEM text.
    ///
    /// # Errors
    /// [`Error::Encoding`] for bad PEM, another label, or bad DER.
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let (label, der) = crate::encoding::decode_pem(pem)?;
        if label != CERTIFICATE_LABEL {
            return Err(Error::encoding("PEM", format!("expected a \"{CERTIFICATE_LABEL}\" block, found \"{label}\"")));
        }
        Self::from_der(&der)
    }

    /// Parses every `CERTIFICATE` block of a PEM bundle, in order.
    ///
    /// # Errors
    /// [`Error::Encoding`] naming the block number, or when there is none.
    pub fn chain_from_pem(pem: &[u8]) -> Result<Vec<Self>> {
        let text = core::str::from_utf8(pem).map_err(|_| Error::encoding("PEM", "not UTF-8 text"))?;
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("-----BEGIN ") {
            let block = &rest[start..];
            let end = block
                .find("-----END ")
                .and_then(|e| block[e + 9..].find("-----").map(|close| e + 9 + close + 5))
                .ok_or_else(|| Error::encoding("PEM", format!("block {} has no \"-----END\" line", out.len() + 1)))?;
            let (label, der) = der::pem::decode_vec(&block.as_bytes()[..end])
                .map_err(|e| Error::encoding("PEM", format!("block {}: {e}", out.len() + 1)))?;
            if label == CERTIFICATE_LABEL {
                let cert = Self::from_der(&der)
                    .map_err(|e| Error::encoding("PEM", format!("block {}: {e}", out.len() + 1)))?;
                out.push(cert);
            }
            rest = &block[end..];
        }
        if out.is_empty() {
            return Err(Error::encoding("PEM", "no \"CERTIFICATE\" block found"));
        }
        Ok(out)
    }

    /// PEM for a chain (leaf first), as in a `tls.crt`.
    ///
    /// # Errors
    /// [`Error::Encoding`] only if encoding itself fails.
    pub fn chain_to_pem(chain: &[Self]) -> Result<String> {
        chain.iter().map(Self::to_pem).collect()
    }

    /// The DER bytes.
    pub fn to_der(&self) -> &[u8] {
        &self.der
    }

    /// PEM `CERTIFICATE`.
    ///
    /// # Errors
    /// [`Error::Encoding`] only if encoding itself fails.
    pub fn to_pem(&self) -> Result<String> {
        der::pem::encode_string(CERTIFICATE_LABEL, LineEnding::LF, &self.der).map_err(|e| Error::encoding("PEM", e))
    }

    /// The subject as an RFC 4514 string.
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate().subject().to_string()
    }

    /// The issuer as an RFC 4514 string.
    pub fn issuer(&self) -> String {
        self.cert.tbs_certificate().issuer().to_string()
    }

    /// The subject as a structured name, if it uses only the attributes [`DistinguishedName`] models.
    ///
    /// # Errors
    /// [`Error::Encoding`] for other attributes.
    pub fn subject_name(&self) -> Result<DistinguishedName> {
        DistinguishedName::from_x509(self.cert.tbs_certificate().subject())
    }

    pub(crate) fn subject_der(&self) -> Vec<u8> {
        self.cert.tbs_certificate().subject().to_der().unwrap_or_default()
    }

    pub(crate) fn issuer_der(&self) -> Vec<u8> {
        self.cert.tbs_certificate().issuer().to_der().unwrap_or_default()
    }

    /// Whether subject and issuer are the same name.
    pub fn is_self_issued(&self) -> bool {
        self.subject_der() == self.issuer_der()
    }

    /// The serial number as lower-case hex.
    pub fn serial_hex(&self) -> String {
        hex::encode(self.cert.tbs_certificate().serial_number().as_bytes())
    }

    /// notBefore.
    pub fn not_before(&self) -> SystemTime {
        self.cert.tbs_certificate().validity().not_before.to_system_time()
    }

    /// notAfter.
    pub fn not_after(&self) -> SystemTime {
        self.cert.tbs_certificate().validity().not_after.to_system_time()
    }

    /// The signature algorithm OID.
    pub fn signature_algorithm(&self) -> ObjectIdentifier {
        self.cert.signature_algorithm().oid
    }

    /// The subject public key's algorithm OID.
    pub fn public_key_algorithm(&self) -> ObjectIdentifier {
        self.cert.tbs_certificate().subject_public_key_info().algorithm.oid
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn public_key_spki_der(&self) -> Vec<u8> {
        self.cert.tbs_certificate().subject_public_key_info().to_der().unwrap_or_default()
    }

    /// The subject public key (ML-KEM, X-Wing, ML-DSA or SLH-DSA).
    ///
    /// # Errors
    /// [`Error::UnsupportedAlgorithm`] for other algorithms (composite keys: [`Self::composite_public_key`]).
    pub fn public_key(&self) -> Result<PublicKey> {
        PublicKey::from_spki_der(&self.public_key_spki_der())
    }

    /// The subject public key of a composite certificate.
    ///
    /// # Errors
    /// [`Error::UnsupportedAlgorithm`] when it is not a composite key.
    pub fn composite_public_key(&self) -> Result<CompositeVerifyingKey> {
        CompositeVerifyingKey::from_spki_der(&self.public_key_spki_der())
    }

    /// The fingerprint of the subject public key (SHA-256 over the SPKI), as `qubesec fingerprint` prints it.
    pub fn key_fingerprint(&self) -> Fingerprint {
        Fingerprint::of_bytes(&self.public_key_spki_der())
    }

    /// The SHA-256 fingerprint of the whole certificate DER.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_bytes(&self.der)
    }

    fn extension<'a, T: Decode<'a> + der::oid::AssociatedOid>(
        &'a self,
        what: &'static str,
    ) -> Result<Option<(bool, T)>> {
        self.cert.tbs_certificate().get_extension::<T>().map_err(|e| Error::encoding(what, e))
    }

    /// Every extension OID with its criticality.
    pub fn extension_oids(&self) -> Vec<(ObjectIdentifier, bool)> {
        self.cert
            .tbs_certificate()
            .extensions()
            .map(|exts| exts.iter().map(|e| (e.extn_id, e.critical)).collect())
            .unwrap_or_default()
    }

    /// basicConstraints, if present.
    ///
    /// # Errors
    /// [`Error::Encoding`] if the extension is malformed.
    pub fn basic_constraints(&self) -> Result<Option<BasicConstraints>> {
        Ok(self.extension::<RawBasicConstraints>("basicConstraints")?.map(|(critical, bc)| BasicConstraints {
            ca: bc.ca,
            path_len: bc.path_len_constraint,
            critical,
        }))
    }

    /// keyUsage bits, if the extension is present.
    ///
    /// # Errors
    /// [`Error::Encoding`] if the extension is malformed.
    pub fn key_usage(&self) -> Result<Option<Vec<KeyUsage>>> {
        Ok(self.extension::<RawKeyUsage>("keyUsage")?.map(|(_, ku)| KeyUsage::from_raw(&ku)))
    }

    /// extendedKeyUsage purposes, if the extension is present.
    ///
    /// # Errors
    /// [`Error::Encoding`] if the extension is malformed.
    pub fn extended_key_usage(&self) -> Result<Option<Vec<ExtendedKeyUsage>>> {
        Ok(self
            .extension::<RawEku>("extendedKeyUsage")?
            .map(|(_, e)| e.0.into_iter().map(ExtendedKeyUsage::from_oid).collect()))
    }

    /// The subject alternative names this crate models (DNS, IP, URI, email); others are skipped.
    ///
    /// # Errors
    /// [`Error::Encoding`] if the extension is malformed.
    pub fn subject_alt_names(&self) -> Result<Vec<SubjectAltName>> {
        Ok(self
            .extension::<RawSan>("subjectAltName")?
            .map(|(_, san)| san.0.iter().filter_map(SubjectAltName::from_general_name).collect())
            .unwrap_or_default())
    }

    /// The subjectKeyIdentifier, if present.
    ///
    /// # Errors
    /// [`Error::Encoding`] if the extension is malformed.
    pub fn subject_key_id(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.extension::<SubjectKeyIdentifier>("subjectKeyIdentifier")?.map(|(_, s)| s.0.as_bytes().to_vec()))
    }

    /// The keyIdentifier of the authorityKeyIdentifier, if present.
    ///
    /// # Errors
    /// [`Error::Encoding`] if the extension is malformed.
    pub fn authority_key_id(&self) -> Result<Option<Vec<u8>>> {
        Ok(self
            .extension::<AuthorityKeyIdentifier>("authorityKeyIdentifier")?
            .and_then(|(_, a)| a.key_identifier.map(|k| k.as_bytes().to_vec())))
    }

    /// Checks this certificate's signature with `issuer`'s public key (the signature only:
    /// names, validity and CA rules are [`verify_chain`]'s job).
    ///
    /// # Errors
    /// [`Error::UnsupportedAlgorithm`] or [`Error::VerificationFailed`].
    pub fn verify_signed_by(&self, issuer: &Certificate) -> Result<()> {
        let raw = SignedRaw::from_der(&self.der).map_err(|e| Error::encoding("certificate", e))?;
        // The outer algorithm must repeat the one inside the signed TBS (RFC 5280, 4.1.1.2).
        let inner = self.cert.tbs_certificate().signature();
        if inner.oid != raw.algorithm.oid || inner.parameters.is_some() != raw.algorithm.parameters.is_some() {
            return Err(Error::VerificationFailed);
        }
        let signature = raw.signature.as_bytes().ok_or(Error::VerificationFailed)?;
        verify_signature(&issuer.public_key_spki_der(), &raw.algorithm, &self.tbs, signature)
    }

    /// Whether the certificate is valid for `host`: a DNS name (matched
    /// case-insensitively against DNS SANs, `*.` wildcards cover exactly one
    /// label) or an IP address (matched against IP SANs). The subject CN is
    /// never consulted (RFC 6125).
    pub fn matches_host(&self, host: &str) -> bool {
        let sans = self.subject_alt_names().unwrap_or_default();
        let host = host.trim_end_matches('.');
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<core::net::IpAddr>() {
            return sans.contains(&SubjectAltName::Ip(ip));
        }
        let host = host.to_ascii_lowercase();
        sans.iter().any(|s| match s {
            SubjectAltName::Dns(pattern) => dns_matches(&pattern.to_ascii_lowercase(), &host),
            _ => false,
        })
    }
}

fn dns_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix && suffix.contains('.')),
        None => pattern == host,
    }
}

impl TryFrom<&[u8]> for Certificate {
    type Error = Error;

    fn try_from(der: &[u8]) -> Result<Self> {
        Self::from_der(der)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label_only() {
        assert!(dns_matches("*.example.com", "a.example.com"));
        assert!(!dns_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_matches("*.example.com", "example.com"));
        assert!(!dns_matches("*.com", "example.com"));
        assert!(dns_matches("example.com", "example.com"));
    }
}
