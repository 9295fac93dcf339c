//! The `qubesec` binary: parses the command line and hands over to
//! [`qubesec_cli::run`], which holds all the logic.

use std::process::ExitCode;

fn main() -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    qubesec_cli::run(std::env::args_os(), &mut stdout.lock(), &mut stderr.lock()).into()
}
