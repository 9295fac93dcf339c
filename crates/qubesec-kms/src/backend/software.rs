//! The software backend: KEKs from a [`Keystore`], AES-256-GCM in process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use super::{Backend, Sealed};
use crate::envelope;
use crate::error::{Error, Result};
use crate::keyid::KeyId;
use crate::keystore::{Header, KeySet, Keystore, MasterKey, MasterKeySource};

/// One loaded KEK: its id and a ready cipher (the cipher's key schedule is
/// wiped on drop by `aes-gcm`'s `zeroize` feature).
struct Loaded {
    key_id: KeyId,
    cipher: Aes256Gcm,
}

struct State {
    header: Header,
    active: Arc<Loaded>,
    keys: BTreeMap<u32, Arc<Loaded>>,
}

/// KEK versions from a sealed keystore file, re-read when it changes.
///
/// Opening can wait: [`SoftwareBackend::new`] never fails, and until the
/// keystore opens (missing, wrong master key, unreadable) every request
/// fails with `Unavailable` naming the reason, while [`Backend::refresh`]
/// retries with backoff (1 s .. 30 s).
pub struct SoftwareBackend {
    keystore: Keystore,
    source: MasterKeySource,
    inner: RwLock<Option<Inner>>,
    retry: Mutex<Retry>,
}

struct Inner {
    master: MasterKey,
    state: State,
}

struct Retry {
    next_attempt: Instant,
    backoff: Duration,
    last_error: String,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl std::fmt::Debug for SoftwareBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareBackend").field("keystore", &self.keystore.path()).finish_non_exhaustive()
    }
}

impl SoftwareBackend {
    /// A backend that opens the keystore on the first [`Backend::refresh`].
    pub fn new(keystore: Keystore, source: MasterKeySource) -> Self {
        Self {
            keystore,
            source,
            inner: RwLock::new(None),
            retry: Mutex::new(Retry {
                next_attempt: Instant::now(),
                backoff: Duration::from_secs(1),
                last_error: "keystore not opened yet".into(),
            }),
        }
    }

    /// Opens the keystore with the master key from `source` now.
    ///
    /// # Errors
    /// Every keystore error (missing, corrupt, wrong master key, ...).
    pub fn open(keystore: Keystore, source: &MasterKeySource) -> Result<Self> {
        let backend = Self::new(keystore, source.clone());
        let inner = backend.load_inner()?;
        *backend.inner.write().map_err(|_| poisoned())? = Some(inner);
        Ok(backend)
    }

    fn load_inner(&self) -> Result<Inner> {
        let opened = self.keystore.open(&self.source)?;
        let state = load(opened.header, &opened.keys)?;
        Ok(Inner { master: opened.master, state })
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Option<Inner>>> {
        self.inner.read().map_err(|_| poisoned())
    }

    fn unavailable(&self) -> Error {
        let why = self.retry.lock().map(|r| r.last_error.clone()).unwrap_or_default();
        Error::Unavailable(format!("keystore {} is not open: {why}", self.keystore.path().display()))
    }
}

fn poisoned() -> Error {
    Error::Internal("keystore state lock poisoned".into())
}

fn load(header: Header, keys: &KeySet) -> Result<State> {
    let mut loaded = BTreeMap::new();
    for kek in keys.versions() {
        let cipher =
            Aes256Gcm::new_from_slice(kek.key_bytes()).map_err(|e| Error::Internal(format!("AES key: {e}")))?;
        loaded.insert(kek.version(), Arc::new(Loaded { key_id: kek.key_id().clone(), cipher }));
    }
    let active = loaded
        .get(&keys.active_version())
        .cloned()
        .ok_or_else(|| Error::Internal("active version missing after load".into()))?;
    Ok(State { header, active, keys: loaded })
}

impl Backend for SoftwareBackend {
    fn kind(&self) -> &'static str {
        "software"
    }

    fn active_key_id(&self) -> Result<KeyId> {
        let guard = self.read()?;
        let inner = guard.as_ref().ok_or_else(|| self.unavailable())?;
        Ok(inner.state.active.key_id.clone())
    }

    fn encrypt(&self, plaintext: &[u8]) -> Result<Sealed> {
        envelope::check_plaintext(plaintext)?;
        let active = {
            let guard = self.read()?;
            Arc::clone(&guard.as_ref().ok_or_else(|| self.unavailable())?.state.active)
        };
        let nonce = envelope::random_nonce()?;
        let aad = envelope::associated_data(&active.key_id);
        let sealed = active
            .cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: &aad })
            .map_err(|_| Error::Internal("AES-GCM encryption failed".into()))?;
        Ok(Sealed { ciphertext: envelope::join(&nonce, &sealed), key_id: active.key_id.clone() })
    }

    fn decrypt(&self, key_id: &KeyId, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let parts = envelope::split(ciphertext)?;
        let kek = {
            let guard = self.read()?;
            let inner = guard.as_ref().ok_or_else(|| self.unavailable())?;
            inner.state.keys.get(&key_id.version()).filter(|k| k.key_id == *key_id).cloned()
        }
        .ok_or_else(|| Error::UnknownKey(key_id.to_string()))?;
        let aad = envelope::associated_data(key_id);
        kek.cipher
            .decrypt(&Nonce::from(*parts.nonce), Payload { msg: parts.sealed, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| Error::NotAuthentic(key_id.to_string()))
    }

    fn refresh(&self) -> Result<bool> {
        let known = self.read()?.as_ref().map(|i| i.state.header);
        let Some(header) = known else {
            {
                let r = self.retry.lock().map_err(|_| poisoned())?;
                if Instant::now() < r.next_attempt {
                    return Err(Error::Unavailable(format!("retry pending: {}", r.last_error)));
                }
            }
            return match self.load_inner() {
                Ok(inner) => {
                    *self.inner.write().map_err(|_| poisoned())? = Some(inner);
                    tracing::info!(keystore = %self.keystore.path().display(), "keystore opened");
                    Ok(true)
                }
                Err(e) => {
                    let mut r = self.retry.lock().map_err(|_| poisoned())?;
                    r.next_attempt = Instant::now() + r.backoff;
                    r.backoff = (r.backoff * 2).min(MAX_BACKOFF);
                    r.last_error = e.to_string();
                    Err(Error::Unavailable(e.to_string()))
                }
            };
        };
        let reloaded = {
            let guard = self.read()?;
            let inner = guard.as_ref().ok_or_else(|| self.unavailable())?;
            self.keystore.reload(&inner.master, &header)?
        };
        let Some((header, keys)) = reloaded else { return Ok(false) };
        let fresh = load(header, &keys)?;
        let mut guard = self.inner.write().map_err(|_| poisoned())?;
        if let Some(inner) = guard.as_mut() {
            inner.state = fresh;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::Argon2Params;

    fn backend(dir: &std::path::Path) -> (SoftwareBackend, MasterKeySource) {
        let source = MasterKeySource::KeyFile(dir.join("master.key"));
        let ks = Keystore::at(dir.join("ks"));
        ks.init(&source, Argon2Params::default()).unwrap();
        (SoftwareBackend::open(ks, &source).unwrap(), source)
    }

    #[test]
    fn round_trip_and_binding_to_the_key_id() {
        let tmp = tempfile::tempdir().unwrap();
        let (b, _) = backend(tmp.path());
        let sealed = b.encrypt(b"a 32-byte DEK seed for the test.").unwrap();
        assert_eq!(sealed.key_id, b.active_key_id().unwrap());
        assert!(sealed.ciphertext.len() <= envelope::MAX_CIPHERTEXT);
        assert_eq!(
            b.decrypt(&sealed.key_id, &sealed.ciphertext).unwrap().as_slice(),
            b"a 32-byte DEK seed for the test."
        );

        let mut tampered = sealed.ciphertext.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(b.decrypt(&sealed.key_id, &tampered), Err(Error::NotAuthentic(_))));
        let other = KeyId::derive(1, &[0; 16], b"");
        assert!(matches!(b.decrypt(&other, &sealed.ciphertext), Err(Error::UnknownKey(_))));
        let max = b.encrypt(&[7; envelope::MAX_PLAINTEXT]).unwrap();
        assert_eq!(max.ciphertext.len(), envelope::MAX_CIPHERTEXT);
        assert!(matches!(b.encrypt(&[7; envelope::MAX_PLAINTEXT + 1]), Err(Error::InvalidRequest(_))));
        assert!(matches!(b.encrypt(&[]), Err(Error::InvalidRequest(_))));
    }

    #[test]
    fn refresh_picks_up_rotation_and_keeps_old_versions() {
        let tmp = tempfile::tempdir().unwrap();
        let (b, source) = backend(tmp.path());
        let old = b.encrypt(b"seed").unwrap();
        assert!(!b.refresh().unwrap());
        Keystore::at(tmp.path().join("ks")).update(&source, KeySet::rotate).unwrap();
        assert!(b.refresh().unwrap());
        let new_id = b.active_key_id().unwrap();
        assert_ne!(new_id, old.key_id);
        assert_eq!(new_id.version(), 2);
        assert_eq!(b.decrypt(&old.key_id, &old.ciphertext).unwrap().as_slice(), b"seed");
        assert_eq!(b.encrypt(b"x").unwrap().key_id, new_id);
    }
}
