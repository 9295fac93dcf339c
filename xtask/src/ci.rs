//! `cargo xtask ci`: the checks a change must pass before it lands.

use std::process::Command;

use crate::util;

/// Runs fmt, clippy, tidy, the whole test suite and the doc build, in that order.
pub(crate) fn run() -> anyhow::Result<()> {
    util::cargo(&["fmt", "--all", "--check"])?;
    util::cargo(&["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"])?;
    crate::tidy::run()?;
    util::cargo(&["test", "--workspace", "--locked", "--no-fail-fast"])?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    util::run(
        Command::new(cargo)
            .args(["doc", "--workspace", "--no-deps", "--locked"])
            .env("RUSTDOCFLAGS", "-D warnings")
            .current_dir(util::root()),
    )?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}
