//! One running component: a child process with its own log file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// How long a component gets between SIGTERM and SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// A spawned component. Dropping it stops the process.
#[derive(Debug)]
pub(crate) struct Component {
    name: &'static str,
    child: Child,
    log_path: PathBuf,
    exited: bool,
}

impl Component {
    /// Starts `program args...`, appending stdout and stderr to `log_path`.
    pub(crate) fn spawn(name: &'static str, program: &Path, args: &[String], log_path: &Path) -> Result<Self> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|e| Error::io(format!("could not open {}", log_path.display()), e))?;
        // A header, so a log that spans restarts shows which run said what.
        let header = format!("==== qubesec-testenv: starting {name}: {} {}\n", program.display(), args.join(" "));
        log.write_all(header.as_bytes())
            .map_err(|e| Error::io(format!("could not write {}", log_path.display()), e))?;
        let stderr = log.try_clone().map_err(|e| Error::io("could not duplicate a log file handle", e))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| Error::io(format!("could not start {}", program.display()), e))?;
        Ok(Self { name, child, log_path: log_path.to_path_buf(), exited: false })
    }

    /// The component's name.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where its output goes.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// `Some(status)` once the process has exited (and been reaped).
    pub(crate) fn exit_status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exited = true;
                Some(status.to_string())
            }
            Ok(None) => None,
            Err(e) => Some(format!("unknown: {e}")),
        }
    }

    /// Sends SIGTERM (once) without waiting.
    pub(crate) fn terminate(&mut self) {
        if self.exited || self.exit_status().is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.pid()) {
            // ESRCH only means it is already gone; `wait_or_kill` reaps it.
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }

    /// Waits until `deadline` for the process to exit, then SIGKILLs and reaps it.
    pub(crate) fn wait_or_kill(&mut self, deadline: Instant) {
        while Instant::now() < deadline {
            if self.exited || self.exit_status().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.exit_status().is_none() {
            // SIGKILL, then reap, so the pid is really gone when we return.
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.exited = true;
        }
    }

    /// SIGTERM, wait up to `grace`, SIGKILL.
    pub(crate) fn stop(&mut self, grace: Duration) {
        self.terminate();
        self.wait_or_kill(Instant::now() + grace);
    }

    /// The last `lines` lines of the log, with a heading.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        format!(
            "---- {} (pid {}, {}), last {lines} lines ----\n{}",
            self.name,
            self.pid(),
            self.log_path.display(),
            tail(&self.log_path, lines)
        )
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.stop(STOP_GRACE);
    }
}

/// The last `lines` lines of a file (reading at most its last 256 KiB).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    const MAX: u64 = 256 * 1024;
    let read = || -> std::io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(MAX)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            let mut out = all[start..].join("\n");
            out.push('\n');
            out
        }
        Err(e) => format!("(could not read {}: {e})\n", path.display()),
    }
}

/// Whether a process with this pid exists (a zombie counts as existing).
///
/// Use it to check that every pid from
/// [`ControlPlane::started_pids`](crate::ControlPlane::started_pids) is gone
/// after [`ControlPlane::stop`](crate::ControlPlane::stop).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    match kill(Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        // EPERM: it exists but belongs to someone else.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_returns_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&p, 2), "c\nd\n");
        assert_eq!(tail(&p, 10), "a\nb\nc\nd\n");
        assert!(tail(&dir.path().join("missing"), 3).contains("could not read"));
    }

    #[test]
    fn stop_kills_a_process_that_ignores_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sh.log");
        let mut c = Component::spawn(
            "sh",
            Path::new("/bin/sh"),
            &["-c".into(), "trap '' TERM; echo started; exec sleep 30".into()],
            &log,
        )
        .unwrap();
        let pid = c.pid();
        std::thread::sleep(Duration::from_millis(200));
        assert!(process_alive(pid));
        let t = Instant::now();
        c.stop(Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!process_alive(pid));
        assert!(c.log_tail(5).contains("started"));
    }
}
