//! Crash safety of the software keystore: `rotate` killed with SIGKILL at
//! random points never leaves an unreadable keystore or loses a version, and
//! concurrent writers never lose an update (advisory lock).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use qubesec_kms::keystore::{Keystore, MasterKeySource};

fn versions(ks: &Keystore, source: &MasterKeySource) -> (BTreeSet<String>, u32) {
    let opened = ks.open(source).unwrap_or_else(|e| panic!("keystore unreadable after a crash: {e}"));
    (opened.keys.versions().map(|k| k.key_id().to_string()).collect(), opened.keys.active_version())
}

#[test]
fn kill_9_of_rotate_never_corrupts_or_loses_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("passphrase");
    std::fs::write(&pass, "crash test passphrase\n").unwrap();
    let ks_dir = dir.path().join("ks");
    common::run_ok(
        &["keystore", "init", "--keystore", ks_dir.to_str().unwrap(), "--passphrase-file", pass.to_str().unwrap()],
        &[],
    );
    let ks = Keystore::at(&ks_dir);
    let source = MasterKeySource::PassphraseFile(pass.clone());

    // How long one rotate takes here, to spread the kills over its whole run.
    let t = Instant::now();
    common::run_ok(
        &["rotate", "--keystore", ks_dir.to_str().unwrap(), "--passphrase-file", pass.to_str().unwrap()],
        &[],
    );
    let full = t.elapsed();
    let (mut known, _) = versions(&ks, &source);
    let (mut killed, mut completed) = (0, 0);
    const TRIALS: usize = 60;
    for trial in 0..TRIALS {
        let r = qubesec_core::rand::bytes(2).unwrap();
        let frac = f64::from(u16::from_be_bytes([r[0], r[1]])) / 65535.0;
        let delay = full.mul_f64(1.3 * frac);
        let mut child = Command::new(common::BIN)
            .args(["rotate", "--keystore", ks_dir.to_str().unwrap(), "--passphrase-file", pass.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let was_running = child.try_wait().unwrap().is_none();
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if was_running && !status.success() {
            killed += 1;
        } else {
            completed += 1;
        }
        let (now, active) = versions(&ks, &source);
        assert!(known.is_subset(&now), "trial {trial}: a committed version was lost");
        assert!(now.len() <= known.len() + 1, "trial {trial}: more than one new version");
        assert!(now.iter().any(|id| id.starts_with(&format!("qubesec-kms/v{active}/"))), "active version present");
        known = now;
    }
    eprintln!("{TRIALS} trials (one rotate takes {full:?}): {killed} killed mid-run, {completed} completed");
    assert!(killed >= 5, "too few kills landed mid-run ({killed}) to mean anything");
    assert!(completed >= 1 || known.len() > 2, "no rotation ever completed");
    // Leftover temp files from killed writers are cleaned by the next write.
    common::run_ok(
        &["rotate", "--keystore", ks_dir.to_str().unwrap(), "--passphrase-file", pass.to_str().unwrap()],
        &[],
    );
    let leftovers: Vec<_> = std::fs::read_dir(&ks_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn concurrent_rotations_never_lose_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let ks_dir = dir.path().join("ks");
    let key = dir.path().join("master.key");
    let args = ["--keystore", ks_dir.to_str().unwrap(), "--master-key-file", key.to_str().unwrap()];
    common::run_ok(&[&["keystore", "init"][..], &args[..]].concat(), &[]);
    let children: Vec<_> = (0..8)
        .map(|_| {
            Command::new(common::BIN).arg("rotate").args(args).stdout(std::process::Stdio::null()).spawn().unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let (ids, active) = versions(&Keystore::at(&ks_dir), &MasterKeySource::KeyFile(key));
    assert_eq!(ids.len(), 9, "1 initial + 8 rotations, none lost: {ids:?}");
    assert_eq!(active, 9);
    let _ = Duration::ZERO;
}
