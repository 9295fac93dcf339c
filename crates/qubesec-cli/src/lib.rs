#![doc = include_str!("../README.md")]
//!
//! ## As a library
//!
//! The binary is a thin wrapper around [`run`], which parses the arguments,
//! runs one command and reports a [`Status`] that becomes the process exit
//! code. The command shapes, formats and exit codes follow the project's CLI
//! contract (`docs/cli-contract.md`).
//!
//! ```
//! use qubesec_cli::{Status, run};
//!
//! let mut out = Vec::new();
//! let mut err = Vec::new();
//! let status = run(["qubesec", "rand", "--bytes", "16", "--hex"], &mut out, &mut err);
//! assert_eq!(status, Status::Success);
//! assert_eq!(out.len(), 33); // 32 hex digits and a newline
//! ```
//!

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

pub mod cli;
mod commands;
mod error;
mod files;

pub use cli::Cli;
pub use error::Status;

use error::Failure;

/// Parses `args` (including the program name, as [`std::env::args_os`]
/// yields it), runs the command and returns its status.
///
/// Regular output (and `--help`) goes to `out`; warnings and error messages
/// go to `err`, one line each. Secret material (private keys, shared
/// secrets, derived keys) is only ever written to the files the command
/// names, never to `out` or `err`.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> Status
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return report_clap_error(&e, out, err),
    };
    let result = commands::dispatch(cli.command, out, err)
        .and_then(|()| out.flush().map_err(|e| Failure::io("stdout", "cannot write", &e)));
    match result {
        Ok(()) => Status::Success,
        Err(failure) if failure.is_broken_pipe() => Status::Success,
        Err(failure) => {
            // Best effort: if stderr itself is gone there is nobody left to tell.
            let _ = writeln!(err, "{}", failure.message());
            let _ = err.flush();
            failure.status()
        }
    }
}

/// Prints a clap error (or `--help` / `--version` output) and maps it to a status.
fn report_clap_error(e: &clap::Error, out: &mut dyn Write, err: &mut dyn Write) -> Status {
    let rendered = e.render().to_string();
    let (sink, status): (&mut dyn Write, Status) =
        if e.use_stderr() { (err, Status::Usage) } else { (out, Status::Success) };
    let _ = sink.write_all(rendered.as_bytes());
    let _ = sink.flush();
    status
}
