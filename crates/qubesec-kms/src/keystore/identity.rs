//! The node identity: an ML-DSA-65 signing key that signs the replication
//! bundles this node exports, kept beside the keystore (`identity.qki`) and
//! sealed under the same master key.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "QSKMSIDN"
//! 8       2     identity format version, u16 big-endian (1)
//! 10      2     algorithm: 1 = ML-DSA-65
//! 12      4     P, length of the public key, u32 big-endian
//! 16      P     public key, DER SubjectPublicKeyInfo
//! 16+P    12    AES-GCM nonce
//! 28+P    4     L, sealed length (48)
//! 32+P    L     AES-256-GCM(K, nonce, ML-DSA seed xi), AAD = bytes 0..32+P
//! ```
//! `K = HKDF-SHA256(IKM = master key, salt = "", info = "qubesec-kms identity v1")`.
//! Opening re-derives the key pair from the seed and checks it against the
//! stored public key.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use qubesec_core::{Fingerprint, HashAlgorithm, PublicKey, SignatureAlgorithm, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use super::master::MasterKey;
use crate::error::KeystoreError;

/// The identity file name inside the keystore directory.
pub const IDENTITY_FILE: &str = "identity.qki";
/// The identity file magic.
pub const MAGIC: &[u8; 8] = b"QSKMSIDN";
const VERSION: u16 = 1;
const ALG_ML_DSA_65: u16 = 1;
const INFO: &[u8] = b"qubesec-kms identity v1";
/// The signature algorithm of node identities.
pub const ALGORITHM: SignatureAlgorithm = SignatureAlgorithm::MlDsa65;

/// A node's signing identity. `Debug` shows the fingerprint only; the
/// signing key is wiped on drop by `qubesec-core`.
pub struct NodeIdentity {
    key: SigningKey,
    spki: Vec<u8>,
    fingerprint: Fingerprint,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

fn corrupt(path: &Path, what: impl Into<String>) -> KeystoreError {
    KeystoreError::Identity { path: path.to_path_buf(), what: what.into() }
}

impl NodeIdentity {
    /// A fresh ML-DSA-65 identity.
    ///
    /// # Errors
    /// [`KeystoreError::Randomness`].
    pub fn generate() -> Result<Self, KeystoreError> {
        let key = SigningKey::generate(ALGORITHM).map_err(|e| KeystoreError::Randomness(e.to_string()))?;
        Self::from_key(key).map_err(KeystoreError::Randomness)
    }

    fn from_key(key: SigningKey) -> Result<Self, String> {
        let public = key.verifying_key().map_err(|e| e.to_string())?.clone();
        let public = PublicKey::from(public);
        let spki = public.to_spki_der().map_err(|e| e.to_string())?;
        let fingerprint = Fingerprint::of_bytes(&spki);
        Ok(Self { key, spki, fingerprint })
    }

    /// The fingerprint operators compare out of band (`sha256:` + hex of SHA-256 over the DER SPKI).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The public key, DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The public key, PEM `PUBLIC KEY`.
    ///
    /// # Errors
    /// Only if PEM encoding fails.
    pub fn public_pem(&self) -> Result<String, KeystoreError> {
        PublicKey::from_spki_der(&self.spki)
            .and_then(|k| k.to_spki_pem())
            .map_err(|e| KeystoreError::Randomness(format!("encoding the identity public key: {e}")))
    }

    /// The verifying key.
    ///
    /// # Errors
    /// Never for an identity built by this module.
    pub fn verifying_key(&self) -> Result<&VerifyingKey, KeystoreError> {
        self.key.verifying_key().map_err(|e| KeystoreError::Randomness(e.to_string()))
    }

    /// Signs `msg` with context `ctx` (hedged ML-DSA).
    ///
    /// # Errors
    /// A randomness failure.
    pub fn sign(&self, msg: &[u8], ctx: &[u8]) -> Result<Vec<u8>, KeystoreError> {
        self.key.sign(msg, ctx).map(|s| s.into_bytes()).map_err(|e| KeystoreError::Randomness(e.to_string()))
    }

    /// Seals the identity into file bytes under `master`.
    pub(crate) fn seal(&self, path: &Path, master: &MasterKey) -> Result<Vec<u8>, KeystoreError> {
        let seed = self.key.seed().ok_or_else(|| corrupt(path, "identity key has no seed"))?;
        let mut out = Vec::with_capacity(32 + self.spki.len() + 48);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&ALG_ML_DSA_65.to_be_bytes());
        out.extend_from_slice(&u32::try_from(self.spki.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&self.spki);
        let mut nonce = [0u8; 12];
        qubesec_core::rand::fill(&mut nonce).map_err(|e| KeystoreError::Randomness(e.to_string()))?;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&(seed.len() as u32 + 16).to_be_bytes());
        let cipher = cipher(path, master)?;
        let sealed = cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: seed, aad: &out })
            .map_err(|_| corrupt(path, "sealing failed"))?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens identity file bytes with `master`.
    ///
    /// # Errors
    /// [`KeystoreError::Identity`] for a damaged or foreign file, or one
    /// sealed under another master key.
    pub(crate) fn open(path: &Path, bytes: &[u8], master: &MasterKey) -> Result<Self, KeystoreError> {
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(corrupt(path, "not a qubesec-kms identity file"));
        }
        let version = u16::from_be_bytes([bytes[8], bytes[9]]);
        if version != VERSION {
            return Err(corrupt(path, format!("identity format version {version} is not supported")));
        }
        if u16::from_be_bytes([bytes[10], bytes[11]]) != ALG_ML_DSA_65 {
            return Err(corrupt(path, "unknown identity algorithm"));
        }
        let spki_len = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
        let nonce_at = 16usize.checked_add(spki_len).filter(|&n| n + 16 <= bytes.len());
        let Some(nonce_at) = nonce_at else { return Err(corrupt(path, "identity file is truncated")) };
        let spki = &bytes[16..nonce_at];
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&bytes[nonce_at..nonce_at + 12]);
        let l = &bytes[nonce_at + 12..nonce_at + 16];
        let sealed_len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
        let aad_end = nonce_at + 16;
        if bytes.len() != aad_end.saturating_add(sealed_len) {
            return Err(corrupt(path, "identity file length does not match its header"));
        }
        let seed = Zeroizing::new(
            cipher(path, master)?
                .decrypt(&Nonce::from(nonce), Payload { msg: &bytes[aad_end..], aad: &bytes[..aad_end] })
                .map_err(|_| corrupt(path, "does not open with this keystore's master key (damaged or foreign)"))?,
        );
        let key = SigningKey::from_seed(ALGORITHM, &seed).map_err(|e| corrupt(path, format!("seed: {e}")))?;
        let identity = Self::from_key(key).map_err(|e| corrupt(path, e))?;
        if identity.spki != spki {
            return Err(corrupt(path, "stored public key does not match the sealed seed"));
        }
        Ok(identity)
    }
}

fn cipher(path: &Path, master: &MasterKey) -> Result<Aes256Gcm, KeystoreError> {
    let key = qubesec_core::kdf::derive(HashAlgorithm::Sha256, master.bytes(), b"", INFO, 32)
        .map_err(|e| corrupt(path, format!("HKDF: {e}")))?;
    Aes256Gcm::new_from_slice(&key).map_err(|e| corrupt(path, format!("AES key: {e}")))
}

/// Parses `sha256:<64 hex>` (the product's fingerprint text form).
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let hex_part = text
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("{text:?} is not a fingerprint: expected sha256:<64 hex digits>"))?;
    let mut out = [0u8; 32];
    if hex_part.len() != 64 || hex::decode_to_slice(hex_part.to_ascii_lowercase(), &mut out).is_err() {
        return Err(format!("{text:?} is not a fingerprint: expected sha256:<64 hex digits>"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_bytes(Zeroizing::new([5u8; 32]))
    }

    #[test]
    fn seal_open_round_trip_and_wrong_master() {
        let id = NodeIdentity::generate().unwrap();
        let path = Path::new("identity.qki");
        let bytes = id.seal(path, &master()).unwrap();
        let back = NodeIdentity::open(path, &bytes, &master()).unwrap();
        assert_eq!(back.fingerprint(), id.fingerprint());
        let sig = back.sign(b"m", b"c").unwrap();
        id.verifying_key().unwrap().verify_bytes(b"m", b"c", &sig).unwrap();
        let other = MasterKey::from_bytes(Zeroizing::new([6u8; 32]));
        assert!(NodeIdentity::open(path, &bytes, &other).unwrap_err().to_string().contains("does not open"));
        for cut in [0, 10, bytes.len() - 1] {
            assert!(NodeIdentity::open(path, &bytes[..cut], &master()).is_err());
        }
        let text = format!("{id:?}");
        assert!(text.contains("sha256:") && !text.contains("seed"), "{text}");
    }

    #[test]
    fn fingerprints_parse_strictly() {
        let fp = NodeIdentity::generate().unwrap().fingerprint();
        assert_eq!(&parse_fingerprint(&fp.to_string()).unwrap(), fp.as_bytes());
        assert!(parse_fingerprint(&fp.hex()).is_err());
        assert!(parse_fingerprint("sha256:abc").is_err());
        assert!(parse_fingerprint(&format!("sha256:{}", "z".repeat(64))).is_err());
    }
}
