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

/// The newest bundle accepted from one signer (the replay rule of `import`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportRecord {
    /// SHA-256 over the signer's DER SubjectPublicKeyInfo.
    pub signer: [u8; 32],
    /// The bundle's creation time, Unix milliseconds.
    pub created_ms: u64,
}

/// All KEK versions of a keystore: the active one, staged ones (newer than
/// the active one, not yet used by Encrypt), older ones kept for Decrypt,
/// the next free version number, and the import records.
#[derive(Debug)]
pub struct KeySet {
    active: u32,
    next: u32,
    keys: BTreeMap<u32, KekVersion>,
    imports: BTreeMap<[u8; 32], u64>,
}

/// What an import added.
#[derive(Debug, Default)]
pub struct Merged {
    /// The key ids added, oldest first.
    pub added: Vec<KeyId>,
    /// The key ids the bundle held that were already here.
    pub known: Vec<KeyId>,
}

impl KeySet {
    /// A key set with one fresh KEK, version 1, active.
    ///
    /// # Errors
    /// [`KeystoreError::Randomness`] if the OS random generator fails.
    pub fn first() -> Result<Self, KeystoreError> {
        let kek = KekVersion::generate(1)?;
        Ok(Self { active: 1, next: 2, keys: BTreeMap::from([(1, kek)]), imports: BTreeMap::new() })
    }

    /// A key set made from imported versions, for a keystore that did not
    /// exist yet: it takes the exporting node's active version.
    ///
    /// # Errors
    /// [`KeystoreError::NoSuchVersion`] if `active` is not among `versions`,
    /// [`KeystoreError::Conflict`] for a version that appears twice.
    pub fn from_imported(versions: Vec<KekVersion>, active: u32) -> Result<Self, KeystoreError> {
        let mut keys = BTreeMap::new();
        for kek in versions {
            let v = kek.version();
            if keys.insert(v, kek).is_some() {
                return Err(KeystoreError::Conflict(v));
            }
        }
        if !keys.contains_key(&active) {
            return Err(KeystoreError::NoSuchVersion(active));
        }
        let next = next_after(&keys)?;
        Ok(Self { active, next, keys, imports: BTreeMap::new() })
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

    /// The next version number `rotate` or `rotate --stage` will use.
    pub fn next_version(&self) -> u32 {
        self.next
    }

    /// The version with this number.
    pub fn get(&self, version: u32) -> Option<&KekVersion> {
        self.keys.get(&version)
    }

    /// All versions, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = &KekVersion> {
        self.keys.values()
    }

    /// Whether `version` is staged: present and newer than the active one.
    pub fn is_staged(&self, version: u32) -> bool {
        version > self.active && self.keys.contains_key(&version)
    }

    /// The import records: signer fingerprint and the newest accepted bundle time.
    pub fn imports(&self) -> impl Iterator<Item = ImportRecord> + '_ {
        self.imports.iter().map(|(signer, created_ms)| ImportRecord { signer: *signer, created_ms: *created_ms })
    }

    /// Adds a fresh KEK *without* activating it (`rotate --stage`); returns its version.
    ///
    /// # Errors
    /// [`KeystoreError::Randomness`] if the OS random generator fails,
    /// [`KeystoreError::NoSuchVersion`] if version numbers are exhausted.
    pub fn stage(&mut self) -> Result<u32, KeystoreError> {
        let version = self.next;
        let next = version.checked_add(1).ok_or(KeystoreError::NoSuchVersion(u32::MAX))?;
        let kek = KekVersion::generate(version)?;
        self.keys.insert(version, kek);
        self.next = next;
        Ok(version)
    }

    /// Adds a fresh KEK and makes it active at once (single-node `rotate`); returns its version.
    ///
    /// # Errors
    /// As [`KeySet::stage`].
    pub fn rotate(&mut self) -> Result<u32, KeystoreError> {
        let version = self.stage()?;
        self.active = version;
        Ok(version)
    }

    /// Makes `version` the active one. Going back to an older version needs
    /// `allow_older`. Returns the previously active version.
    ///
    /// # Errors
    /// [`KeystoreError::NoSuchVersion`], [`KeystoreError::ActivateOlder`].
    pub fn activate(&mut self, version: u32, allow_older: bool) -> Result<u32, KeystoreError> {
        if !self.keys.contains_key(&version) {
            return Err(KeystoreError::NoSuchVersion(version));
        }
        if version < self.active && !allow_older {
            return Err(KeystoreError::ActivateOlder { version, active: self.active });
        }
        Ok(std::mem::replace(&mut self.active, version))
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

    /// The replay rule: a bundle from `signer` must be newer than every
    /// bundle already imported from it.
    ///
    /// # Errors
    /// [`KeystoreError::Replayed`].
    pub fn check_fresh(&self, signer: &[u8; 32], created_ms: u64) -> Result<(), KeystoreError> {
        match self.imports.get(signer) {
            Some(&last) if created_ms <= last => {
                Err(KeystoreError::Replayed { created_ms, last_ms: last, signer: hex::encode(signer) })
            }
            _ => Ok(()),
        }
    }

    /// Adds imported versions: new ones are added (inactive), identical ones
    /// skipped, a version number holding different material refused. The
    /// active version never changes; the next version number rises only
    /// past the highest version actually added. Records the bundle for the
    /// replay rule.
    ///
    /// # Errors
    /// [`KeystoreError::Conflict`], [`KeystoreError::Replayed`],
    /// [`KeystoreError::NoSuchVersion`] when the versions are exhausted.
    pub fn merge_import(
        &mut self,
        versions: Vec<KekVersion>,
        signer: [u8; 32],
        created_ms: u64,
    ) -> Result<Merged, KeystoreError> {
        self.check_fresh(&signer, created_ms)?;
        for kek in &versions {
            if let Some(mine) = self.keys.get(&kek.version())
                && !mine.same_material(kek)
            {
                return Err(KeystoreError::Conflict(kek.version()));
            }
        }
        let mut merged = Merged::default();
        for kek in versions {
            let v = kek.version();
            if self.keys.contains_key(&v) {
                merged.known.push(kek.key_id().clone());
                continue;
            }
            let next = v.checked_add(1).ok_or(KeystoreError::NoSuchVersion(u32::MAX))?;
            self.next = self.next.max(next);
            merged.added.push(kek.key_id().clone());
            self.keys.insert(v, kek);
        }
        self.record_import(signer, created_ms);
        Ok(merged)
    }

    /// Records an accepted bundle (also used when `import` creates the keystore).
    pub(crate) fn record_import(&mut self, signer: [u8; 32], created_ms: u64) {
        let last = self.imports.entry(signer).or_insert(0);
        *last = (*last).max(created_ms);
    }

    /// Encodes the set (secret bytes: the buffer is wiped on drop), format 2.
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(16 + self.keys.len() * ENTRY_LEN + self.imports.len() * 40));
        out.extend_from_slice(&self.active.to_be_bytes());
        out.extend_from_slice(&self.next.to_be_bytes());
        out.extend_from_slice(&(self.keys.len() as u32).to_be_bytes());
        for kek in self.keys.values() {
            kek.encode_into(&mut out);
        }
        out.extend_from_slice(&(self.imports.len() as u32).to_be_bytes());
        for (signer, created) in &self.imports {
            out.extend_from_slice(signer);
            out.extend_from_slice(&created.to_be_bytes());
        }
        out
    }

    /// Decodes and validates a set written by keystore format `format`
    /// (1: no import records, 2: with them); `what` explains a failure.
    pub(crate) fn decode(bytes: &[u8], format: u16) -> std::result::Result<Self, String> {
        let (head, rest) = bytes.split_at_checked(12).ok_or("key set shorter than its 12-byte header")?;
        let word = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let (active, next, count) = (word(0), word(4), word(8) as usize);
        let entries_len = count.checked_mul(ENTRY_LEN).ok_or("key count overflows")?;
        let (entries, mut tail) = rest
            .split_at_checked(entries_len)
            .ok_or_else(|| format!("key set says {count} keys but holds {} bytes of entries", rest.len()))?;
        let keys = decode_entries(entries, |version| {
            if version >= next { Err(format!("key version {version} outside 1..{next}")) } else { Ok(()) }
        })?;
        if !keys.contains_key(&active) {
            return Err(format!("active version {active} is not in the key set"));
        }
        let mut imports = BTreeMap::new();
        if format >= 2 {
            let (n, t) = tail.split_at_checked(4).ok_or("key set lacks its import record count")?;
            let n = u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize;
            if t.len() != n.saturating_mul(40) {
                return Err(format!("key set says {n} import records but holds {} bytes of them", t.len()));
            }
            for rec in t.chunks_exact(40) {
                let mut signer = [0u8; 32];
                signer.copy_from_slice(&rec[..32]);
                let mut created = [0u8; 8];
                created.copy_from_slice(&rec[32..]);
                if imports.insert(signer, u64::from_be_bytes(created)).is_some() {
                    return Err("an import record appears twice".into());
                }
            }
            tail = &[];
        }
        if !tail.is_empty() {
            return Err(format!("{} trailing bytes after the key set", tail.len()));
        }
        Ok(Self { active, next, keys, imports })
    }
}

/// The number after the highest version (the `next` a set of versions proves).
fn next_after(keys: &BTreeMap<u32, KekVersion>) -> Result<u32, KeystoreError> {
    let highest = keys.keys().next_back().copied().unwrap_or(0);
    highest.checked_add(1).ok_or(KeystoreError::NoSuchVersion(u32::MAX))
}

/// Encodes versions as a bare list (a bundle's payload): `n` then `n` entries.
pub(crate) fn encode_list<'a>(versions: impl Iterator<Item = &'a KekVersion>) -> Zeroizing<Vec<u8>> {
    let mut body = Zeroizing::new(Vec::new());
    let mut n = 0u32;
    for kek in versions {
        kek.encode_into(&mut body);
        n += 1;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(4 + body.len()));
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a bare list written by [`encode_list`]: non-empty, ascending,
/// versions in `1..u32::MAX`.
pub(crate) fn decode_list(bytes: &[u8]) -> std::result::Result<Vec<KekVersion>, String> {
    let (n, entries) = bytes.split_at_checked(4).ok_or("key list shorter than its count")?;
    let n = u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize;
    if n == 0 {
        return Err("the key list is empty".into());
    }
    if entries.len() != n.saturating_mul(ENTRY_LEN) {
        return Err(format!("key list says {n} keys but holds {} bytes of entries", entries.len()));
    }
    let keys = decode_entries(entries, |version| {
        if version == u32::MAX { Err(format!("key version {version} leaves no next version")) } else { Ok(()) }
    })?;
    Ok(keys.into_values().collect())
}

/// Decodes 60-byte entries in ascending version order; `check` vets each version.
fn decode_entries(
    mut rest: &[u8],
    check: impl Fn(u32) -> std::result::Result<(), String>,
) -> std::result::Result<BTreeMap<u32, KekVersion>, String> {
    let mut keys = BTreeMap::new();
    let mut previous = 0u32;
    while let Some((entry, tail)) = rest.split_at_checked(ENTRY_LEN) {
        rest = tail;
        let version = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
        let mut created = [0u8; 8];
        created.copy_from_slice(&entry[4..12]);
        let mut uid = [0u8; 16];
        uid.copy_from_slice(&entry[12..28]);
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&entry[28..60]);
        if version == 0 {
            return Err("key version 0 is not valid".into());
        }
        check(version)?;
        if version == previous {
            return Err(format!("key version {version} appears twice"));
        }
        if version < previous {
            return Err(format!("key version {version} after {previous}: entries are not ascending"));
        }
        previous = version;
        keys.insert(version, KekVersion::new(version, u64::from_be_bytes(created), uid, key));
    }
    if !rest.is_empty() {
        return Err("a key entry is truncated".into());
    }
    Ok(keys)
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
        let back = KeySet::decode(&bytes, 2).unwrap();
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
        assert!(KeySet::decode(&bytes[..bytes.len() - 1], 2).is_err());
        let mut bad_active = bytes.to_vec();
        bad_active[3] = 9;
        assert!(KeySet::decode(&bad_active, 2).is_err());
        assert!(KeySet::decode(&[0; 5], 2).is_err());
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
    fn import_adds_inactive_versions_and_never_inflates_next() {
        let mut a = KeySet::first().unwrap();
        let mut b = KeySet::decode(&a.encode(), 2).unwrap();
        b.stage().unwrap();
        let list = decode_list(&encode_list(b.versions())).unwrap();
        let merged = a.merge_import(list, [1; 32], 10).unwrap();
        assert_eq!(merged.added.len(), 1);
        assert_eq!(merged.known.len(), 1);
        assert_eq!(a.active_version(), 1, "import never changes the active version");
        assert!(a.is_staged(2));
        assert_eq!(a.next_version(), 3);
        // Replay: the same or an older bundle from the same signer is refused.
        let again = decode_list(&encode_list(b.versions())).unwrap();
        assert!(matches!(a.merge_import(again, [1; 32], 10), Err(KeystoreError::Replayed { .. })));
        // Differing material under a known version number is refused.
        let c = KeySet::first().unwrap();
        let list = decode_list(&encode_list(c.versions())).unwrap();
        assert!(matches!(a.merge_import(list, [1; 32], 11), Err(KeystoreError::Conflict(1))));
        // Activation is the explicit step; going back needs a flag.
        assert_eq!(a.activate(2, false).unwrap(), 1);
        assert!(matches!(a.activate(1, false), Err(KeystoreError::ActivateOlder { version: 1, active: 2 })));
        assert_eq!(a.activate(1, true).unwrap(), 2);
        assert!(matches!(a.activate(9, false), Err(KeystoreError::NoSuchVersion(9))));
    }

    #[test]
    fn key_lists_reject_disorder_and_version_max() {
        let mut set = KeySet::first().unwrap();
        set.stage().unwrap();
        let good = encode_list(set.versions());
        assert_eq!(decode_list(&good).unwrap().len(), 2);
        let mut swapped = good.to_vec();
        swapped[4..8].copy_from_slice(&3u32.to_be_bytes());
        assert!(decode_list(&swapped).unwrap_err().contains("not ascending"));
        let mut max = good.to_vec();
        max[4 + ENTRY_LEN..8 + ENTRY_LEN].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_list(&max).unwrap_err().contains("no next version"));
        assert!(decode_list(&0u32.to_be_bytes()).unwrap_err().contains("empty"));
    }

    #[test]
    fn stage_keeps_the_active_version() {
        let mut set = KeySet::first().unwrap();
        assert_eq!(set.stage().unwrap(), 2);
        assert_eq!(set.active_version(), 1);
        assert_eq!(set.rotate().unwrap(), 3);
        assert_eq!(set.active_version(), 3);
        assert!(!set.is_staged(2), "2 is older than the active version now");
        let back = KeySet::decode(&set.encode(), 2).unwrap();
        assert_eq!(back.next_version(), 4);
        // Format 1 sets (no import records) still read.
        let mut v1 = set.encode().to_vec();
        v1.truncate(v1.len() - 4);
        assert_eq!(KeySet::decode(&v1, 1).unwrap().active_version(), 3);
        assert!(KeySet::decode(&v1, 2).is_err());
    }

    #[test]
    fn conflicting_import_changes_nothing() {
        let mut a = KeySet::first().unwrap();
        let c = KeySet::first().unwrap();
        let list = decode_list(&encode_list(c.versions())).unwrap();
        assert!(matches!(a.merge_import(list, [2; 32], 1), Err(KeystoreError::Conflict(1))));
        assert_eq!(a.versions().count(), 1, "a refused import changes nothing");
        assert_eq!(a.imports().count(), 0);
    }
}
