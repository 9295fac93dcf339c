//! The software keystore: KEK versions sealed under a master key in one file.
//!
//! A keystore is a directory holding `keystore.qks` (format in [`mod@format`] and
//! `docs/kms-keystore-format.md`) and `keystore.lock`. Writers (`init`,
//! `rotate`, `retire`, `import`) take an exclusive advisory lock on the lock
//! file, write a temp file (0600), fsync it, rename it over the keystore and
//! fsync the directory, so a reader (or a crash at any point) sees either the
//! old or the new keystore, never a mix. Readers take no lock.

pub mod format;
pub mod kek;
pub mod master;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub use format::Header;
pub use kek::{KekVersion, KeySet};
pub use master::{Argon2Params, Kdf, MasterKey, MasterKeySource};

use crate::error::KeystoreError;

/// The keystore file name inside the keystore directory.
pub const FILE_NAME: &str = "keystore.qks";
const LOCK_NAME: &str = "keystore.lock";
const TMP_PREFIX: &str = ".keystore.qks.tmp.";

/// A keystore directory.
#[derive(Clone, Debug)]
pub struct Keystore {
    dir: PathBuf,
    file: PathBuf,
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
        Self { dir, file }
    }

    /// The keystore file.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Creates a new keystore with one KEK version, and the master key file
    /// if `source` names one that does not exist yet.
    ///
    /// # Errors
    /// [`KeystoreError::AlreadyExists`], I/O and randomness errors.
    pub fn init(&self, source: &MasterKeySource, params: Argon2Params) -> Result<Opened, KeystoreError> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir).map_err(|e| self.io(e))?;
        let _lock = self.lock()?;
        if self.file.exists() {
            return Err(KeystoreError::AlreadyExists(self.file.clone()));
        }
        source.create_key_file_if_missing()?;
        let kdf = source.new_kdf(params)?;
        let master = source.derive(&kdf, &self.file)?;
        let keys = KeySet::first()?;
        let header = Header { kdf, generation: 1 };
        self.write(&header, &master, &keys)?;
        Ok(Opened { header, master, keys })
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
        opened.header.generation = opened.header.generation.wrapping_add(1);
        self.write(&opened.header, &opened.master, &opened.keys)?;
        Ok((out, opened))
    }

    /// Creates the keystore from an imported key set if none exists, or
    /// merges it into the existing one. Returns the number of versions added.
    ///
    /// # Errors
    /// As [`Keystore::update`], plus [`KeystoreError::Conflict`].
    pub fn import(&self, source: &MasterKeySource, params: Argon2Params, keys: KeySet) -> Result<usize, KeystoreError> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir).map_err(|e| self.io(e))?;
        let lock = self.lock()?;
        if !self.file.exists() {
            source.create_key_file_if_missing()?;
            let kdf = source.new_kdf(params)?;
            let master = source.derive(&kdf, &self.file)?;
            let added = keys.versions().count();
            self.write(&Header { kdf, generation: 1 }, &master, &keys)?;
            return Ok(added);
        }
        drop(lock);
        self.update(source, |mine| mine.merge(keys)).map(|(added, _)| added)
    }

    /// Writes atomically: temp file (0600), fsync, rename, fsync directory.
    /// The caller holds the lock.
    fn write(&self, header: &Header, master: &MasterKey, keys: &KeySet) -> Result<(), KeystoreError> {
        self.remove_stale_temps();
        let bytes = format::seal(&self.file, header, master, keys)?;
        let tmp = self.dir.join(format!("{TMP_PREFIX}{}", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &self.file)?;
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

#[cfg(test)]
mod tests;
