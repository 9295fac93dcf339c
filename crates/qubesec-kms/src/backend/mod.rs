//! The key backends behind one trait: a software keystore and PKCS#11 tokens.
//!
//! Backends are synchronous (PKCS#11 calls block); the gRPC service runs them
//! on tokio's blocking pool.

pub mod pinstate;
pub mod pkcs11;
pub mod software;

use zeroize::Zeroizing;

use crate::error::Result;
use crate::keyid::KeyId;

/// A ciphertext in the [`crate::envelope`] layout and the key id that made it.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The ciphertext (at most 1024 bytes).
    pub ciphertext: Vec<u8>,
    /// The key id the apiserver stores beside it.
    pub key_id: KeyId,
}

/// A source of KEKs that encrypts and decrypts the apiserver's DEK seeds.
///
/// Implementations bind the key id as associated data and never expose key
/// material. Errors follow [`crate::Error`]: `UnknownKey` for a key id the
/// backend does not hold, `NotAuthentic` for a ciphertext that fails
/// authentication, `Unavailable` when the backend is temporarily unreachable.
pub trait Backend: Send + Sync + 'static {
    /// A short name for logs and metrics ("software", "pkcs11").
    fn kind(&self) -> &'static str;

    /// The key id Encrypt uses now.
    ///
    /// # Errors
    /// `Unavailable` if the backend cannot tell.
    fn active_key_id(&self) -> Result<KeyId>;

    /// Encrypts under the active KEK.
    ///
    /// # Errors
    /// `InvalidRequest` for an empty or oversized plaintext, `Unavailable`.
    fn encrypt(&self, plaintext: &[u8]) -> Result<Sealed>;

    /// Decrypts a ciphertext made under `key_id`.
    ///
    /// # Errors
    /// `InvalidRequest` (layout), `UnknownKey`, `NotAuthentic`, `Unavailable`.
    fn decrypt(&self, key_id: &KeyId, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>>;

    /// Picks up outside changes (a rotation written by another process) and
    /// reconnects a lost backend. Called periodically by the server. Returns
    /// whether the active key id may have changed.
    ///
    /// # Errors
    /// Whatever stops the refresh; the backend keeps its previous state.
    fn refresh(&self) -> Result<bool>;
}
