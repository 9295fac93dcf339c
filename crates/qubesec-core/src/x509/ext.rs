//! The certificate extensions this crate writes and reads: subject
//! alternative names, key usage, extended key usage.

use core::fmt;
use core::net::IpAddr;
use core::str::FromStr;

use der::asn1::{Ia5String, ObjectIdentifier, OctetString};
use x509_cert::ext::pkix::KeyUsages;
use x509_cert::ext::pkix::name::GeneralName;

use crate::error::{Error, Result};

/// A subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubjectAltName {
    /// A DNS name (`dNSName`), possibly with a leading `*.` wildcard label.
    Dns(String),
    /// An IPv4 or IPv6 address (`iPAddress`).
    Ip(IpAddr),
    /// A URI (`uniformResourceIdentifier`), e.g. a SPIFFE ID.
    Uri(String),
    /// An email address (`rfc822Name`).
    Email(String),
}

impl SubjectAltName {
    /// A checked DNS name: LDH labels of 1..=63 characters, at most 253 in
    /// total, an optional leading `*` label; stored in lower case.
    ///
    /// # Errors
    /// [`Error::Encoding`] naming the name and the rule it breaks.
    pub fn dns(name: &str) -> Result<Self> {
        let bad = |why: &str| Error::encoding("DNS name", format!("{name:?}: {why}"));
        let lower = name.trim_end_matches('.').to_ascii_lowercase();
        if lower.is_empty() || lower.len() > 253 {
            return Err(bad("must be 1 to 253 characters"));
        }
        for (i, label) in lower.split('.').enumerate() {
            if i == 0 && label == "*" {
                continue;
            }
            if label.is_empty() || label.len() > 63 {
                return Err(bad("every label must be 1 to 63 characters"));
            }
            if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(bad("labels may only hold letters, digits and '-' (use punycode for IDNs)"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(bad("a label may not start or end with '-'"));
            }
        }
        Ok(Self::Dns(lower))
    }

    /// A checked URI: an ASCII `scheme:rest` with no spaces.
    ///
    /// # Errors
    /// [`Error::Encoding`].
    pub fn uri(uri: &str) -> Result<Self> {
        let scheme_ok = uri.split_once(':').is_some_and(|(scheme, rest)| {
            !rest.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        if !scheme_ok || !uri.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::encoding("URI", format!("{uri:?} is not an absolute ASCII URI (scheme:rest)")));
        }
        Ok(Self::Uri(uri.to_owned()))
    }

    /// A checked email address: `local@domain`, ASCII.
    ///
    /// # Errors
    /// [`Error::Encoding`].
    pub fn email(addr: &str) -> Result<Self> {
        match addr.rsplit_once('@') {
            Some((local, domain))
                if !local.is_empty() && addr.bytes().all(|b| b.is_ascii_graphic()) && Self::dns(domain).is_ok() =>
            {
                Ok(Self::Email(addr.to_owned()))
            }
            _ => Err(Error::encoding("email address", format!("{addr:?} is not an ASCII local@domain address"))),
        }
    }

    pub(crate) fn to_general_name(&self) -> Result<GeneralName> {
        let ia5 = |s: &str| Ia5String::new(s).map_err(|e| Error::encoding("subject alternative name", e));
        Ok(match self {
            Self::Dns(n) => GeneralName::DnsName(ia5(n)?),
            Self::Uri(u) => GeneralName::UniformResourceIdentifier(ia5(u)?),
            Self::Email(e) => GeneralName::Rfc822Name(ia5(e)?),
            Self::Ip(ip) => {
                let octets = match ip {
                    IpAddr::V4(v4) => v4.octets().to_vec(),
                    IpAddr::V6(v6) => v6.octets().to_vec(),
                };
                GeneralName::IpAddress(OctetString::new(octets).map_err(|e| Error::encoding("IP address", e))?)
            }
        })
    }

    /// The name as we understand it, or `None` for kinds this crate does not model.
    pub(crate) fn from_general_name(name: &GeneralName) -> Option<Self> {
        Some(match name {
            GeneralName::DnsName(n) => Self::Dns(n.as_str().to_owned()),
            GeneralName::UniformResourceIdentifier(u) => Self::Uri(u.as_str().to_owned()),
            GeneralName::Rfc822Name(e) => Self::Email(e.as_str().to_owned()),
            GeneralName::IpAddress(o) => match o.as_bytes().len() {
                4 => Self::Ip(IpAddr::from(<[u8; 4]>::try_from(o.as_bytes()).ok()?)),
                16 => Self::Ip(IpAddr::from(<[u8; 16]>::try_from(o.as_bytes()).ok()?)),
                _ => return None,
            },
            _ => return None,
        })
    }
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(n) => write!(f, "DNS:{n}"),
            Self::Ip(ip) => write!(f, "IP:{ip}"),
            Self::Uri(u) => write!(f, "URI:{u}"),
            Self::Email(e) => write!(f, "email:{e}"),
        }
    }
}

/// One bit of the keyUsage extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum KeyUsage {
    /// digitalSignature.
    DigitalSignature,
    /// nonRepudiation (contentCommitment).
    NonRepudiation,
    /// keyEncipherment: the only usage RFC 9935 allows for an ML-KEM key.
    KeyEncipherment,
    /// dataEncipherment.
    DataEncipherment,
    /// keyAgreement.
    KeyAgreement,
    /// keyCertSign: required on every issuing CA.
    KeyCertSign,
    /// cRLSign.
    CrlSign,
}

impl KeyUsage {
    const ALL: [Self; 7] = [
        Self::DigitalSignature,
        Self::NonRepudiation,
        Self::KeyEncipherment,
        Self::DataEncipherment,
        Self::KeyAgreement,
        Self::KeyCertSign,
        Self::CrlSign,
    ];

    /// The name used in text output and by [`FromStr`].
    pub const fn name(self) -> &'static str {
        match self {
            Self::DigitalSignature => "digitalSignature",
            Self::NonRepudiation => "nonRepudiation",
            Self::KeyEncipherment => "keyEncipherment",
            Self::DataEncipherment => "dataEncipherment",
            Self::KeyAgreement => "keyAgreement",
            Self::KeyCertSign => "keyCertSign",
            Self::CrlSign => "cRLSign",
        }
    }

    pub(crate) const fn flag(self) -> KeyUsages {
        match self {
            Self::DigitalSignature => KeyUsages::DigitalSignature,
            Self::NonRepudiation => KeyUsages::NonRepudiation,
            Self::KeyEncipherment => KeyUsages::KeyEncipherment,
            Self::DataEncipherment => KeyUsages::DataEncipherment,
            Self::KeyAgreement => KeyUsages::KeyAgreement,
            Self::KeyCertSign => KeyUsages::KeyCertSign,
            Self::CrlSign => KeyUsages::CRLSign,
        }
    }

    pub(crate) fn from_raw(raw: &x509_cert::ext::pkix::KeyUsage) -> Vec<Self> {
        Self::ALL.into_iter().filter(|u| raw.0.contains(u.flag())).collect()
    }
}

impl fmt::Display for KeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyUsage {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let norm = |x: &str| x.replace(['-', '_', ' '], "").to_ascii_lowercase();
        Self::ALL.into_iter().find(|u| norm(u.name()) == norm(s)).ok_or_else(|| Error::UnknownAlgorithm {
            name: s.to_owned(),
            expected: "digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment, keyAgreement, keyCertSign, cRLSign",
        })
    }
}

/// An extended key usage purpose.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExtendedKeyUsage {
    /// id-kp-serverAuth (TLS server).
    ServerAuth,
    /// id-kp-clientAuth (TLS client).
    ClientAuth,
    /// id-kp-codeSigning.
    CodeSigning,
    /// id-kp-emailProtection.
    EmailProtection,
    /// id-kp-timeStamping.
    TimeStamping,
    /// id-kp-OCSPSigning.
    OcspSigning,
    /// Any other purpose, by OID.
    Other(ObjectIdentifier),
}

impl ExtendedKeyUsage {
    const NAMED: [(Self, &'static str, ObjectIdentifier); 6] = [
        (Self::ServerAuth, "serverAuth", ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1")),
        (Self::ClientAuth, "clientAuth", ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2")),
        (Self::CodeSigning, "codeSigning", ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3")),
        (Self::EmailProtection, "emailProtection", ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.4")),
        (Self::TimeStamping, "timeStamping", ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8")),
        (Self::OcspSigning, "OCSPSigning", ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9")),
    ];

    /// The purpose OID.
    pub fn oid(&self) -> ObjectIdentifier {
        match self {
            Self::Other(oid) => *oid,
            named => Self::NAMED
                .iter()
                .find(|(e, _, _)| e == named)
                .map_or(ObjectIdentifier::new_unwrap("2.5.29.37.0"), |(_, _, o)| *o),
        }
    }

    /// The purpose for an OID.
    pub fn from_oid(oid: ObjectIdentifier) -> Self {
        Self::NAMED.iter().find(|(_, _, o)| *o == oid).map_or(Self::Other(oid), |(e, _, _)| e.clone())
    }
}

impl fmt::Display for ExtendedKeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Self::NAMED.iter().find(|(e, _, _)| e == self) {
            Some((_, name, _)) => f.write_str(name),
            None => write!(f, "{}", self.oid()),
        }
    }
}

impl FromStr for ExtendedKeyUsage {
    type Err = Error;

    /// A name (`serverAuth`, `server-auth`, ... case-insensitive) or a dotted OID.
    fn from_str(s: &str) -> Result<Self> {
        let norm = |x: &str| x.replace(['-', '_', ' '], "").to_ascii_lowercase();
        if let Some((e, _, _)) = Self::NAMED.iter().find(|(_, n, _)| norm(n) == norm(s)) {
            return Ok(e.clone());
        }
        ObjectIdentifier::new(s).map(Self::from_oid).map_err(|_| Error::UnknownAlgorithm {
            name: s.to_owned(),
            expected: "serverAuth, clientAuth, codeSigning, emailProtection, timeStamping, OCSPSigning, or a dotted OID",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_are_checked_and_lowercased() {
        assert_eq!(SubjectAltName::dns("API.Example.com.").unwrap(), SubjectAltName::Dns("api.example.com".into()));
        assert!(SubjectAltName::dns("*.example.com").is_ok());
        for bad in ["", "a..b", "-a.com", "a b.com", "a.*.com", &"a".repeat(64)] {
            assert!(SubjectAltName::dns(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_parse_and_print() {
        assert_eq!("server-auth".parse::<ExtendedKeyUsage>().unwrap(), ExtendedKeyUsage::ServerAuth);
        assert_eq!("1.2.3.4".parse::<ExtendedKeyUsage>().unwrap().to_string(), "1.2.3.4");
        assert_eq!("key_cert_sign".parse::<KeyUsage>().unwrap(), KeyUsage::KeyCertSign);
        assert!("sign-everything".parse::<KeyUsage>().is_err());
        assert!(SubjectAltName::uri("spiffe://cluster.local/ns/a/sa/b").is_ok());
        assert!(SubjectAltName::uri("no scheme").is_err());
        assert!(SubjectAltName::email("ops@example.com").is_ok());
        assert!(SubjectAltName::email("ops").is_err());
    }
}
