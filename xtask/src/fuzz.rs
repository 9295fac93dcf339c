//! `cargo xtask fuzz`: run every cargo-fuzz target in `fuzz/` for a short while.

use std::process::Command;

use anyhow::Context;

use crate::util;

pub(crate) fn run(seconds: u64) -> anyhow::Result<()> {
    let dir = util::root().join("fuzz");
    let out = Command::new("cargo")
        .args(["+nightly", "fuzz", "list"])
        .current_dir(&dir)
        .output()
        .context("cargo fuzz list (install with `cargo install cargo-fuzz`)")?;
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    for target in list.lines().map(str::trim).filter(|t| !t.is_empty()) {
        let max_time = format!("-max_total_time={seconds}");
        util::run(Command::new("cargo").args(["+nightly", "fuzz", "run", target, "--", &max_time]).current_dir(&dir))?;
    }
    Ok(())
}
