//! The master key that seals a keystore: 32 raw bytes from a key file, or
//! Argon2id over a passphrase read from a file.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretSlice};
use zeroize::Zeroizing;

use crate::error::KeystoreError;

/// Argon2id cost parameters, stored in the keystore header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for Argon2Params {
    /// 19 MiB, 2 passes, 1 lane (the OWASP recommendation for Argon2id).
    fn default() -> Self {
        Self { m_cost: 19 * 1024, t_cost: 2, p_cost: 1 }
    }
}

/// How a keystore's master key is derived; stored in its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kdf {
    /// The master key is the 32 bytes of a key file.
    KeyFile,
    /// Argon2id over a passphrase, with these parameters and salt.
    Argon2id {
        /// Costs.
        params: Argon2Params,
        /// Random salt.
        salt: [u8; 16],
    },
}

impl Kdf {
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Kdf::KeyFile => "master key file",
            Kdf::Argon2id { .. } => "passphrase",
        }
    }
}

/// Where the master key comes from (a command-line choice).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MasterKeySource {
    /// A file holding exactly 32 random bytes.
    KeyFile(PathBuf),
    /// A file holding a passphrase (one trailing newline is ignored).
    PassphraseFile(PathBuf),
}

impl MasterKeySource {
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            MasterKeySource::KeyFile(_) => "master key file",
            MasterKeySource::PassphraseFile(_) => "passphrase",
        }
    }

    /// Creates the key file with 32 random bytes (mode 0600) if this is a key
    /// file source and the file does not exist. Returns whether it created one.
    ///
    /// # Errors
    /// I/O errors, or a randomness failure.
    pub fn create_key_file_if_missing(&self) -> Result<bool, KeystoreError> {
        let MasterKeySource::KeyFile(path) = self else { return Ok(false) };
        if path.exists() {
            return Ok(false);
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| KeystoreError::io(parent, e))?;
        }
        let mut key = Zeroizing::new([0u8; 32]);
        qubesec_core::rand::fill(key.as_mut_slice())
            .map_err(|e| KeystoreError::MasterKeySource { path: path.clone(), what: format!("randomness: {e}") })?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| KeystoreError::io(path, e))?;
        f.write_all(key.as_slice()).and_then(|()| f.sync_all()).map_err(|e| KeystoreError::io(path, e))?;
        Ok(true)
    }

    /// Derives the master key for a keystore sealed with `kdf`.
    ///
    /// # Errors
    /// [`KeystoreError::MasterKeyKind`] if the source does not match `kdf`,
    /// [`KeystoreError::MasterKeySource`] if the file is unusable.
    pub fn derive(&self, kdf: &Kdf, keystore: &Path) -> Result<MasterKey, KeystoreError> {
        match (self, kdf) {
            (MasterKeySource::KeyFile(path), Kdf::KeyFile) => {
                let bytes = read_secret(path)?;
                let key: [u8; 32] = bytes.expose_secret().try_into().map_err(|_| KeystoreError::MasterKeySource {
                    path: path.clone(),
                    what: format!("a master key file holds exactly 32 bytes, this one {}", bytes.expose_secret().len()),
                })?;
                Ok(MasterKey(Zeroizing::new(key)))
            }
            (MasterKeySource::PassphraseFile(path), Kdf::Argon2id { params, salt }) => {
                let pass = read_passphrase(path)?;
                let p = argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32)).map_err(|e| {
                    KeystoreError::Corrupt { path: keystore.to_path_buf(), what: format!("Argon2id parameters: {e}") }
                })?;
                let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
                let mut key = Zeroizing::new([0u8; 32]);
                argon.hash_password_into(pass.expose_secret(), salt, key.as_mut_slice()).map_err(|e| {
                    KeystoreError::MasterKeySource { path: path.clone(), what: format!("Argon2id: {e}") }
                })?;
                Ok(MasterKey(key))
            }
            _ => Err(KeystoreError::MasterKeyKind {
                path: keystore.to_path_buf(),
                sealed_with: kdf.describe(),
                given: self.describe(),
            }),
        }
    }

    /// The KDF a new keystore sealed from this source records.
    ///
    /// # Errors
    /// A randomness failure.
    pub(crate) fn new_kdf(&self, params: Argon2Params) -> Result<Kdf, KeystoreError> {
        match self {
            MasterKeySource::KeyFile(_) => Ok(Kdf::KeyFile),
            MasterKeySource::PassphraseFile(path) => {
                let mut salt = [0u8; 16];
                qubesec_core::rand::fill(&mut salt).map_err(|e| KeystoreError::MasterKeySource {
                    path: path.clone(),
                    what: format!("randomness: {e}"),
                })?;
                Ok(Kdf::Argon2id { params, salt })
            }
        }
    }
}

fn read_secret(path: &Path) -> Result<SecretSlice<u8>, KeystoreError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| KeystoreError::io(path, e))?);
    Ok(SecretSlice::from(bytes.to_vec()))
}

/// Reads a passphrase (or PIN) file: one trailing `\n` or `\r\n` is dropped;
/// an empty result is refused.
///
/// # Errors
/// I/O errors, [`KeystoreError::MasterKeySource`] for an empty file.
pub fn read_passphrase(path: &Path) -> Result<SecretSlice<u8>, KeystoreError> {
    let raw = Zeroizing::new(std::fs::read(path).map_err(|e| KeystoreError::io(path, e))?);
    let mut end = raw.len();
    if raw[..end].ends_with(b"\n") {
        end -= 1;
        if raw[..end].ends_with(b"\r") {
            end -= 1;
        }
    }
    if end == 0 {
        return Err(KeystoreError::MasterKeySource { path: path.to_path_buf(), what: "the file is empty".into() });
    }
    Ok(SecretSlice::from(raw[..end].to_vec()))
}

/// A 256-bit master key (wiped on drop, redacted in `Debug`).
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}
