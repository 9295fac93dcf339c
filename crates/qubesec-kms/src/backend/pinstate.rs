//! The PIN-rejection state that survives restarts: after a token refuses a
//! PIN, a salted Argon2id digest of it is written to a state file, so that
//! no process (this one, a restarted one, a CLI run) tries the same PIN on
//! that token again until the PIN file holds something else.
//!
//! The file never holds the PIN or an unkeyed hash of it: only a random
//! 16-byte salt (new for every record) and Argon2id(PIN, salt) with the
//! costs written beside them. One file per token, named after a hash of the
//! module path, token label and serial number.
//!
//! ```text
//! qubesec-kms pin state v1
//! argon2id m=<KiB> t=<passes> p=<lanes>
//! salt <32 hex>
//! rejected <64 hex>
//! ```

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::keystore::Argon2Params;

const HEADER: &str = "qubesec-kms pin state v1";

/// The digest costs. The input is a low-entropy PIN, so the digest is slow
/// (and salted, so one file says nothing about another token's PIN).
pub const DIGEST_PARAMS: Argon2Params = Argon2Params { m_cost: 64 * 1024, t_cost: 3, p_cost: 1 };

/// One token's state file.
#[derive(Debug, Clone)]
pub struct PinState {
    path: PathBuf,
}

/// A rejected PIN as recorded.
struct Record {
    params: Argon2Params,
    salt: [u8; 16],
    digest: [u8; 32],
}

impl PinState {
    /// The state file for a token, in `dir`.
    pub fn for_token(dir: &Path, module: &Path, token_label: &str, serial: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"qubesec-kms pin state\0");
        h.update(module.as_os_str().as_encoded_bytes());
        h.update(b"\0");
        h.update(token_label.as_bytes());
        h.update(b"\0");
        h.update(serial.as_bytes());
        let name = format!("pin-state-{}", hex::encode(&h.finalize()[..8]));
        Self { path: dir.join(name) }
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `pin` is the PIN recorded as rejected. `Ok(None)` when nothing
    /// is recorded.
    ///
    /// # Errors
    /// A message when the state file exists but cannot be read or parsed
    /// (the caller must then not log in: it cannot tell).
    pub fn is_rejected(&self, pin: &[u8]) -> Result<Option<bool>, String> {
        let Some(record) = self.read()? else { return Ok(None) };
        let digest = digest(pin, &record.salt, record.params)?;
        Ok(Some(bool::from(digest.ct_eq(&record.digest))))
    }

    /// Records `pin` as rejected (atomically, mode 0600, directory 0700).
    ///
    /// # Errors
    /// A message naming the file when it cannot be written.
    pub fn record_rejected(&self, pin: &[u8]) -> Result<(), String> {
        let mut salt = [0u8; 16];
        qubesec_core::rand::fill(&mut salt).map_err(|e| format!("randomness: {e}"))?;
        let d = digest(pin, &salt, DIGEST_PARAMS)?;
        let p = DIGEST_PARAMS;
        let text = format!(
            "{HEADER}\nargon2id m={} t={} p={}\nsalt {}\nrejected {}\n",
            p.m_cost,
            p.t_cost,
            p.p_cost,
            hex::encode(salt),
            hex::encode(*d)
        );
        self.write(text.as_bytes())
    }

    /// Forgets a recorded rejection (after a successful login).
    ///
    /// # Errors
    /// A message naming the file when it exists and cannot be removed.
    pub fn clear(&self) -> Result<(), String> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    fn read(&self) -> Result<Option<Record>, String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", self.path.display())),
        };
        parse(&text).map(Some).map_err(|what| format!("{}: {what}", self.path.display()))
    }

    fn write(&self, bytes: &[u8]) -> Result<(), String> {
        let fail = |e: std::io::Error| format!("{}: {e}", self.path.display());
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(fail)?;
        let tmp = self.path.with_extension(format!("tmp.{}", std::process::id()));
        let result = (|| {
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        result.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(e)
        })
    }
}

fn digest(pin: &[u8], salt: &[u8; 16], params: Argon2Params) -> Result<Zeroizing<[u8; 32]>, String> {
    params.check_bounds()?;
    let p = argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32)).map_err(|e| e.to_string())?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = Zeroizing::new([0u8; 32]);
    argon.hash_password_into(pin, salt, out.as_mut_slice()).map_err(|e| format!("Argon2id: {e}"))?;
    Ok(out)
}

fn parse(text: &str) -> Result<Record, String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err("not a qubesec-kms pin state file".into());
    }
    let costs = lines.next().and_then(|l| l.strip_prefix("argon2id ")).ok_or("missing the argon2id line")?;
    let mut m = None;
    let mut t = None;
    let mut p = None;
    for part in costs.split(' ') {
        let (k, v) = part.split_once('=').ok_or("bad argon2id line")?;
        let v: u32 = v.parse().map_err(|_| "bad argon2id cost")?;
        match k {
            "m" => m = Some(v),
            "t" => t = Some(v),
            "p" => p = Some(v),
            _ => return Err("bad argon2id line".into()),
        }
    }
    let (Some(m_cost), Some(t_cost), Some(p_cost)) = (m, t, p) else { return Err("bad argon2id line".into()) };
    let mut salt = [0u8; 16];
    let salt_hex = lines.next().and_then(|l| l.strip_prefix("salt ")).ok_or("missing the salt line")?;
    hex::decode_to_slice(salt_hex, &mut salt).map_err(|_| "bad salt")?;
    let mut digest = [0u8; 32];
    let d_hex = lines.next().and_then(|l| l.strip_prefix("rejected ")).ok_or("missing the rejected line")?;
    hex::decode_to_slice(d_hex, &mut digest).map_err(|_| "bad digest")?;
    Ok(Record { params: Argon2Params { m_cost, t_cost, p_cost }, salt, digest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_recognises_a_rejected_pin_without_storing_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = PinState::for_token(&dir.path().join("state"), Path::new("/m.so"), "tok", "0001");
        assert_eq!(s.is_rejected(b"123456").unwrap(), None);
        s.record_rejected(b"123456").unwrap();
        assert_eq!(s.is_rejected(b"123456").unwrap(), Some(true));
        assert_eq!(s.is_rejected(b"654321").unwrap(), Some(false));
        let text = std::fs::read_to_string(s.path()).unwrap();
        assert!(!text.contains("123456"));
        assert!(!text.contains(&hex::encode(Sha256::digest(b"123456"))), "no unkeyed hash");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(s.path()).unwrap().permissions().mode() & 0o777, 0o600);
        // A fresh salt per record: the same PIN recorded twice gives different files.
        s.record_rejected(b"123456").unwrap();
        assert_ne!(std::fs::read_to_string(s.path()).unwrap(), text);
        s.clear().unwrap();
        assert_eq!(s.is_rejected(b"123456").unwrap(), None);
        // Another token has another file.
        let other = PinState::for_token(&dir.path().join("state"), Path::new("/m.so"), "tok", "0002");
        assert_ne!(other.path(), s.path());
        std::fs::write(s.path(), "garbage").unwrap();
        assert!(s.is_rejected(b"1").is_err());
    }
}
