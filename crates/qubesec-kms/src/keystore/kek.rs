//! KEK versions and the set of them a keystore (or a bundle) holds.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, KeystoreError, Result};
use crate::keyid::KeyId;

/// Bytes of one encoded key entry in a key set.
pub(crate) const ENTRY_LEN: usize = 4 + 8 + 16 + 32;

/// One KEK version: a 256-bit AES key with its version number, a random uid
/// and its creation time. `Debug` shows the key id, never the key.
pub struct KekVersion {
    version: u32,
    created_unix: u64,
    uid: [u8; 16],
    key: Zeroizing<[u8; 32]>,
    key_id: KeyId,
}

impl KekVersion {
    /// Builds a KEK version from its parts, deriving its key id.
    pub fn new(version: u32, created_unix: u64, uid: [u8; 16], key: Zeroizing<[u8; 32]>) -> Self {
        let key_id = KeyId::derive(version, &uid, commitment(&key, &uid).as_slice());
        Self { version, created_unix, uid, key, key_id }
    }

    /// A fresh random KEK with a fresh uid.
    ///
    /// # Errors
    /// [`KeystoreError::Randomness`] if the OS random generator fails.
    pub fn generate(version: u32) -> Result<Self, KeystoreError> {
        let mut key = Zeroizing::new([0u8; 32]);
        let mut uid = [0u8; 16];
        let rand_err = |e: qubesec_core::Error| KeystoreError::Randomness(e.to_string());
        qubesec_core::rand::fill(key.as_mut_slice()).map_err(rand_err)?;
        qubesec_core::rand::fill(&mut uid).map_err(rand_err)?;
        let created =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        Ok(Self::new(version, created, uid, key))
    }

    /// The version number.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Creation time, seconds since the Unix epoch.
    pub fn created_unix(&self) -> u64 {
        self.created_unix
    }

    /// The key id the apiserver sees for this version.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The raw key, for the AEAD only.
    pub(crate) fn key_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// Whether two versions hold the same uid and key (constant time on the key).
    pub(crate) fn same_material(&self, other: &Self) -> bool {
        self.version == other.version && self.uid == other.uid && bool::from(self.key.ct_eq(other.key.as_slice()))
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.created_unix.to_be_bytes());
        out.extend_from_slice(&self.uid);
        out.extend_from_slice(self.key.as_slice());
    }
}

impl fmt::Debug for KekVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KekVersion")
            .field("version", &self.version)
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// HMAC-SHA256(key, label || uid): binds the key id to the key material
/// without revealing it.
fn commitment(key: &[u8; 32], uid: &[u8; 16]) -> Zeroizing<Vec<u8>> {
    let mut mac = match <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length; unreachable, but never panic.
        Err(_) => return Zeroizing::new(Vec::new()),
    };
    mac.update(b"qubesec-kms key commitment v1\0");
    mac.update(uid);
    Zeroizing::new(mac.finalize().into_bytes().to_vec())
}

/// All KEK versions of a keystore, with the active one and the next free version number.
#[derive(Debug)]
pub struct KeySet {
    active: u32,
    next: u32,
    keys: BTreeMap<u32, KekVersion>,
}

impl KeySet {
    /// A key set with one fresh KEK, version 1, active.
    ///
    /// # Errors
    /// [`KeystoreError::Randomness`] if the OS random generator fails.
    pub fn first() -> Result<Self, KeystoreError> {
        let kek = KekVersion::generate(1)?;
        Ok(Self { active: 1, next: 2, keys: BTreeMap::from([(1, kek)]) })
    }

    /// The active version (used by Encrypt).
    ///
    /// # Errors
    /// [`Error::Internal`] if the set has no active key, which the
    /// constructors and every mutation rule out.
    pub fn active(&self) -> Result<&KekVersion> {
        self.keys.get(&self.active).ok_or_else(|| Error::Internal("key set has no active version".into()))
    }

    /// The active version number.
    pub fn active_version(&self) -> u32 {
        self.active
    }

    /// The version with this number.
    pub fn get(&self, version: u32) -> Option<&KekVersion> {
        self.keys.get(&version)
    }

    /// All versions, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = &KekVersion> {
        self.keys.values()
    }

    /// Adds a fresh KEK and makes it active; returns its version.
    ///
    /// # Errors
    /// [`KeystoreError::Randomness`] if the OS random generator fails,
    /// [`KeystoreError::NoSuchVersion`] if version numbers are exhausted.
    pub fn rotate(&mut self) -> Result<u32, KeystoreError> {
        let version = self.next;
        let next = version.checked_add(1).ok_or(KeystoreError::NoSuchVersion(u32::MAX))?;
        let kek = KekVersion::generate(version)?;
        self.keys.insert(version, kek);
        self.active = version;
        self.next = next;
        Ok(version)
    }

    /// Removes a version for good. Refuses the active one.
    ///
    /// # Errors
    /// [`KeystoreError::RetireActive`], [`KeystoreError::NoSuchVersion`].
    pub fn retire(&mut self, version: u32) -> Result<(), KeystoreError> {
        if version == self.active {
            return Err(KeystoreError::RetireActive(version));
        }
        self.keys.remove(&version).map(drop).ok_or(KeystoreError::NoSuchVersion(version))
    }

    /// Merges another key set (an imported bundle): new versions are added,
    /// identical ones skipped, differing ones refused; the other set's active
    /// version becomes active. Returns the number of versions added.
    ///
    /// # Errors
    /// [`KeystoreError::Conflict`] if a version number holds different material.
    pub fn merge(&mut self, other: KeySet) -> Result<usize, KeystoreError> {
        for (v, kek) in &other.keys {
            if let Some(mine) = self.keys.get(v)
                && !mine.same_material(kek)
            {
                return Err(KeystoreError::Conflict(*v));
            }
        }
        let mut added = 0;
        let active = other.active;
        self.next = self.next.max(other.next);
        for (v, kek) in other.keys {
            if let std::collections::btree_map::Entry::Vacant(e) = self.keys.entry(v) {
                e.insert(kek);
                added += 1;
            }
        }
        self.active = active;
        Ok(added)
    }

    /// Encodes the set (secret bytes: the buffer is wiped on drop).
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(12 + self.keys.len() * ENTRY_LEN));
        out.extend_from_slice(&self.active.to_be_bytes());
        out.extend_from_slice(&self.next.to_be_bytes());
        out.extend_from_slice(&(self.keys.len() as u32).to_be_bytes());
        for kek in self.keys.values() {
            kek.encode_into(&mut out);
        }
        out
    }

    /// Decodes and validates a set; `what` explains a failure.
    pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        let (head, mut rest) = bytes.split_at_checked(12).ok_or("key set shorter than its 12-byte header")?;
        let word = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let (active, next, count) = (word(0), word(4), word(8) as usize);
        if rest.len() != count.saturating_mul(ENTRY_LEN) {
            return Err(format!("key set says {count} keys but holds {} bytes of entries", rest.len()));
        }
        let mut keys = BTreeMap::new();
        while let Some((entry, tail)) = rest.split_at_checked(ENTRY_LEN) {
            rest = tail;
            let version = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
            let mut created = [0u8; 8];
            created.copy_from_slice(&entry[4..12]);
            let mut uid = [0u8; 16];
            uid.copy_from_slice(&entry[12..28]);
            let mut key = Zeroizing::new([0u8; 32]);
            key.copy_from_slice(&entry[28..60]);
            if version == 0 || version >= next {
                return Err(format!("key version {version} outside 1..{next}"));
            }
            let kek = KekVersion::new(version, u64::from_be_bytes(created), uid, key);
            if keys.insert(version, kek).is_some() {
                return Err(format!("key version {version} appears twice"));
            }
        }
        if !keys.contains_key(&active) {
            return Err(format!("active version {active} is not in the key set"));
        }
        Ok(Self { active, next, keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let mut set = KeySet::first().unwrap();
        set.rotate().unwrap();
        set.rotate().unwrap();
        set.retire(2).unwrap();
        let bytes = set.encode();
        let back = KeySet::decode(&bytes).unwrap();
        assert_eq!(back.active().unwrap().version(), 3);
        assert_eq!(back.versions().map(KekVersion::version).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(back.active().unwrap().key_id(), set.active().unwrap().key_id());
        assert!(back.get(1).unwrap().same_material(set.get(1).unwrap()));
    }

    #[test]
    fn retire_refuses_active_and_unknown() {
        let mut set = KeySet::first().unwrap();
        assert!(matches!(set.retire(1), Err(KeystoreError::RetireActive(1))));
        assert!(matches!(set.retire(7), Err(KeystoreError::NoSuchVersion(7))));
    }

    #[test]
    fn decode_rejects_inconsistent_sets() {
        let set = KeySet::first().unwrap();
        let bytes = set.encode();
        assert!(KeySet::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut bad_active = bytes.to_vec();
        bad_active[3] = 9;
        assert!(KeySet::decode(&bad_active).is_err());
        assert!(KeySet::decode(&[0; 5]).is_err());
    }

    #[test]
    fn debug_redacts_the_key() {
        let set = KeySet::first().unwrap();
        let kek = set.active().unwrap();
        let dbg = format!("{set:?}");
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains(&format!("{:?}", kek.key_bytes())));
        assert!(!dbg.contains(&hex::encode(kek.key_bytes())));
    }

    #[test]
    fn merge_adds_and_refuses_conflicts() {
        let mut a = KeySet::first().unwrap();
        let b_bytes = a.encode();
        let mut b = KeySet::decode(&b_bytes).unwrap();
        b.rotate().unwrap();
        assert_eq!(a.merge(b).unwrap(), 1);
        assert_eq!(a.active().unwrap().version(), 2);
        let c = KeySet::first().unwrap();
        assert!(matches!(a.merge(c), Err(KeystoreError::Conflict(1))));
    }
}
