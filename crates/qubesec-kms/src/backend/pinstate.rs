//! The PIN-rejection state that survives restarts: after a token refuses a
//! PIN, the *identity of the PIN file* that held it is written to a state
//! file, so that no process (this one, a restarted one, a CLI run) tries
//! that file's PIN on that token again until the file is rewritten.
//!
//! The state file says nothing about the PIN: not the PIN, not a hash of it
//! (a PIN is low-entropy, so any digest of it, salted or slow, can be
//! brute-forced offline), not even its length. It records where the PIN came
//! from: the file's device and inode and its modification and status-change
//! times, read from the descriptor the PIN was read through. Writing the PIN
//! file in any way (editing it, replacing it, a Secret volume's atomic swap)
//! changes at least one of them, and that is what "the operator fixed the
//! PIN" looks like. Rewriting the same wrong PIN therefore costs one more
//! attempt, once per deliberate write, never once per restart.
//!
//! ```text
//! qubesec-kms pin state v1
//! rejected-pin-file dev=<u64> ino=<u64> mtime=<sec>.<nsec> ctime=<sec>.<nsec>
//! ```

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const HEADER: &str = "qubesec-kms pin state v1";
const RECORD: &str = "rejected-pin-file ";

/// Which PIN file content a login used: the file's device, inode and times.
/// Equal identities mean the file has not been written since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinFileIdentity {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl PinFileIdentity {
    /// The identity of the file `meta` describes (take it from the open
    /// descriptor the PIN was read through).
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn to_line(self) -> String {
        format!(
            "{RECORD}dev={} ino={} mtime={}.{:09} ctime={}.{:09}",
            self.dev, self.ino, self.mtime.0, self.mtime.1, self.ctime.0, self.ctime.1
        )
    }

    fn parse(line: &str) -> Result<Self, String> {
        let rest = line.strip_prefix(RECORD).ok_or("missing the rejected-pin-file line")?;
        let (mut dev, mut ino, mut mtime, mut ctime) = (None, None, None, None);
        for part in rest.split(' ') {
            let (k, v) = part.split_once('=').ok_or("bad rejected-pin-file line")?;
            match k {
                "dev" => dev = Some(v.parse::<u64>().map_err(|_| "bad dev")?),
                "ino" => ino = Some(v.parse::<u64>().map_err(|_| "bad ino")?),
                "mtime" => mtime = Some(parse_time(v)?),
                "ctime" => ctime = Some(parse_time(v)?),
                _ => return Err(format!("unknown field {k:?}")),
            }
        }
        match (dev, ino, mtime, ctime) {
            (Some(dev), Some(ino), Some(mtime), Some(ctime)) => Ok(Self { dev, ino, mtime, ctime }),
            _ => Err("incomplete rejected-pin-file line".into()),
        }
    }
}

fn parse_time(v: &str) -> Result<(i64, i64), String> {
    let (s, ns) = v.split_once('.').ok_or("bad time")?;
    Ok((s.parse().map_err(|_| "bad seconds")?, ns.parse().map_err(|_| "bad nanoseconds")?))
}

/// One token's state file.
#[derive(Debug, Clone)]
pub struct PinState {
    path: PathBuf,
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

    /// Whether the PIN file as it is now (`pin_file`) is the one whose PIN the
    /// token refused. `Ok(None)` when nothing is recorded.
    ///
    /// # Errors
    /// A message when the state file exists but cannot be read or parsed
    /// (the caller must then not log in: it cannot tell).
    pub fn is_rejected(&self, pin_file: PinFileIdentity) -> Result<Option<bool>, String> {
        let Some(recorded) = self.read()? else { return Ok(None) };
        Ok(Some(recorded == pin_file))
    }

    /// Records that the token refused the PIN read from `pin_file`
    /// (atomically, mode 0600, directory 0700).
    ///
    /// # Errors
    /// A message naming the file when it cannot be written.
    pub fn record_rejected(&self, pin_file: PinFileIdentity) -> Result<(), String> {
        self.write(format!("{HEADER}\n{}\n", pin_file.to_line()).as_bytes())
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

    fn read(&self) -> Result<Option<PinFileIdentity>, String> {
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

fn parse(text: &str) -> Result<PinFileIdentity, String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err("not a qubesec-kms pin state file".into());
    }
    PinFileIdentity::parse(lines.next().ok_or("missing the rejected-pin-file line")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(path: &Path) -> PinFileIdentity {
        PinFileIdentity::of(&std::fs::File::open(path).unwrap().metadata().unwrap())
    }

    #[test]
    fn records_the_pin_file_not_the_pin_and_notices_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, "123456\n").unwrap();
        let s = PinState::for_token(&dir.path().join("state"), Path::new("/m.so"), "tok", "0001");
        assert_eq!(s.is_rejected(identity(&pin_file)).unwrap(), None);
        s.record_rejected(identity(&pin_file)).unwrap();
        assert_eq!(s.is_rejected(identity(&pin_file)).unwrap(), Some(true), "same file, same PIN: refused");

        let text = std::fs::read_to_string(s.path()).unwrap();
        assert!(!text.contains("123456"));
        assert!(!text.contains(&hex::encode(Sha256::digest(b"123456"))), "no hash of the PIN");
        assert!(!text.contains(&hex::encode(Sha256::digest(b"123456\n"))), "no hash of the PIN file");
        assert!(!text.contains("size") && !text.contains(" 7 "), "not even the PIN's length");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(s.path()).unwrap().permissions().mode() & 0o777, 0o600);

        // The operator writes the file (here, in place, with a new PIN): a new identity.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&pin_file, "654321\n").unwrap();
        assert_eq!(s.is_rejected(identity(&pin_file)).unwrap(), Some(false));
        // Replaced by rename (how a Secret volume updates): a new identity too.
        let fresh = dir.path().join("pin.new");
        std::fs::write(&fresh, "123456\n").unwrap();
        std::fs::rename(&fresh, &pin_file).unwrap();
        assert_eq!(s.is_rejected(identity(&pin_file)).unwrap(), Some(false));

        s.clear().unwrap();
        assert_eq!(s.is_rejected(identity(&pin_file)).unwrap(), None);
        // Another token has another file.
        let other = PinState::for_token(&dir.path().join("state"), Path::new("/m.so"), "tok", "0002");
        assert_ne!(other.path(), s.path());
        std::fs::write(s.path(), "garbage").unwrap();
        assert!(s.is_rejected(identity(&pin_file)).is_err());
        std::fs::write(s.path(), format!("{HEADER}\n{RECORD}dev=1 ino=2\n")).unwrap();
        assert!(s.is_rejected(identity(&pin_file)).is_err(), "an incomplete record is an error, not a match");
    }
}
