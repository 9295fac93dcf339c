//! Key fingerprints: `sha256:<64 hex>` over the DER SubjectPublicKeyInfo, and
//! a 10-character short form (the first 10 hex characters).
//!
//! One definition for the whole product, so the CLI, the operator's status
//! and the KMS key ids always agree.

use sha2::{Digest, Sha256};

use crate::encoding::PublicKey;
use crate::error::Result;

/// A SHA-256 fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of arbitrary bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The fingerprint of a public key: SHA-256 over its DER SubjectPublicKeyInfo.
    ///
    /// # Errors
    /// Only if the SPKI cannot be encoded.
    pub fn of_public_key(key: &PublicKey) -> Result<Self> {
        Ok(Self::of_bytes(&key.to_spki_der()?))
    }

    /// The canonical fingerprint as text for `Debug` output, or a placeholder
    /// if the SPKI cannot be encoded (which never happens for a valid key).
    pub(crate) fn debug_text(key: PublicKey) -> String {
        Self::of_public_key(&key).map_or_else(|_| "<unencodable>".to_owned(), |f| f.to_string())
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex characters, without prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The short form: the first 10 hex characters.
    pub fn short(&self) -> String {
        let mut h = self.hex();
        h.truncate(10);
        h
    }
}

impl core::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl core::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_and_short_form() {
        // SHA-256("abc"), FIPS 180-2 Appendix B.1.
        let f = Fingerprint::of_bytes(b"abc");
        assert_eq!(f.to_string(), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(f.short(), "ba7816bf8f");
    }
}
