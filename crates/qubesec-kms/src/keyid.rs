//! Key ids: `qubesec-kms/v<version>/<16 hex digits>`.
//!
//! The digest is the first 8 bytes of SHA-256 over a domain label, the
//! version, the key's random 16-byte uid and (for the software keystore) an
//! HMAC commitment to the key. A fresh key gets a fresh uid, so an id is never
//! reused for a different key; the digest is one-way, so it reveals nothing
//! about the key.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

const PREFIX: &str = "qubesec-kms/v";
/// The apiserver's limit on key id length.
pub const MAX_KEY_ID_LEN: usize = 1024;

/// A validated key id naming one KEK version.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId {
    text: String,
    version: u32,
}

impl KeyId {
    /// Derives the key id of KEK `version` from its uid and an optional
    /// commitment to the key material.
    pub fn derive(version: u32, uid: &[u8; 16], commitment: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"qubesec-kms key id v1\0");
        h.update(version.to_be_bytes());
        h.update(uid);
        h.update(commitment);
        let digest = h.finalize();
        let text = format!("{PREFIX}{version}/{}", hex::encode(&digest[..8]));
        Self { text, version }
    }

    /// Parses a key id received from the apiserver.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for an empty or oversized id,
    /// [`Error::UnknownKey`] for one that is not in our format.
    pub fn parse(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(Error::InvalidRequest("key id is empty".into()));
        }
        if s.len() > MAX_KEY_ID_LEN {
            return Err(Error::InvalidRequest(format!("key id is {} bytes, the limit is {MAX_KEY_ID_LEN}", s.len())));
        }
        let unknown = || Error::UnknownKey(s.chars().take(128).collect());
        let rest = s.strip_prefix(PREFIX).ok_or_else(unknown)?;
        let (version, digest) = rest.split_once('/').ok_or_else(unknown)?;
        let canonical_number = !(version.is_empty() || (version.starts_with('0') && version.len() > 1));
        let version: u32 = version.parse().ok().filter(|_| canonical_number).ok_or_else(unknown)?;
        let hex_ok = digest.len() == 16 && digest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex_ok {
            return Err(unknown());
        }
        Ok(Self { text: s.to_owned(), version })
    }

    /// The KEK version this id names.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The id as the apiserver sees it.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_and_parse_round_trip() {
        let id = KeyId::derive(3, &[7; 16], b"commit");
        assert!(id.as_str().starts_with("qubesec-kms/v3/"));
        assert_eq!(id.as_str().len(), "qubesec-kms/v3/".len() + 16);
        let parsed = KeyId::parse(id.as_str()).unwrap();
        assert_eq!(parsed, id);
        assert_eq!(parsed.version(), 3);
    }

    #[test]
    fn different_uid_or_commitment_gives_a_different_id() {
        let a = KeyId::derive(1, &[1; 16], b"x");
        assert_ne!(a, KeyId::derive(1, &[2; 16], b"x"));
        assert_ne!(a, KeyId::derive(1, &[1; 16], b"y"));
        assert_ne!(a, KeyId::derive(2, &[1; 16], b"x"));
    }

    #[test]
    fn rejects_malformed_ids() {
        assert!(matches!(KeyId::parse(""), Err(Error::InvalidRequest(_))));
        assert!(matches!(KeyId::parse(&"a".repeat(1025)), Err(Error::InvalidRequest(_))));
        for bad in [
            "other/v1/0123456789abcdef",
            "qubesec-kms/v/0123456789abcdef",
            "qubesec-kms/v01/0123456789abcdef",
            "qubesec-kms/v1/0123456789ABCDEF",
            "qubesec-kms/v1/0123",
            "qubesec-kms/v99999999999/0123456789abcdef",
        ] {
            assert!(matches!(KeyId::parse(bad), Err(Error::UnknownKey(_))), "{bad}");
        }
    }
}
