//! The ciphertext layout the plugin returns to the apiserver.
//!
//! ```text
//! offset  size  field
//! 0       1     layout version (1)
//! 1       12    AES-GCM nonce (random)
//! 13      n+16  AES-256-GCM ciphertext and tag
//! ```
//! The associated data is `"qubesec-kms ciphertext v1\0" || key id`, so a
//! ciphertext only decrypts under the key id it was made for. With the
//! apiserver's 1024-byte ciphertext limit, plaintexts are at most
//! [`MAX_PLAINTEXT`] bytes.

use crate::error::{Error, Result};
use crate::keyid::KeyId;

/// Layout version byte.
pub const LAYOUT_V1: u8 = 1;
/// Nonce length.
pub const NONCE_LEN: usize = 12;
/// Tag length.
pub const TAG_LEN: usize = 16;
/// Bytes added to a plaintext.
pub const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;
/// The apiserver's limit on ciphertext length.
pub const MAX_CIPHERTEXT: usize = 1024;
/// The longest plaintext whose ciphertext fits [`MAX_CIPHERTEXT`].
pub const MAX_PLAINTEXT: usize = MAX_CIPHERTEXT - OVERHEAD;

/// The AEAD associated data binding a ciphertext to its key id.
pub fn associated_data(key_id: &KeyId) -> Vec<u8> {
    let mut aad = b"qubesec-kms ciphertext v1\0".to_vec();
    aad.extend_from_slice(key_id.as_str().as_bytes());
    aad
}

/// A ciphertext split into its parts (borrowed).
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    /// The nonce.
    pub nonce: &'a [u8; NONCE_LEN],
    /// Ciphertext and tag.
    pub sealed: &'a [u8],
}

/// Splits a ciphertext received from the apiserver, checking its layout.
///
/// # Errors
/// [`Error::InvalidRequest`] if it is empty, too long, too short, or of an unknown layout.
pub fn split(ciphertext: &[u8]) -> Result<Parts<'_>> {
    if ciphertext.is_empty() {
        return Err(Error::InvalidRequest("ciphertext is empty".into()));
    }
    if ciphertext.len() > MAX_CIPHERTEXT {
        return Err(Error::InvalidRequest(format!(
            "ciphertext is {} bytes, the limit is {MAX_CIPHERTEXT}",
            ciphertext.len()
        )));
    }
    if ciphertext[0] != LAYOUT_V1 {
        return Err(Error::InvalidRequest(format!("unknown ciphertext layout version {}", ciphertext[0])));
    }
    if ciphertext.len() < OVERHEAD + 1 {
        return Err(Error::InvalidRequest(format!(
            "ciphertext is {} bytes, shorter than the minimum {}",
            ciphertext.len(),
            OVERHEAD + 1
        )));
    }
    let (nonce, sealed) = ciphertext[1..].split_at(NONCE_LEN);
    let nonce = nonce.try_into().map_err(|_| Error::Internal("nonce split".into()))?;
    Ok(Parts { nonce, sealed })
}

/// Joins nonce and sealed bytes into the layout.
pub fn join(nonce: &[u8; NONCE_LEN], sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    out.push(LAYOUT_V1);
    out.extend_from_slice(nonce);
    out.extend_from_slice(sealed);
    out
}

/// Checks a plaintext the apiserver asks us to encrypt.
///
/// # Errors
/// [`Error::InvalidRequest`] if it is empty or longer than [`MAX_PLAINTEXT`].
pub fn check_plaintext(plaintext: &[u8]) -> Result<()> {
    if plaintext.is_empty() {
        return Err(Error::InvalidRequest("plaintext is empty".into()));
    }
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(Error::InvalidRequest(format!(
            "plaintext is {} bytes, the limit is {MAX_PLAINTEXT}",
            plaintext.len()
        )));
    }
    Ok(())
}

/// A fresh random nonce.
///
/// # Errors
/// [`Error::Internal`] if the OS random generator fails.
pub fn random_nonce() -> Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    qubesec_core::rand::fill(&mut nonce).map_err(|e| Error::Internal(format!("randomness: {e}")))?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_checks_layout() {
        assert!(matches!(split(&[]), Err(Error::InvalidRequest(_))));
        assert!(matches!(split(&vec![1; MAX_CIPHERTEXT + 1]), Err(Error::InvalidRequest(_))));
        assert!(matches!(split(&[2; 64]), Err(Error::InvalidRequest(_))));
        assert!(matches!(split(&[1; OVERHEAD]), Err(Error::InvalidRequest(_))));
        let ct = join(&[9; NONCE_LEN], &[5; 20]);
        let parts = split(&ct).unwrap();
        assert_eq!(parts.nonce, &[9; NONCE_LEN]);
        assert_eq!(parts.sealed, &[5; 20]);
    }

    #[test]
    fn plaintext_limits() {
        assert!(check_plaintext(&[]).is_err());
        assert!(check_plaintext(&[0; MAX_PLAINTEXT]).is_ok());
        assert!(check_plaintext(&[0; MAX_PLAINTEXT + 1]).is_err());
    }
}
