//! Building and signing certificates.

use std::time::{Duration, SystemTime};

use der::asn1::{GeneralizedTime, OctetString, UtcTime};
use der::{Decode, Encode, Sequence};
use sha2::Digest;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::certificate::Version;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints as RawBasicConstraints, ExtendedKeyUsage as RawEku,
    KeyUsage as RawKeyUsage, SubjectAltName as RawSan, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use super::{CertSigner, Certificate, DistinguishedName, ExtendedKeyUsage, KeyUsage, SubjectAltName};
use crate::error::{Error, Result};
use crate::sig::composite::CompositeVerifyingKey;
use crate::{Algorithm, PublicKey};

/// How far notBefore is set back from "now" to tolerate clock skew.
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The validity of a certificate when none is given: 90 days.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);

/// A subject public key for a certificate: a checked SPKI of a supported algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectPublicKey {
    spki: Vec<u8>,
    is_kem: bool,
    name: &'static str,
}

impl SubjectPublicKey {
    /// Reads a DER SPKI, checking the key (ML-KEM, X-Wing, ML-DSA, SLH-DSA or composite).
    ///
    /// # Errors
    /// [`Error::UnsupportedAlgorithm`], [`Error::Encoding`] and the key's own checks.
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        match PublicKey::from_spki_der(der) {
            Ok(k) => Self::try_from(&k),
            Err(Error::UnsupportedAlgorithm { .. }) => Self::try_from(&CompositeVerifyingKey::from_spki_der(der)?),
            Err(e) => Err(e),
        }
    }

    /// The DER SPKI.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// Whether this is a KEM key (which may only have `keyEncipherment`).
    pub fn is_kem(&self) -> bool {
        self.is_kem
    }
}

impl TryFrom<&PublicKey> for SubjectPublicKey {
    type Error = Error;

    fn try_from(k: &PublicKey) -> Result<Self> {
        let alg = k.algorithm();
        Ok(Self { spki: k.to_spki_der()?, is_kem: matches!(alg, Algorithm::Kem(_)), name: alg.name() })
    }
}

impl TryFrom<PublicKey> for SubjectPublicKey {
    type Error = Error;

    fn try_from(k: PublicKey) -> Result<Self> {
        Self::try_from(&k)
    }
}

impl TryFrom<&CompositeVerifyingKey> for SubjectPublicKey {
    type Error = Error;

    fn try_from(k: &CompositeVerifyingKey) -> Result<Self> {
        Ok(Self { spki: k.to_spki_der()?, is_kem: false, name: k.algorithm().name() })
    }
}

/// What goes into a certificate. Build with [`CertificateParams::new`], adjust
/// the public fields or use the helper methods, then [`Self::self_signed`] or [`Self::issue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateParams {
    /// The subject name (may be empty only when there are subject alternative names).
    pub subject: DistinguishedName,
    /// Subject alternative names.
    pub subject_alt_names: Vec<SubjectAltName>,
    /// notBefore (default: now minus [`BACKDATE`]).
    pub not_before: SystemTime,
    /// notAfter (default: now plus [`DEFAULT_VALIDITY`]).
    pub not_after: SystemTime,
    /// Whether the certificate is a CA (basicConstraints cA).
    pub is_ca: bool,
    /// The CA's pathLenConstraint (only meaningful with `is_ca`).
    pub path_len: Option<u8>,
    /// keyUsage; `None` picks the default for the key and role: CAs get
    /// keyCertSign + cRLSign + digitalSignature, signature keys digitalSignature,
    /// KEM keys keyEncipherment (the only usage RFC 9935 allows).
    pub key_usage: Option<Vec<KeyUsage>>,
    /// extendedKeyUsage purposes (omitted when empty).
    pub extended_key_usage: Vec<ExtendedKeyUsage>,
    /// The serial number as a big-endian positive integer; `None` draws 20 random octets (top bit clear).
    pub serial: Option<Vec<u8>>,
}

impl CertificateParams {
    /// Parameters for `subject`, valid from now (back-dated) for 90 days, not a CA.
    pub fn new(subject: DistinguishedName) -> Self {
        let now = SystemTime::now();
        Self {
            subject,
            subject_alt_names: Vec::new(),
            not_before: now.checked_sub(BACKDATE).unwrap_or(now),
            not_after: now + DEFAULT_VALIDITY,
            is_ca: false,
            path_len: None,
            key_usage: None,
            extended_key_usage: Vec::new(),
            serial: None,
        }
    }

    /// Valid from now (back-dated by [`BACKDATE`]) for `duration`.
    #[must_use]
    pub fn valid_for(mut self, duration: Duration) -> Self {
        let now = SystemTime::now();
        self.not_before = now.checked_sub(BACKDATE).unwrap_or(now);
        self.not_after = now + duration;
        self
    }

    /// Makes the certificate a CA with an optional path length constraint.
    #[must_use]
    pub fn ca(mut self, path_len: Option<u8>) -> Self {
        self.is_ca = true;
        self.path_len = path_len;
        self
    }

    /// A self-signed certificate for `key` (a root CA when [`Self::ca`] was set).
    ///
    /// # Errors
    /// [`Error::InvalidParameters`] for inconsistent parameters, and signing errors.
    pub fn self_signed<'a>(&self, key: impl Into<CertSigner<'a>>) -> Result<Certificate> {
        let key = key.into();
        let subject_key = SubjectPublicKey::from_spki_der(&key.spki_der()?)?;
        let issuer = self.subject.to_x509()?;
        let ski = key_identifier(subject_key.spki_der())?;
        self.sign(&subject_key, issuer, ski, key, Checks::On)
    }

    /// A certificate for `subject_key`, issued by the CA `issuer` with its key `issuer_key`.
    ///
    /// The issuer's own limits carry over, so validators accept what is issued:
    /// - notAfter is capped at the issuer's notAfter (compare [`Certificate::not_after`] of the
    ///   result with [`Self::not_after`] to tell whether it was);
    /// - under an issuer with pathLenConstraint `n`, a CA gets pathLenConstraint `n - 1` when
    ///   none was asked for; asking for `n` or more is refused, and an issuer with `0` issues no CAs.
    ///
    /// # Errors
    /// [`Error::InvalidParameters`] when the issuer is not a CA with keyCertSign,
    /// when `issuer_key` does not belong to `issuer`, when its pathLenConstraint forbids this CA,
    /// when it expires before this certificate's notBefore, or for inconsistent parameters.
    pub fn issue<'a>(
        &self,
        subject_key: &SubjectPublicKey,
        issuer: &Certificate,
        issuer_key: impl Into<CertSigner<'a>>,
    ) -> Result<Certificate> {
        self.issue_with(subject_key, issuer, issuer_key.into(), Checks::On)
    }

    /// Hazmat: [`Self::issue`] without any issuer, usage or consistency check,
    /// to build the invalid certificates a path validator must reject.
    ///
    /// # Errors
    /// Encoding and signing errors only.
    #[cfg(feature = "hazmat")]
    pub fn issue_unchecked<'a>(
        &self,
        subject_key: &SubjectPublicKey,
        issuer: &Certificate,
        issuer_key: impl Into<CertSigner<'a>>,
    ) -> Result<Certificate> {
        self.issue_with(subject_key, issuer, issuer_key.into(), Checks::Off)
    }

    fn issue_with(
        &self,
        subject_key: &SubjectPublicKey,
        issuer: &Certificate,
        issuer_key: CertSigner<'_>,
        checks: Checks,
    ) -> Result<Certificate> {
        let aki = match issuer.subject_key_id()? {
            Some(id) => id,
            None => key_identifier(&issuer.public_key_spki_der())?,
        };
        let issuer_name = Name::from_der(&issuer.subject_der()).map_err(|e| Error::encoding("issuer name", e))?;
        if checks == Checks::Off {
            return self.sign(subject_key, issuer_name, aki, issuer_key, checks);
        }
        Self::check_issuer(issuer, &issuer_key)?;
        // The certificate's own rules first, so their errors are not hidden by the issuer's limits.
        self.check_consistency(subject_key)?;
        self.within(issuer)?.sign(subject_key, issuer_name, aki, issuer_key, checks)
    }

    /// These parameters limited by `issuer`: notAfter capped at the issuer's, and a CA's
    /// pathLenConstraint kept below the issuer's (see [`Self::issue`]).
    fn within(&self, issuer: &Certificate) -> Result<Self> {
        let mut limited = self.clone();
        if issuer.not_after() <= self.not_before {
            return Err(invalid(
                "validity",
                format!(
                    "the issuer {} expires ({}) before this certificate's notBefore",
                    issuer.subject(),
                    super::format_time(issuer.not_after())
                ),
            ));
        }
        limited.not_after = self.not_after.min(issuer.not_after());
        let issuer_path_len = issuer.basic_constraints()?.and_then(|bc| bc.path_len);
        if let (true, Some(n)) = (self.is_ca, issuer_path_len) {
            if n == 0 {
                return Err(invalid(
                    "CA flag",
                    format!(
                        "the issuer {} has pathLenConstraint 0: it may not issue CA certificates",
                        issuer.subject()
                    ),
                ));
            }
            match self.path_len {
                Some(p) if p >= n => {
                    return Err(invalid(
                        "pathLen",
                        format!(
                            "{p} is not below the issuer's pathLenConstraint {n} ({}); at most {}",
                            issuer.subject(),
                            n - 1
                        ),
                    ));
                }
                Some(_) => {}
                None => limited.path_len = Some(n - 1),
            }
        }
        Ok(limited)
    }

    fn check_issuer(issuer: &Certificate, issuer_key: &CertSigner<'_>) -> Result<()> {
        if issuer_key.spki_der()? != issuer.public_key_spki_der() {
            return Err(invalid("issuer key", "does not belong to the issuer certificate"));
        }
        if !issuer.basic_constraints()?.is_some_and(|bc| bc.ca) {
            return Err(invalid(
                "issuer",
                format!("{} is not a CA (basicConstraints cA is not set)", issuer.subject()),
            ));
        }
        if issuer.key_usage()?.is_some_and(|ku| !ku.contains(&KeyUsage::KeyCertSign)) {
            return Err(invalid("issuer", format!("{} lacks the keyCertSign key usage", issuer.subject())));
        }
        Ok(())
    }

    fn effective_key_usage(&self, subject_key: &SubjectPublicKey, checks: Checks) -> Result<Vec<KeyUsage>> {
        let usage = match &self.key_usage {
            Some(u) => u.clone(),
            None if subject_key.is_kem => vec![KeyUsage::KeyEncipherment],
            None if self.is_ca => vec![KeyUsage::DigitalSignature, KeyUsage::KeyCertSign, KeyUsage::CrlSign],
            None => vec![KeyUsage::DigitalSignature],
        };
        if usage.is_empty() {
            return Err(invalid("keyUsage", "must name at least one usage"));
        }
        if checks == Checks::Off {
            return Ok(usage);
        }
        if subject_key.is_kem && usage != [KeyUsage::KeyEncipherment] {
            return Err(invalid(
                "keyUsage",
                format!("a {} key may only have keyEncipherment (RFC 9935)", subject_key.name),
            ));
        }
        let encipher = [KeyUsage::KeyEncipherment, KeyUsage::DataEncipherment, KeyUsage::KeyAgreement];
        if !subject_key.is_kem && usage.iter().any(|u| encipher.contains(u)) {
            return Err(invalid(
                "keyUsage",
                format!("a {} key can only sign; encipherment and key agreement are not possible", subject_key.name),
            ));
        }
        if self.is_ca && !usage.contains(&KeyUsage::KeyCertSign) {
            return Err(invalid("keyUsage", "a CA certificate needs keyCertSign"));
        }
        if !self.is_ca && usage.contains(&KeyUsage::KeyCertSign) {
            return Err(invalid("keyUsage", "keyCertSign needs a CA certificate (set the CA flag)"));
        }
        Ok(usage)
    }

    fn extensions(
        &self,
        subject_key: &SubjectPublicKey,
        authority_key_id: Vec<u8>,
        checks: Checks,
    ) -> Result<Vec<Extension>> {
        let usage = self.effective_key_usage(subject_key, checks)?;
        let subject_name = self.subject.to_x509()?;
        let enc = |e: der::Error| Error::encoding("certificate extension", e);
        let mut exts = Vec::new();
        let bc = RawBasicConstraints { ca: self.is_ca, path_len_constraint: self.path_len.filter(|_| self.is_ca) };
        exts.push(with_criticality(bc.to_extension(&subject_name, &exts).map_err(enc)?, true));
        let first = RawKeyUsage(usage[0].flag().into());
        let ku = usage[1..].iter().fold(first, |acc, u| RawKeyUsage(acc.0 | u.flag()));
        exts.push(with_criticality(ku.to_extension(&subject_name, &exts).map_err(enc)?, true));
        if !self.extended_key_usage.is_empty() {
            let eku = RawEku(self.extended_key_usage.iter().map(ExtendedKeyUsage::oid).collect());
            exts.push(eku.to_extension(&subject_name, &exts).map_err(enc)?);
        }
        if !self.subject_alt_names.is_empty() {
            let names =
                self.subject_alt_names.iter().map(SubjectAltName::to_general_name).collect::<Result<Vec<_>>>()?;
            // With an empty subject the SAN carries the identity and must be critical (RFC 5280, 4.2.1.6).
            let critical = self.subject.is_empty();
            exts.push(with_criticality(RawSan(names).to_extension(&subject_name, &exts).map_err(enc)?, critical));
        }
        let ski = SubjectKeyIdentifier(OctetString::new(key_identifier(subject_key.spki_der())?).map_err(enc)?);
        exts.push(ski.to_extension(&subject_name, &exts).map_err(enc)?);
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(OctetString::new(authority_key_id).map_err(enc)?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        };
        exts.push(aki.to_extension(&subject_name, &exts).map_err(enc)?);
        Ok(exts)
    }

    fn check_consistency(&self, subject_key: &SubjectPublicKey) -> Result<()> {
        if self.subject.is_empty() && self.subject_alt_names.is_empty() {
            return Err(invalid("subject", "an empty subject needs at least one subject alternative name"));
        }
        if self.not_after <= self.not_before {
            return Err(invalid("validity", "notAfter must be after notBefore"));
        }
        if self.path_len.is_some() && !self.is_ca {
            return Err(invalid("pathLen", "a path length constraint needs a CA certificate"));
        }
        if subject_key.is_kem && self.is_ca {
            return Err(invalid("CA flag", format!("a {} key cannot sign, so it cannot be a CA", subject_key.name)));
        }
        Ok(())
    }

    fn sign(
        &self,
        subject_key: &SubjectPublicKey,
        issuer: Name,
        authority_key_id: Vec<u8>,
        key: CertSigner<'_>,
        checks: Checks,
    ) -> Result<Certificate> {
        if checks == Checks::On {
            self.check_consistency(subject_key)?;
        }
        let serial = match &self.serial {
            Some(s) => s.clone(),
            None => random_serial()?,
        };
        let tbs = TbsOut {
            version: Version::V3,
            serial_number: SerialNumber::new(&serial)
                .map_err(|_| invalid("serial number", "must be a positive integer of at most 20 octets"))?,
            signature: AlgorithmIdentifierOwned { oid: key.oid(), parameters: None },
            issuer,
            validity: Validity::new(time(self.not_before)?, time(self.not_after)?),
            subject: self.subject.to_x509()?,
            subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(subject_key.spki_der())
                .map_err(|e| Error::encoding("SubjectPublicKeyInfo", e))?,
            extensions: Some(self.extensions(subject_key, authority_key_id, checks)?),
        };
        let tbs_der = tbs.to_der().map_err(|e| Error::encoding("TBSCertificate", e))?;
        Certificate::from_der(&key.sign_structure(&tbs_der)?)
    }
}

/// Whether the builder enforces its consistency rules (always, except through hazmat).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Checks {
    On,
    #[cfg_attr(not(feature = "hazmat"), allow(dead_code))]
    Off,
}

/// The TBSCertificate as we write it (x509-cert's own type has no public constructor).
#[derive(Sequence)]
struct TbsOut {
    #[asn1(context_specific = "0", default = "Default::default")]
    version: Version,
    serial_number: SerialNumber,
    signature: AlgorithmIdentifierOwned,
    issuer: Name,
    validity: Validity,
    subject: Name,
    subject_public_key_info: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Vec<Extension>>,
}

fn with_criticality(mut ext: Extension, critical: bool) -> Extension {
    ext.critical = critical;
    ext
}

pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidParameters { what, reason: reason.into() }
}

/// Key identifier per RFC 7093 method 1: the leftmost 160 bits of SHA-256
/// over the subjectPublicKey BIT STRING value.
pub(crate) fn key_identifier(spki_der: &[u8]) -> Result<Vec<u8>> {
    let spki =
        spki::SubjectPublicKeyInfoRef::from_der(spki_der).map_err(|e| Error::encoding("SubjectPublicKeyInfo", e))?;
    Ok(sha2::Sha256::digest(spki.subject_public_key.raw_bytes())[..20].to_vec())
}

/// 20 random octets with the top bit clear (positive) and a non-zero first octet (no DER padding).
fn random_serial() -> Result<Vec<u8>> {
    let mut serial = crate::rand::bytes(20)?.to_vec();
    serial[0] = (serial[0] & 0x7f) | 0x01;
    Ok(serial)
}

/// RFC 5280, 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds.
fn time(t: SystemTime) -> Result<Time> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| invalid("validity", "times before 1970 are not supported"))?;
    let dt = der::DateTime::from_unix_duration(Duration::from_secs(secs.as_secs()))
        .map_err(|_| invalid("validity", "time out of range"))?;
    Ok(if dt.year() < 2050 {
        Time::UtcTime(UtcTime::from_date_time(dt).map_err(|_| invalid("validity", "time out of range"))?)
    } else {
        Time::GeneralTime(GeneralizedTime::from_date_time(dt))
    })
}
