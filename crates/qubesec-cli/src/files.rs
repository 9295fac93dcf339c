//! Reading inputs and writing outputs, with errors that name the file.
//!
//! Outputs are written atomically: to a new temporary file in the target's
//! directory, flushed to disk, then renamed over the target. An existing file
//! is replaced (scripts rely on that), never left half-written. Files holding
//! secrets are created with mode 0600 from the start, so there is no window
//! in which another user could read them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::Failure;

/// Largest PEM file we read (keys and certificates are a few KiB).
pub(crate) const PEM_LIMIT: u64 = 1 << 20;

/// Whether a file holds secret material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sensitivity {
    /// Public data (public keys, ciphertexts, signatures): mode 0644 before umask.
    Public,
    /// Secret data (private keys, shared secrets, derived keys): mode 0600.
    Secret,
}

impl Sensitivity {
    fn mode(self) -> u32 {
        match self {
            Self::Public => 0o644,
            Self::Secret => 0o600,
        }
    }
}

/// Reads a whole file (or stdin for `-`) into a buffer that is zeroized on
/// drop, refusing files larger than `limit` bytes.
pub(crate) fn read(path: &Path, limit: Option<u64>) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let shown = path.display();
    let mut buf = Zeroizing::new(Vec::new());
    let result = if path.as_os_str() == "-" {
        read_limited(io::stdin().lock(), limit, &mut buf)
    } else {
        let file = File::open(path).map_err(|e| Failure::io(&shown, "cannot open", &e))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(Failure::input(&shown, "is a directory, not a file"));
        }
        read_limited(file, limit, &mut buf)
    };
    match result {
        Ok(true) => Ok(buf),
        Ok(false) => Err(Failure::input(
            &shown,
            format_args!("file is larger than {} bytes; this cannot be the expected input", limit.unwrap_or(0)),
        )),
        Err(e) => Err(Failure::io(&shown, "cannot read", &e)),
    }
}

/// Reads everything (or up to `limit` bytes); `Ok(false)` if there was more.
///
/// Grows `buf` by hand: every buffer it outgrows is a `Zeroizing` that is
/// wiped when replaced, so no freed allocation keeps a copy of a key file.
fn read_limited(mut reader: impl Read, limit: Option<u64>, buf: &mut Zeroizing<Vec<u8>>) -> io::Result<bool> {
    let mut chunk = Zeroizing::new([0u8; 8192]);
    loop {
        let n = match reader.read(&mut chunk[..]) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.len() + n > buf.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity((buf.len() + n).max(2 * buf.capacity())));
            bigger.extend_from_slice(buf);
            *buf = bigger;
        }
        buf.extend_from_slice(&chunk[..n]);
        if limit.is_some_and(|l| buf.len() as u64 > l) {
            return Ok(false);
        }
    }
}

/// Writes `data` to `path` atomically (temporary file + rename), creating the
/// file with the mode `sensitivity` calls for.
pub(crate) fn write(path: &Path, data: &[u8], sensitivity: Sensitivity) -> Result<(), Failure> {
    let shown = path.display();
    let Some(name) = path.file_name() else {
        return Err(Failure::input(&shown, "is not a file name"));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if path.is_dir() {
        return Err(Failure::input(&shown, "is a directory, not a file"));
    }

    let (tmp_path, file) = create_temporary(&dir, name, sensitivity)
        .map_err(|e| Failure::io(&shown, "cannot create a temporary file next to it", &e))?;
    let written = write_and_sync(file, data).and_then(|()| fs::rename(&tmp_path, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp_path);
        return Err(Failure::io(&shown, "cannot write", &e));
    }
    // Make the rename itself durable; failing that is not worth failing the command.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Creates `DIR/.NAME.RANDOM.tmp` exclusively with the right mode.
fn create_temporary(dir: &Path, name: &std::ffi::OsStr, sensitivity: Sensitivity) -> io::Result<(PathBuf, File)> {
    let mut last_error = None;
    for _ in 0..8 {
        let suffix = qubesec_core::rand::bytes(8).map_err(io::Error::other)?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", hex::encode(&suffix[..])));
        let tmp_path = dir.join(tmp_name);
        match OpenOptions::new().write(true).create_new(true).mode(sensitivity.mode()).open(&tmp_path) {
            Ok(file) => return Ok((tmp_path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free temporary name")))
}

fn write_and_sync(mut file: File, data: &[u8]) -> io::Result<()> {
    file.write_all(data)?;
    file.sync_all()
}

/// True if `a` and `b` name the same file (lexically, or the same existing file).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, b"new", Sensitivity::Secret).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // No temporary files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn read_limit_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        fs::write(&path, [0u8; 10]).unwrap();
        assert_eq!(read(&path, Some(10)).unwrap().len(), 10);
        let err = read(&path, Some(9)).unwrap_err();
        assert!(err.message().contains("larger than 9 bytes"), "{}", err.message());
        let err = read(&dir.path().join("nope"), None).unwrap_err();
        assert!(err.message().ends_with("nope: cannot open: No such file or directory"), "{}", err.message());
    }

    #[test]
    fn write_into_missing_directory_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(&dir.path().join("no/such/dir/f"), b"x", Sensitivity::Public).unwrap_err();
        assert!(err.message().contains("cannot create"), "{}", err.message());
    }
}
