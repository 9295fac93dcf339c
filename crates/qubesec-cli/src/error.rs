//! Outcomes: the exit status of a command and the one-line failure report.

use std::fmt::Display;
use std::process::ExitCode;

/// How a command ended; converts into the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Exit code 0: success; for `sig verify`, the signature is valid.
    Success,
    /// Exit code 1: `sig verify` checked the signature and it is invalid.
    Invalid,
    /// Exit code 2: a usage error or bad input (unreadable file, bad PEM/DER,
    /// wrong key type, unknown algorithm, ...).
    Usage,
}

impl Status {
    /// The numeric exit code: 0, 1 or 2.
    pub const fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Invalid => 1,
            Self::Usage => 2,
        }
    }
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> Self {
        ExitCode::from(status.code())
    }
}

/// A failed command: its status and the single line to print on stderr.
#[derive(Debug)]
pub(crate) struct Failure {
    status: Status,
    message: String,
    broken_pipe: bool,
}

impl Failure {
    /// Bad input or usage (exit 2): `qubesec: SUBJECT: PROBLEM`, where the
    /// subject is the file or option at fault.
    pub(crate) fn input(subject: impl Display, problem: impl Display) -> Self {
        Self::line(Status::Usage, format!("qubesec: {subject}: {problem}"))
    }

    /// A signature that was checked and is invalid (exit 1).
    pub(crate) fn invalid(subject: impl Display, problem: impl Display) -> Self {
        Self::line(Status::Invalid, format!("qubesec: {subject}: {problem}"))
    }

    /// An I/O error on `subject` while doing `action` (exit 2).
    pub(crate) fn io(subject: impl Display, action: &str, e: &std::io::Error) -> Self {
        let mut failure = Self::input(subject, format_args!("{action}: {}", describe_io(e)));
        failure.broken_pipe = e.kind() == std::io::ErrorKind::BrokenPipe;
        failure
    }

    /// A failure with a fully formatted message.
    pub(crate) fn line(status: Status, message: String) -> Self {
        // The contract promises one line per problem: flatten anything a
        // lower layer may have spread over several.
        let message =
            message.split(['\n', '\r']).map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
        Self { status, message, broken_pipe: false }
    }

    /// The exit status.
    pub(crate) fn status(&self) -> Status {
        self.status
    }

    /// The line to print on stderr (without the newline).
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// True when the failure is a closed stdout (e.g. `qubesec rand ... | head -c 4`),
    /// which is not worth a complaint.
    pub(crate) fn is_broken_pipe(&self) -> bool {
        self.broken_pipe
    }
}

/// An I/O error without the `(os error N)` suffix the standard library adds.
fn describe_io(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(Status::Success.code(), 0);
        assert_eq!(Status::Invalid.code(), 1);
        assert_eq!(Status::Usage.code(), 2);
    }

    #[test]
    fn messages_are_one_line_and_name_the_subject() {
        let f = Failure::input("KEY.pem", "bad\nthing\r\n  here");
        assert_eq!(f.message(), "qubesec: KEY.pem: bad thing here");
        assert_eq!(f.status(), Status::Usage);
        let e = std::io::Error::from_raw_os_error(2);
        let f = Failure::io("x.bin", "cannot read", &e);
        assert_eq!(f.message(), "qubesec: x.bin: cannot read: No such file or directory");
        assert!(!f.is_broken_pipe());
    }
}
