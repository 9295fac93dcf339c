//! The master key that seals a keystore: 32 raw bytes from a key file, or
//! Argon2id over a passphrase read from a file.

use std::fmt;
use std::io::Read;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
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
    /// 64 MiB, 3 passes, 1 lane (RFC 9106's second recommended option, with one lane).
    fn default() -> Self {
        Self { m_cost: 64 * 1024, t_cost: 3, p_cost: 1 }
    }
}

/// The most memory a keystore header may ask Argon2id for (2 GiB, in KiB).
pub const MAX_M_COST_KIB: u32 = 2 * 1024 * 1024;
/// The most passes a keystore header may ask for.
pub const MAX_T_COST: u32 = 64;
/// The most lanes a keystore header may ask for.
pub const MAX_P_COST: u32 = 16;
/// The least memory `keystore init` accepts (OWASP's floor for Argon2id), in MiB.
pub const MIN_INIT_MEMORY_MIB: u32 = 19;
/// The fewest passes `keystore init` accepts.
pub const MIN_INIT_PASSES: u32 = 2;

impl Argon2Params {
    /// Parameters from the command line's units (MiB, passes, lanes), checked
    /// against the bounds `keystore init` accepts.
    ///
    /// # Errors
    /// A message naming the option and its bounds.
    pub fn for_init(memory_mib: u32, passes: u32, lanes: u32) -> Result<Self, String> {
        let max_mib = MAX_M_COST_KIB / 1024;
        if !(MIN_INIT_MEMORY_MIB..=max_mib).contains(&memory_mib) {
            return Err(format!("--argon2-memory-mib {memory_mib}: must be {MIN_INIT_MEMORY_MIB}..={max_mib}"));
        }
        if !(MIN_INIT_PASSES..=MAX_T_COST).contains(&passes) {
            return Err(format!("--argon2-passes {passes}: must be {MIN_INIT_PASSES}..={MAX_T_COST}"));
        }
        if !(1..=MAX_P_COST).contains(&lanes) {
            return Err(format!("--argon2-lanes {lanes}: must be 1..={MAX_P_COST}"));
        }
        Ok(Self { m_cost: memory_mib * 1024, t_cost: passes, p_cost: lanes })
    }

    /// Checks parameters read from a keystore header before they are used:
    /// a file cannot make the plugin allocate more than [`MAX_M_COST_KIB`].
    ///
    /// # Errors
    /// A message naming the parameter and its bounds.
    pub fn check_bounds(&self) -> Result<(), String> {
        if !(1..=MAX_P_COST).contains(&self.p_cost) {
            return Err(format!("Argon2id lanes {} outside 1..={MAX_P_COST}", self.p_cost));
        }
        if !(1..=MAX_T_COST).contains(&self.t_cost) {
            return Err(format!("Argon2id passes {} outside 1..={MAX_T_COST}", self.t_cost));
        }
        let min_m = 8 * self.p_cost;
        if !(min_m..=MAX_M_COST_KIB).contains(&self.m_cost) {
            return Err(format!(
                "Argon2id memory {} KiB outside {min_m}..={MAX_M_COST_KIB} KiB (refusing to allocate it)",
                self.m_cost
            ));
        }
        Ok(())
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
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| KeystoreError::io(parent, e))?;
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
                params
                    .check_bounds()
                    .map_err(|what| KeystoreError::Argon2Bounds { path: keystore.to_path_buf(), what })?;
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
    let bytes = read_secret_file(path)?;
    Ok(SecretSlice::from(bytes.to_vec()))
}

/// The most bytes a secret file (master key, passphrase, PIN) may hold.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Reads a secret file the way ssh reads a private key: refused unless it is
/// a regular file owned by the user this process runs as and neither group
/// nor others have any permission on it. The checks run on the opened file
/// (no race between check and read); the error names the file and the fix.
///
/// # Errors
/// [`KeystoreError::UnsafeFile`], I/O errors.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    read_secret_file_and_metadata(path).map(|(raw, _)| raw)
}

/// [`read_secret_file`], plus the metadata of the very file that was read
/// (taken from the open descriptor, so it describes these bytes).
fn read_secret_file_and_metadata(path: &Path) -> Result<(Zeroizing<Vec<u8>>, std::fs::Metadata), KeystoreError> {
    let unsafe_file = |what: String| KeystoreError::UnsafeFile { path: path.to_path_buf(), what };
    let mut f = std::fs::File::open(path).map_err(|e| KeystoreError::io(path, e))?;
    let meta = f.metadata().map_err(|e| KeystoreError::io(path, e))?;
    if !meta.is_file() {
        return Err(unsafe_file("not a regular file".into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(unsafe_file(format!(
            "owned by uid {}, but qubesec-kms runs as uid {me}; run `chown {me} {}` (or run qubesec-kms as uid {})",
            meta.uid(),
            path.display(),
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(unsafe_file(format!(
            "mode {mode:04o} gives group or others access to a secret; run `chmod 600 {}`",
            path.display()
        )));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(unsafe_file(format!("{} bytes is too large for a secret file", meta.len())));
    }
    let mut raw = Zeroizing::new(Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0)));
    Read::by_ref(&mut f).take(MAX_SECRET_FILE).read_to_end(&mut raw).map_err(|e| KeystoreError::io(path, e))?;
    Ok((raw, meta))
}

/// Reads a passphrase (or PIN) file (checked as [`read_secret_file`]): one
/// trailing `\n` or `\r\n` is dropped; an empty result is refused.
///
/// # Errors
/// I/O errors, [`KeystoreError::UnsafeFile`], [`KeystoreError::MasterKeySource`] for an empty file.
pub fn read_passphrase(path: &Path) -> Result<SecretSlice<u8>, KeystoreError> {
    read_passphrase_and_metadata(path).map(|(pass, _)| pass)
}

/// [`read_passphrase`], plus the metadata of the file it came from (for the
/// PKCS#11 PIN guard, which recognises a rewritten PIN file by it).
///
/// # Errors
/// As [`read_passphrase`].
pub fn read_passphrase_and_metadata(path: &Path) -> Result<(SecretSlice<u8>, std::fs::Metadata), KeystoreError> {
    let (raw, meta) = read_secret_file_and_metadata(path)?;
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
    Ok((SecretSlice::from(raw[..end].to_vec()), meta))
}

/// A 256-bit master key (wiped on drop, redacted in `Debug`).
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    #[cfg(test)]
    pub(crate) fn from_bytes(key: Zeroizing<[u8; 32]>) -> Self {
        Self(key)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}
