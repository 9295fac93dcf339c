//! PKCS#10 certificate signing requests (RFC 2986).

use core::fmt;

use der::asn1::{Any, SetOfVec};
use der::pem::LineEnding;
use der::{Decode, Encode};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::{ExtendedKeyUsage as RawEku, SubjectAltName as RawSan};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::request::{CertReq, CertReqInfo, ExtensionReq, Version};

use super::builder::{CertificateParams, SubjectPublicKey};
use super::{CertSigner, DistinguishedName, ExtendedKeyUsage, SignedRaw, SubjectAltName, ext_oid, verify_signature};
use crate::error::{Error, Result};

const CSR_LABEL: &str = "CERTIFICATE REQUEST";
/// pkcs-9-at-extensionRequest.
const EXTENSION_REQUEST: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14");

/// Which requested extensions an issuer copies into the certificate.
/// Requested basicConstraints and keyUsage are never copied: the CA flag and
/// usages come from the issuer's [`CertificateParams`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsrPolicy {
    /// Copy requested subject alternative names (default: yes).
    pub copy_subject_alt_names: bool,
    /// Copy requested extended key usages (default: yes).
    pub copy_extended_key_usage: bool,
}

impl Default for CsrPolicy {
    fn default() -> Self {
        Self { copy_subject_alt_names: true, copy_extended_key_usage: true }
    }
}

/// A PKCS#10 certification request, signed by the key it requests a certificate for.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificateRequest {
    der: Vec<u8>,
    info: Vec<u8>,
    req: CertReq,
}

impl fmt::Debug for CertificateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateRequest").field("subject", &self.subject()).finish()
    }
}

impl CertificateRequest {
    /// Creates and signs a request for `subject` and `sans` (and optional
    /// extended key usages), with the key's own public key.
    ///
    /// # Errors
    /// [`Error::InvalidParameters`] for an empty subject without SANs; signing errors.
    pub fn create<'a>(
        subject: &DistinguishedName,
        sans: &[SubjectAltName],
        extended_key_usage: &[ExtendedKeyUsage],
        key: impl Into<CertSigner<'a>>,
    ) -> Result<Self> {
        let key = key.into();
        if subject.is_empty() && sans.is_empty() {
            return Err(super::builder::invalid(
                "subject",
                "an empty subject needs at least one subject alternative name",
            ));
        }
        let name = subject.to_x509()?;
        let enc = |e: der::Error| Error::encoding("certification request", e);
        let mut exts: Vec<Extension> = Vec::new();
        if !sans.is_empty() {
            let names = sans.iter().map(SubjectAltName::to_general_name).collect::<Result<Vec<_>>>()?;
            exts.push(RawSan(names).to_extension(&name, &exts).map_err(enc)?);
        }
        if !extended_key_usage.is_empty() {
            let eku = RawEku(extended_key_usage.iter().map(ExtendedKeyUsage::oid).collect());
            exts.push(eku.to_extension(&name, &exts).map_err(enc)?);
        }
        let mut attributes = SetOfVec::new();
        if !exts.is_empty() {
            let value = Any::encode_from(&ExtensionReq(exts)).map_err(enc)?;
            let attr = Attribute { oid: EXTENSION_REQUEST, values: SetOfVec::try_from(vec![value]).map_err(enc)? };
            attributes.insert(attr).map_err(enc)?;
        }
        let info = CertReqInfo {
            version: Version::V1,
            subject: name,
            public_key: SubjectPublicKeyInfoOwned::from_der(&key.spki_der()?).map_err(enc)?,
            attributes,
        };
        let info_der = info.to_der().map_err(enc)?;
        Self::from_der(&key.sign_structure(&info_der)?)
    }

    /// Parses DER (any algorithm; see [`Self::verify`]).
    ///
    /// # Errors
    /// [`Error::Encoding`].
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let raw = SignedRaw::from_der(der).map_err(|e| Error::encoding("certification request", e))?;
        let info = raw.body.to_der().map_err(|e| Error::encoding("certification request", e))?;
        let req = CertReq::from_der(der).map_err(|e| Error::encoding("certification request", e))?;
        Ok(Self { der: der.to_vec(), info, req })
    }

    /// Parses PEM `CERTIFICATE REQUEST`.
    ///
    /// # Errors
    /// [`Error::Encoding`].
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let (label, der) = crate::encoding::decode_pem(pem)?;
        if label != CSR_LABEL && label != "NEW CERTIFICATE REQUEST" {
            return Err(Error::encoding("PEM", format!("expected a \"{CSR_LABEL}\" block, found \"{label}\"")));
        }
        Self::from_der(&der)
    }

    /// The DER bytes.
    pub fn to_der(&self) -> &[u8] {
        &self.der
    }

    /// PEM `CERTIFICATE REQUEST`.
    ///
    /// # Errors
    /// [`Error::Encoding`] only if encoding itself fails.
    pub fn to_pem(&self) -> Result<String> {
        der::pem::encode_string(CSR_LABEL, LineEnding::LF, &self.der).map_err(|e| Error::encoding("PEM", e))
    }

    /// The subject as an RFC 4514 string.
    pub fn subject(&self) -> String {
        self.req.info.subject.to_string()
    }

    /// The subject as a structured name.
    ///
    /// # Errors
    /// [`Error::Encoding`] for attributes [`DistinguishedName`] does not model.
    pub fn subject_name(&self) -> Result<DistinguishedName> {
        DistinguishedName::from_x509(&self.req.info.subject)
    }

    /// The DER SPKI of the requested key.
    pub fn public_key_spki_der(&self) -> Vec<u8> {
        self.req.info.public_key.to_der().unwrap_or_default()
    }

    /// Checks the request's self-signature (proof of possession of the key).
    ///
    /// # Errors
    /// [`Error::UnsupportedAlgorithm`] or [`Error::VerificationFailed`].
    pub fn verify(&self) -> Result<()> {
        let raw = SignedRaw::from_der(&self.der).map_err(|e| Error::encoding("certification request", e))?;
        let signature = raw.signature.as_bytes().ok_or(Error::VerificationFailed)?;
        verify_signature(&self.public_key_spki_der(), &raw.algorithm, &self.info, signature)
    }

    /// The requested extensions.
    ///
    /// # Errors
    /// [`Error::Encoding`] for a malformed extensionRequest attribute.
    pub fn requested_extensions(&self) -> Result<Vec<Extension>> {
        let mut out = Vec::new();
        for attr in self.req.info.attributes.iter().filter(|a| a.oid == EXTENSION_REQUEST) {
            for value in attr.values.iter() {
                let req: ExtensionReq = value.decode_as().map_err(|e| Error::encoding("extensionRequest", e))?;
                out.extend(req.0);
            }
        }
        Ok(out)
    }

    /// The requested subject alternative names this crate models.
    ///
    /// # Errors
    /// [`Error::Encoding`] for a malformed extension.
    pub fn subject_alt_names(&self) -> Result<Vec<SubjectAltName>> {
        let mut out = Vec::new();
        for ext in self.requested_extensions()?.iter().filter(|e| e.extn_id == ext_oid::SUBJECT_ALT_NAME) {
            let san = RawSan::from_der(ext.extn_value.as_bytes()).map_err(|e| Error::encoding("subjectAltName", e))?;
            out.extend(san.0.iter().filter_map(SubjectAltName::from_general_name));
        }
        Ok(out)
    }

    /// The requested extended key usages.
    ///
    /// # Errors
    /// [`Error::Encoding`] for a malformed extension.
    pub fn extended_key_usage(&self) -> Result<Vec<ExtendedKeyUsage>> {
        let mut out = Vec::new();
        for ext in self.requested_extensions()?.iter().filter(|e| e.extn_id == ext_oid::EXT_KEY_USAGE) {
            let eku =
                RawEku::from_der(ext.extn_value.as_bytes()).map_err(|e| Error::encoding("extendedKeyUsage", e))?;
            out.extend(eku.0.into_iter().map(ExtendedKeyUsage::from_oid));
        }
        Ok(out)
    }

    /// Verifies the request, then returns certificate parameters for its
    /// subject (and, per `policy`, its requested SANs and EKUs) plus its key.
    /// The caller adjusts validity or the CA flag, then calls [`CertificateParams::issue`].
    ///
    /// # Errors
    /// [`Error::VerificationFailed`] for a bad self-signature, [`Error::UnsupportedAlgorithm`],
    /// [`Error::Encoding`] for names or extensions this crate does not model.
    pub fn to_params(&self, policy: CsrPolicy) -> Result<(CertificateParams, SubjectPublicKey)> {
        self.verify()?;
        let mut params = CertificateParams::new(self.subject_name()?);
        if policy.copy_subject_alt_names {
            params.subject_alt_names = self.subject_alt_names()?;
        }
        if policy.copy_extended_key_usage {
            params.extended_key_usage = self.extended_key_usage()?;
        }
        Ok((params, SubjectPublicKey::from_spki_der(&self.public_key_spki_der())?))
    }
}
