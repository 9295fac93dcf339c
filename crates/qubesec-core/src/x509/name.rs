//! Distinguished names: a structured form, parsed from and printed as RFC 4514 strings.

use core::fmt;
use core::str::FromStr;

use der::asn1::{Any, ObjectIdentifier, SetOfVec};
use der::{Decode, Encode, Tag};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};

use crate::error::{Error, Result};

/// The name attributes a certificate subject or issuer may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameAttribute {
    /// `CN`, commonName (2.5.4.3).
    CommonName,
    /// `O`, organizationName (2.5.4.10).
    Organization,
    /// `OU`, organizationalUnitName (2.5.4.11).
    OrganizationalUnit,
    /// `C`, countryName (2.5.4.6): two letters, PrintableString.
    Country,
    /// `L`, localityName (2.5.4.7).
    Locality,
    /// `ST`, stateOrProvinceName (2.5.4.8).
    StateOrProvince,
    /// `serialNumber` (2.5.4.5), PrintableString.
    SerialNumber,
    /// `STREET`, streetAddress (2.5.4.9).
    Street,
    /// `DC`, domainComponent (0.9.2342.19200300.100.1.25, RFC 4519): one DNS label, IA5String.
    DomainComponent,
    /// `UID`, userId (0.9.2342.19200300.100.1.1, RFC 4519).
    UserId,
}

impl NameAttribute {
    const ALL: [Self; 10] = [
        Self::CommonName,
        Self::Organization,
        Self::OrganizationalUnit,
        Self::Country,
        Self::Locality,
        Self::StateOrProvince,
        Self::SerialNumber,
        Self::Street,
        Self::DomainComponent,
        Self::UserId,
    ];

    /// The RFC 4514 short name.
    pub const fn short_name(self) -> &'static str {
        match self {
            Self::CommonName => "CN",
            Self::Organization => "O",
            Self::OrganizationalUnit => "OU",
            Self::Country => "C",
            Self::Locality => "L",
            Self::StateOrProvince => "ST",
            Self::SerialNumber => "serialNumber",
            Self::Street => "STREET",
            Self::DomainComponent => "DC",
            Self::UserId => "UID",
        }
    }

    /// The attribute type OID.
    pub const fn oid(self) -> ObjectIdentifier {
        match self {
            Self::CommonName => ObjectIdentifier::new_unwrap("2.5.4.3"),
            Self::Organization => ObjectIdentifier::new_unwrap("2.5.4.10"),
            Self::OrganizationalUnit => ObjectIdentifier::new_unwrap("2.5.4.11"),
            Self::Country => ObjectIdentifier::new_unwrap("2.5.4.6"),
            Self::Locality => ObjectIdentifier::new_unwrap("2.5.4.7"),
            Self::StateOrProvince => ObjectIdentifier::new_unwrap("2.5.4.8"),
            Self::SerialNumber => ObjectIdentifier::new_unwrap("2.5.4.5"),
            Self::Street => ObjectIdentifier::new_unwrap("2.5.4.9"),
            Self::DomainComponent => ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.25"),
            Self::UserId => ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.1"),
        }
    }

    fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.oid() == *oid)
    }

    fn parse(key: &str) -> Result<Self> {
        let key = key.trim();
        let found = Self::ALL.into_iter().find(|a| a.short_name().eq_ignore_ascii_case(key));
        found.or_else(|| Self::ALL.into_iter().find(|a| a.oid().to_string() == key)).ok_or_else(|| {
            Error::encoding(
                "distinguished name",
                format!(
                    "unknown attribute type {key:?}; expected CN, O, OU, C, L, ST, STREET, DC, UID or serialNumber"
                ),
            )
        })
    }

    fn check(self, value: &str) -> Result<()> {
        let bad = |why: &str| Error::encoding("distinguished name", format!("{}={value:?}: {why}", self.short_name()));
        if value.is_empty() {
            return Err(bad("empty value"));
        }
        // ub-name lengths of RFC 5280 Appendix A; a DNS label for DC (RFC 4519), X.520's 128 for
        // STREET and RFC 4519's 256 for UID.
        let max = match self {
            Self::Country => 2,
            Self::CommonName | Self::Organization | Self::OrganizationalUnit | Self::SerialNumber => 64,
            Self::DomainComponent => 63,
            Self::Locality | Self::StateOrProvince | Self::Street => 128,
            Self::UserId => 256,
        };
        if value.chars().count() > max {
            return Err(bad(&format!("longer than {max} characters")));
        }
        match self {
            Self::Country if value.len() != 2 || !value.bytes().all(|b| b.is_ascii_uppercase()) => {
                Err(bad("a country is two upper-case letters (ISO 3166)"))
            }
            Self::SerialNumber if !value.bytes().all(is_printable) => Err(bad("not a PrintableString")),
            Self::DomainComponent if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
                Err(bad("a domain component is one DNS label (letters, digits, '-')"))
            }
            _ if value.chars().any(char::is_control) => Err(bad("contains control characters")),
            _ => Ok(()),
        }
    }

    fn tag(self) -> Tag {
        match self {
            Self::Country | Self::SerialNumber => Tag::PrintableString,
            Self::DomainComponent => Tag::Ia5String,
            _ => Tag::Utf8String,
        }
    }
}

fn is_printable(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b)
}

/// A distinguished name as an ordered list of attributes, one per RDN, most
/// general first (the order in the certificate).
///
/// Parsed from RFC 4514 strings, which list the most specific attribute first:
/// `"CN=api.example.com,O=Example,C=DE"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DistinguishedName {
    attrs: Vec<(NameAttribute, String)>,
}

impl DistinguishedName {
    /// An empty name.
    pub fn new() -> Self {
        Self::default()
    }

    /// A name with just a common name.
    ///
    /// # Errors
    /// [`Error::Encoding`] for an empty, overlong or control-character value.
    pub fn common_name(cn: &str) -> Result<Self> {
        Self::new().with(NameAttribute::CommonName, cn)
    }

    /// Appends an attribute as the next, more specific RDN.
    ///
    /// # Errors
    /// [`Error::Encoding`] naming the attribute and why its value is invalid.
    pub fn with(mut self, attr: NameAttribute, value: &str) -> Result<Self> {
        attr.check(value)?;
        self.attrs.push((attr, value.to_owned()));
        Ok(self)
    }

    /// The attributes, most general first.
    pub fn attributes(&self) -> &[(NameAttribute, String)] {
        &self.attrs
    }

    /// The first value of an attribute.
    pub fn get(&self, attr: NameAttribute) -> Option<&str> {
        self.attrs.iter().find(|(a, _)| *a == attr).map(|(_, v)| v.as_str())
    }

    /// Whether the name has no attributes.
    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }

    /// The X.509 `Name`.
    ///
    /// # Errors
    /// [`Error::Encoding`] only if DER encoding itself fails.
    pub fn to_x509(&self) -> Result<Name> {
        let mut rdns = RdnSequence::default();
        for (attr, value) in &self.attrs {
            let bad = |e: der::Error| Error::encoding("distinguished name", e);
            let atv =
                AttributeTypeAndValue { oid: attr.oid(), value: Any::new(attr.tag(), value.as_bytes()).map_err(bad)? };
            let set = SetOfVec::try_from(vec![atv]).map_err(bad)?;
            rdns.push(RelativeDistinguishedName::from(set));
        }
        // Name and RDNSequence share one encoding; going through DER keeps x509-cert's checks.
        let der = rdns.to_der().map_err(|e| Error::encoding("distinguished name", e))?;
        Name::from_der(&der).map_err(|e| Error::encoding("distinguished name", e))
    }

    /// DER encoding of the X.509 `Name`.
    ///
    /// # Errors
    /// As [`Self::to_x509`].
    pub fn to_der(&self) -> Result<Vec<u8>> {
        self.to_x509()?.to_der().map_err(|e| Error::encoding("distinguished name", e))
    }

    /// Reads an X.509 name made only of the attributes this type knows (one per RDN).
    ///
    /// # Errors
    /// [`Error::Encoding`] for other attributes or multi-valued RDNs.
    pub fn from_x509(name: &Name) -> Result<Self> {
        let mut out = Self::new();
        for rdn in name.iter_rdn() {
            let mut atvs = rdn.iter();
            let (Some(atv), None) = (atvs.next(), atvs.next()) else {
                return Err(Error::encoding("distinguished name", "multi-valued RDNs are not supported"));
            };
            let attr = NameAttribute::from_oid(&atv.oid)
                .ok_or_else(|| Error::encoding("distinguished name", format!("unsupported attribute {}", atv.oid)))?;
            let value = core::str::from_utf8(atv.value.value())
                .map_err(|_| Error::encoding("distinguished name", format!("{} is not text", attr.short_name())))?;
            out = out.with(attr, value)?;
        }
        Ok(out)
    }
}

impl FromStr for DistinguishedName {
    type Err = Error;

    /// Parses an RFC 4514 string: comma-separated `TYPE=value`, most specific
    /// first, with `\`-escapes (`\,`, `\+`, `\"`, `\\`, `\<hex><hex>`, ...).
    /// Multi-valued RDNs (`+`) and `#`-hex values are rejected.
    fn from_str(s: &str) -> Result<Self> {
        let mut attrs = Vec::new();
        for part in split_unescaped(s)? {
            let (key, raw) = part
                .split_once('=')
                .ok_or_else(|| Error::encoding("distinguished name", format!("{part:?} is not TYPE=value")))?;
            let attr = NameAttribute::parse(key)?;
            let value = unescape(raw.trim_start())?;
            if value.starts_with('#') && !raw.trim_start().starts_with("\\#") {
                return Err(Error::encoding("distinguished name", "hex-encoded (#) values are not supported"));
            }
            attr.check(&value)?;
            attrs.push((attr, value));
        }
        if attrs.is_empty() {
            return Err(Error::encoding("distinguished name", "empty name; expected e.g. \"CN=example,O=Example\""));
        }
        attrs.reverse();
        Ok(Self { attrs })
    }
}

/// Splits on unescaped commas, rejecting unescaped `+` (multi-valued RDNs).
fn split_unescaped(s: &str) -> Result<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            '+' => return Err(Error::encoding("distinguished name", "multi-valued RDNs (+) are not supported")),
            _ => {}
        }
    }
    if escaped {
        return Err(Error::encoding("distinguished name", "dangling \\ at the end"));
    }
    parts.push(&s[start..]);
    Ok(parts.into_iter().filter(|p| !p.trim().is_empty()).collect())
}

fn unescape(raw: &str) -> Result<String> {
    let bad = || Error::encoding("distinguished name", format!("bad escape in {raw:?}"));
    let mut bytes = Vec::with_capacity(raw.len());
    // Trailing unescaped spaces are insignificant: remember where the last significant byte ends.
    let mut keep = 0;
    let mut it = raw.bytes();
    while let Some(b) = it.next() {
        if b != b'\\' {
            bytes.push(b);
            if b != b' ' {
                keep = bytes.len();
            }
            continue;
        }
        let next = it.next().ok_or_else(bad)?;
        if next.is_ascii_hexdigit() {
            let low = it.next().filter(u8::is_ascii_hexdigit).ok_or_else(bad)?;
            let hex = [next, low];
            let text = core::str::from_utf8(&hex).map_err(|_| bad())?;
            bytes.push(u8::from_str_radix(text, 16).map_err(|_| bad())?);
        } else {
            bytes.push(next);
        }
        keep = bytes.len();
    }
    bytes.truncate(keep);
    String::from_utf8(bytes).map_err(|_| Error::encoding("distinguished name", "escaped bytes are not UTF-8"))
}

impl fmt::Display for DistinguishedName {
    /// RFC 4514: most specific first, special characters escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (attr, value)) in self.attrs.iter().rev().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}=", attr.short_name())?;
            let last = value.chars().count().saturating_sub(1);
            for (j, c) in value.chars().enumerate() {
                let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
                    || (j == 0 && matches!(c, '#' | ' '))
                    || (j == last && c == ' ');
                if special {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4514_round_trip_reverses_order() {
        let dn: DistinguishedName =
            "CN=api.example.com, O=Example\\, Inc.,OU=Platform,C=DE,ST=Berlin,L=Berlin,serialNumber=42"
                .parse()
                .unwrap();
        assert_eq!(dn.attributes()[0], (NameAttribute::SerialNumber, "42".to_owned()));
        assert_eq!(dn.get(NameAttribute::Organization), Some("Example, Inc."));
        assert_eq!(dn.get(NameAttribute::CommonName), Some("api.example.com"));
        assert_eq!(dn.to_string().parse::<DistinguishedName>().unwrap(), dn);
        assert_eq!(DistinguishedName::from_x509(&dn.to_x509().unwrap()).unwrap(), dn);
    }

    #[test]
    fn rfc4514_required_attributes_dc_street_uid() {
        // RFC 4514, 3: parsers must recognise CN, L, ST, O, OU, C, STREET, DC and UID.
        let dn: DistinguishedName = "UID=jsmith,STREET=1 Main St,DC=example,dc=com".parse().unwrap();
        assert_eq!(dn.get(NameAttribute::UserId), Some("jsmith"));
        assert_eq!(dn.get(NameAttribute::Street), Some("1 Main St"));
        assert_eq!(dn.attributes().iter().filter(|(a, _)| *a == NameAttribute::DomainComponent).count(), 2, "{dn:?}");
        assert_eq!(dn.to_string(), "UID=jsmith,STREET=1 Main St,DC=example,DC=com");
        let x509 = dn.to_x509().unwrap();
        assert_eq!(DistinguishedName::from_x509(&x509).unwrap(), dn);
        // DC is an IA5String (RFC 4519), the others UTF8String; OIDs as registered.
        let der = dn.to_der().unwrap();
        let dc_oid = [0x06, 0x0a, 0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19, 0x16];
        assert!(der.windows(dc_oid.len()).any(|w| w == dc_oid), "DC not as OID + IA5String");
        let uid_oid = [0x06, 0x0a, 0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01, 0x0c];
        assert!(der.windows(uid_oid.len()).any(|w| w == uid_oid), "UID not as OID + UTF8String");
        assert!(der.windows(4).any(|w| w == [0x06, 0x03, 0x55, 0x04]), "no 2.5.4.x attribute");
        let street = [0x06, 0x03, 0x55, 0x04, 0x09, 0x0c];
        assert!(der.windows(street.len()).any(|w| w == street), "STREET not as 2.5.4.9 + UTF8String");
        for (bad, needle) in [("DC=exa mple", "DNS label"), ("DC=café", "DNS label"), ("UID=", "empty value")] {
            let err = bad.parse::<DistinguishedName>().unwrap_err().to_string();
            assert!(err.contains(needle), "{bad:?}: {err}");
        }
    }

    #[test]
    fn hex_escapes_and_leading_hash() {
        let dn: DistinguishedName = "CN=caf\\C3\\A9,O=\\#1".parse().unwrap();
        assert_eq!(dn.get(NameAttribute::CommonName), Some("café"));
        assert_eq!(dn.get(NameAttribute::Organization), Some("#1"));
        assert_eq!(dn.to_string(), "CN=café,O=\\#1");
        let spaced: DistinguishedName = "CN= a b \\ ".parse().unwrap();
        assert_eq!(spaced.get(NameAttribute::CommonName), Some("a b  "));
    }

    #[test]
    fn bad_names_say_what_is_wrong() {
        for (input, needle) in [
            ("", "empty name"),
            ("CN", "not TYPE=value"),
            ("XX=1", "unknown attribute type \"XX\""),
            ("C=Germany", "longer than 2"),
            ("CN=a+O=b", "multi-valued"),
            ("CN=", "empty value"),
            ("CN=a\\", "dangling"),
            ("CN=#0403", "hex-encoded"),
            ("serialNumber=a_b", "PrintableString"),
        ] {
            let err = input.parse::<DistinguishedName>().unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }
}
