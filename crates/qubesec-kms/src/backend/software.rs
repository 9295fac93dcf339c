//! The software backend: KEKs from a [`Keystore`], AES-256-GCM in process.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

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
pub struct SoftwareBackend {
    keystore: Keystore,
    master: MasterKey,
    state: RwLock<State>,
}

impl std::fmt::Debug for SoftwareBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareBackend").field("keystore", &self.keystore.path()).finish_non_exhaustive()
    }
}

impl SoftwareBackend {
    /// Opens the keystore with the master key from `source`.
    ///
    /// # Errors
    /// Every keystore error (missing, corrupt, wrong master key, ...).
    pub fn open(keystore: Keystore, source: &MasterKeySource) -> Result<Self> {
        let opened = keystore.open(source)?;
        let state = load(opened.header, &opened.keys)?;
        Ok(Self { keystore, master: opened.master, state: RwLock::new(state) })
    }

    fn state(&self) -> Result<std::sync::RwLockReadGuard<'_, State>> {
        self.state.read().map_err(|_| Error::Internal("keystore state lock poisoned".into()))
    }
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
        Ok(self.state()?.active.key_id.clone())
    }

    fn encrypt(&self, plaintext: &[u8]) -> Result<Sealed> {
        envelope::check_plaintext(plaintext)?;
        let active = Arc::clone(&self.state()?.active);
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
        let kek = self
            .state()?
            .keys
            .get(&key_id.version())
            .filter(|k| k.key_id == *key_id)
            .cloned()
            .ok_or_else(|| Error::UnknownKey(key_id.to_string()))?;
        let aad = envelope::associated_data(key_id);
        kek.cipher
            .decrypt(&Nonce::from(*parts.nonce), Payload { msg: parts.sealed, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| Error::NotAuthentic(key_id.to_string()))
    }

    fn refresh(&self) -> Result<bool> {
        let header = self.state()?.header;
        let Some((header, keys)) = self.keystore.reload(&self.master, &header)? else { return Ok(false) };
        let fresh = load(header, &keys)?;
        let mut state = self.state.write().map_err(|_| Error::Internal("keystore state lock poisoned".into()))?;
        *state = fresh;
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
