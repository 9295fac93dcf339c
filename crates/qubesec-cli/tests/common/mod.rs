//! Shared helpers for the integration tests: run the built `qubesec` binary.

#![allow(dead_code, unreachable_pub)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The result of one `qubesec` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    /// Asserts exit 0 and an empty stderr.
    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(self.code, 0, "expected success, got {self:?}");
        assert!(self.stderr.is_empty(), "unexpected stderr: {}", self.stderr);
        self
    }

    /// Asserts exit `code` with exactly one line on stderr containing every `needle`.
    #[track_caller]
    pub fn fails(self, code: i32, needles: &[&str]) -> Self {
        assert_eq!(self.code, code, "expected exit {code}, got {self:?}");
        assert!(self.stderr.ends_with('\n'), "stderr must end with a newline: {:?}", self.stderr);
        assert_eq!(self.stderr.lines().count(), 1, "expected one stderr line, got {:?}", self.stderr);
        for needle in needles {
            assert!(self.stderr.contains(needle), "stderr {:?} lacks {needle:?}", self.stderr);
        }
        self
    }

    /// Stdout as UTF-8.
    pub fn stdout_text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }
}

/// Runs `qubesec ARGS...` with an empty stdin.
pub fn qubesec<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    qubesec_with_stdin(args, &[])
}

/// Runs `qubesec ARGS...` feeding `stdin`.
pub fn qubesec_with_stdin<I, S>(args: I, stdin: &[u8]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_qubesec"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qubesec");
    child.stdin.take().expect("stdin").write_all(stdin).expect("write stdin");
    let out = child.wait_with_output().expect("wait for qubesec");
    let code = out.status.code().unwrap_or_else(|| panic!("qubesec died from a signal: {:?}", out.status));
    assert!(
        matches!(code, 0..=2),
        "exit code {code} is outside the contract (0, 1, 2); stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Run { code, stdout: out.stdout, stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8") }
}

/// A scratch directory with convenient path building.
pub struct Scratch(tempfile::TempDir);

impl Scratch {
    pub fn new() -> Self {
        Self(tempfile::tempdir().expect("tempdir"))
    }

    /// A path inside the directory, as a string for argument lists.
    pub fn path(&self, name: &str) -> String {
        self.0.path().join(name).to_str().expect("UTF-8 temp path").to_owned()
    }

    pub fn dir(&self) -> &Path {
        self.0.path()
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.0.path().join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    pub fn write(&self, name: &str, data: impl AsRef<[u8]>) -> String {
        std::fs::write(self.0.path().join(name), data).unwrap_or_else(|e| panic!("write {name}: {e}"));
        self.path(name)
    }

    pub fn mode(&self, name: &str) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(self.0.path().join(name)).expect("metadata").permissions().mode() & 0o777
    }

    /// Every entry name in the directory, sorted.
    pub fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.0.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// `kem keygen` or `sig keygen` into `NAME.key.pem` / `NAME.pub.pem`; returns both paths.
pub fn keygen(s: &Scratch, kind: &str, alg: &str, name: &str) -> (String, String) {
    let key = s.path(&format!("{name}.key.pem"));
    let public = s.path(&format!("{name}.pub.pem"));
    qubesec([kind, "keygen", "--alg", alg, "--key", &key, "--pub", &public]).success();
    (key, public)
}

pub fn path_buf(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// `cert issue --ca-cert CA --ca-key KEY --pub PUB --subject DN [EXTRA...] --out OUT`.
pub fn cert_issue(ca: &str, ca_key: &str, public: &str, subject: &str, extra: &[&str], out: &str) -> Run {
    let mut args = vec!["cert", "issue", "--ca-cert", ca, "--ca-key", ca_key, "--pub", public, "--subject", subject];
    args.extend_from_slice(extra);
    args.extend(["--out", out]);
    qubesec(args)
}
