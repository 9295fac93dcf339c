//! The command line: passphrase keystores, and the clear one-line errors for
//! a wrong passphrase, the wrong kind of master key, damaged or foreign files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Plugin, run, run_ok, stderr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrase_keystore_serves_and_bad_inputs_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let ks = dir.path().join("ks");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "a long passphrase for the keystore\n").unwrap();
    let out = run_ok(
        &["keystore", "init", "--keystore", ks.to_str().unwrap(), "--passphrase-file", pass.to_str().unwrap()],
        &[],
    );
    assert!(out.contains("qubesec-kms/v1/"), "{out}");

    // serve with the passphrase: healthy; `status` prints the Status reply.
    let socket = dir.path().join("kms.sock");
    let serve_args = |extra: &[&str]| {
        let mut a = vec!["serve", "--socket", socket.to_str().unwrap(), "--keystore", ks.to_str().unwrap()];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let plugin = {
        let mut child = std::process::Command::new(common::BIN)
            .args(serve_args(&["--passphrase-file", pass.to_str().unwrap()]))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !socket.exists() {
            assert!(child.try_wait().unwrap().is_none(), "serve exited");
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Plugin { child, socket: socket.clone(), log: dir.path().join("none") }
    };
    let mut plugin = plugin;
    plugin.wait_healthy(std::time::Duration::from_secs(10)).await;
    let status = run_ok(&["status", "--socket", socket.to_str().unwrap()], &[]);
    assert!(
        status.contains("version: v2") && status.contains("healthz: ok") && status.contains("key_id: qubesec-kms/v1/"),
        "{status}"
    );
    assert!(plugin.stop());
    let out = run(&["status", "--socket", socket.to_str().unwrap()], &[]);
    assert!(!out.status.success(), "status against a stopped plugin fails");

    let fails = |extra: &[&str], needle: &str| {
        let args = serve_args(extra);
        let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
        assert!(!out.status.success(), "serve {extra:?} should fail");
        assert!(stderr(&out).contains(needle), "serve {extra:?}: expected {needle:?} in:\n{}", stderr(&out));
    };
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase\n").unwrap();
    fails(&["--passphrase-file", wrong.to_str().unwrap()], "wrong master key or passphrase");
    let key = dir.path().join("k.key");
    std::fs::write(&key, [1u8; 32]).unwrap();
    fails(&["--master-key-file", key.to_str().unwrap()], "sealed with a passphrase, but a master key file was given");

    let file = ks.join("keystore.qks");
    let good = std::fs::read(&file).unwrap();
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    fails(&["--passphrase-file", pass.to_str().unwrap()], "truncated");
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 4;
    std::fs::write(&file, &flipped).unwrap();
    fails(&["--passphrase-file", pass.to_str().unwrap()], "corrupt");
    std::fs::write(&file, b"{\"not\": \"a keystore\"}").unwrap();
    fails(&["--passphrase-file", pass.to_str().unwrap()], "is not a qubesec-kms keystore");
    std::fs::write(&file, &good).unwrap();

    // init refuses to overwrite; retire of an unknown version is an error.
    let out = run(
        &["keystore", "init", "--keystore", ks.to_str().unwrap(), "--passphrase-file", pass.to_str().unwrap()],
        &[],
    );
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    let out = run(
        &["retire", "--version", "7", "--keystore", ks.to_str().unwrap(), "--passphrase-file", pass.to_str().unwrap()],
        &[],
    );
    assert!(stderr(&out).contains("no key version 7"), "{}", stderr(&out));
}
