//! The software keystore: KEK versions sealed under a master key in one file.
//!
//! A keystore is a directory holding `keystore.qks` (format in [`mod@format`] and
//! `docs/kms-keystore-format.md`), the node identity `identity.qki`
//! ([`mod@identity`]) and `keystore.lock`. Writers (`init`, `identity`,
//! `rotate`, `activate`, `retire`, `import`) take an exclusive advisory lock
//! on the lock file, write a temp file (0600), fsync it, rename it over the
//! target and fsync the directory, so a reader (or a crash at any point) sees
//! either the old or the new file, never a mix. Readers take no lock.

pub mod format;
pub mod identity;
pub mod kek;
pub mod master;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub use format::Header;
pub use identity::NodeIdentity;
pub use kek::{ImportRecord, KekVersion, KeySet, Merged};
pub use master::{Argon2Params, Kdf, MasterKey, MasterKeySource};

use crate::error::{Error, KeystoreError};

/// The keystore file name inside the keystore directory.
pub const FILE_NAME: &str = "keystore.qks";
const LOCK_NAME: &str = "keystore.lock";
const TMP_PREFIX: &str = ".keystore.qks.tmp.";

/// A keystore directory.
#[derive(Clone, Debug)]
pub struct Keystore {
    dir: PathBuf,
    file: PathBuf,
    identity: PathBuf,
}

/// A keystore read and opened: its header, master key and keys.
#[derive(Debug)]
pub struct Opened {
    /// The header as read.
    pub header: Header,
    /// The derived master key.
    pub master: MasterKey,
    /// The KEK versions.
    pub keys: KeySet,
}

impl Keystore {
    /// The keystore in `dir` (nothing is read yet).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let file = dir.join(FILE_NAME);
        let identity = dir.join(identity::IDENTITY_FILE);
        Self { dir, file, identity }
    }

    /// The keystore file.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The node identity file.
    pub fn identity_path(&self) -> &Path {
        &self.identity
    }

    /// Creates a new keystore with one KEK version and a node identity, and
    /// the master key file if `source` names one that does not exist yet.
    ///
    /// # Errors
    /// [`KeystoreError::AlreadyExists`], I/O and randomness errors.
    pub fn init(&self, source: &MasterKeySource, params: Argon2Params) -> Result<Opened, KeystoreError> {
        self.create_dir()?;
        let _lock = self.lock()?;
        if self.file.exists() {
            return Err(KeystoreError::AlreadyExists(self.file.clone()));
        }
        self.create_locked(source, params, KeySet::first()?)
    }

    /// Writes a new identity and then the keystore (the keystore's existence
    /// marks a complete `init`; a stale identity left by a crash is replaced).
    fn create_locked(
        &self,
        source: &MasterKeySource,
        params: Argon2Params,
        keys: KeySet,
    ) -> Result<Opened, KeystoreError> {
        source.create_key_file_if_missing()?;
        let kdf = source.new_kdf(params)?;
        let master = source.derive(&kdf, &self.file)?;
        let id = NodeIdentity::generate()?;
        self.write_file(&self.identity, &id.seal(&self.identity, &master)?)?;
        let header = Header { kdf, generation: 1, format: format::FORMAT_VERSION };
        self.write(&header, &master, &keys)?;
        Ok(Opened { header, master, keys })
    }

    fn create_dir(&self) -> Result<(), KeystoreError> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir).map_err(|e| self.io(e))
    }

    /// Opens the node identity with the keystore's master key.
    ///
    /// # Errors
    /// [`KeystoreError::Identity`] when it is missing (with the command that
    /// creates it) or does not open.
    pub fn identity(&self, master: &MasterKey) -> Result<NodeIdentity, KeystoreError> {
        let bytes = match std::fs::read(&self.identity) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeystoreError::Identity {
                    path: self.identity.clone(),
                    what: "no node identity yet (create one with `qubesec-kms keystore identity`)".into(),
                });
            }
            Err(e) => return Err(KeystoreError::io(&self.identity, e)),
        };
        NodeIdentity::open(&self.identity, &bytes, master)
    }

    /// Creates the node identity of an existing keystore (one made before
    /// identities existed). Returns it and whether it was created now.
    ///
    /// # Errors
    /// As [`Keystore::open`]; [`KeystoreError::Identity`] when an identity
    /// file exists but does not open.
    pub fn ensure_identity(&self, source: &MasterKeySource) -> Result<(NodeIdentity, bool), KeystoreError> {
        let _lock = self.lock()?;
        let opened = self.open(source)?;
        if self.identity.exists() {
            return Ok((self.identity(&opened.master)?, false));
        }
        let id = NodeIdentity::generate()?;
        self.write_file(&self.identity, &id.seal(&self.identity, &opened.master)?)?;
        Ok((id, true))
    }

    /// Reads the raw file bytes.
    ///
    /// # Errors
    /// [`KeystoreError::Missing`] or I/O errors.
    pub fn read_bytes(&self) -> Result<Vec<u8>, KeystoreError> {
        std::fs::read(&self.file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => KeystoreError::Missing(self.file.clone()),
            _ => self.io(e),
        })
    }

    /// Reads and opens the keystore, deriving the master key from `source`.
    ///
    /// # Errors
    /// Every [`KeystoreError`] about a missing, foreign, truncated, corrupt or
    /// wrongly keyed file.
    pub fn open(&self, source: &MasterKeySource) -> Result<Opened, KeystoreError> {
        let bytes = self.read_bytes()?;
        let header = format::parse_header(&self.file, &bytes)?;
        let master = source.derive(&header.kdf, &self.file)?;
        let (header, keys) = format::open(&self.file, &bytes, &master)?;
        Ok(Opened { header, master, keys })
    }

    /// Re-reads the keystore with a master key already derived, if its
    /// generation differs from `known`. Returns `None` when unchanged.
    ///
    /// # Errors
    /// As [`Keystore::open`]; a change of KDF salt or parameters (a re-init
    /// under the server's feet) is reported as [`KeystoreError::WrongMasterKey`].
    pub fn reload(&self, master: &MasterKey, known: &Header) -> Result<Option<(Header, KeySet)>, KeystoreError> {
        let bytes = self.read_bytes()?;
        let header = format::parse_header(&self.file, &bytes)?;
        if header == *known {
            return Ok(None);
        }
        if header.kdf != known.kdf {
            return Err(KeystoreError::WrongMasterKey(self.file.clone()));
        }
        format::open(&self.file, &bytes, master).map(Some)
    }

    /// Locks, opens, applies `change` to the key set and writes it back with
    /// the next generation. Returns what `change` returned.
    ///
    /// # Errors
    /// Errors of [`Keystore::open`], of `change`, and I/O errors.
    pub fn update<T>(
        &self,
        source: &MasterKeySource,
        change: impl FnOnce(&mut KeySet) -> Result<T, KeystoreError>,
    ) -> Result<(T, Opened), KeystoreError> {
        let _lock = self.lock()?;
        let mut opened = self.open(source)?;
        let out = change(&mut opened.keys)?;
        self.commit(&mut opened)?;
        Ok((out, opened))
    }

    fn commit(&self, opened: &mut Opened) -> Result<(), KeystoreError> {
        opened.header.generation = opened.header.generation.wrapping_add(1);
        opened.header.format = format::FORMAT_VERSION;
        self.write(&opened.header, &opened.master, &opened.keys)
    }

    /// Imports a verified bundle under the writer lock: the replay rule is
    /// checked against the keystore first, then `decrypt` opens the bundle's
    /// versions, which are merged (or, when no keystore exists yet, become a
    /// new keystore, with a new node identity, taking `exporter_active` as
    /// its active version). Nothing is written unless every check passes.
    ///
    /// # Errors
    /// Keystore errors ([`KeystoreError::Replayed`], [`KeystoreError::Conflict`], ...)
    /// and whatever `decrypt` returns.
    pub fn import_with(
        &self,
        source: &MasterKeySource,
        params: Argon2Params,
        signer: [u8; 32],
        created_ms: u64,
        exporter_active: u32,
        decrypt: impl FnOnce() -> Result<Vec<KekVersion>, Error>,
    ) -> Result<Imported, Error> {
        self.create_dir()?;
        let _lock = self.lock()?;
        if !self.file.exists() {
            let versions = decrypt()?;
            let mut keys = KeySet::from_imported(versions, exporter_active)?;
            keys.record_import(signer, created_ms);
            let added = keys.versions().map(|k| k.key_id().clone()).collect();
            let opened = self.create_locked(source, params, keys)?;
            return Ok(Imported { created: true, merged: Merged { added, known: Vec::new() }, opened });
        }
        let mut opened = self.open(source)?;
        opened.keys.check_fresh(&signer, created_ms)?;
        let versions = decrypt()?;
        let merged = opened.keys.merge_import(versions, signer, created_ms)?;
        self.commit(&mut opened)?;
        Ok(Imported { created: false, merged, opened })
    }

    /// Writes atomically: temp file (0600), fsync, rename, fsync directory.
    /// The caller holds the lock.
    fn write(&self, header: &Header, master: &MasterKey, keys: &KeySet) -> Result<(), KeystoreError> {
        let bytes = format::seal(&self.file, header, master, keys)?;
        self.write_file(&self.file, &bytes)
    }

    /// Atomically replaces `target` (a file in the keystore directory) with `bytes`.
    fn write_file(&self, target: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
        self.remove_stale_temps();
        let tmp = self.dir.join(format!("{TMP_PREFIX}{}", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, target)?;
            File::open(&self.dir)?.sync_all()
        })();
        result.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io(e)
        })
    }

    /// Temp files left by a writer that died (we hold the lock, so no live writer owns one).
    fn remove_stale_temps(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Takes the exclusive advisory writer lock (blocks until free).
    fn lock(&self) -> Result<File, KeystoreError> {
        let path = self.dir.join(LOCK_NAME);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| KeystoreError::io(&path, e))?;
        f.lock().map_err(|e| KeystoreError::io(&path, e))?;
        Ok(f)
    }

    fn io(&self, e: std::io::Error) -> KeystoreError {
        KeystoreError::io(&self.dir, e)
    }
}

/// The outcome of [`Keystore::import_with`].
#[derive(Debug)]
pub struct Imported {
    /// Whether the keystore was created by this import.
    pub created: bool,
    /// The key ids added and the ones already present.
    pub merged: Merged,
    /// The keystore as written.
    pub opened: Opened,
}

#[cfg(test)]
mod tests;
