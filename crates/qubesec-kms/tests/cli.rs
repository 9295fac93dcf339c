//! The command line: passphrase keystores, and the clear reasons for a wrong
//! passphrase, the wrong kind of master key, damaged or foreign files
//! (`serve` keeps running and Status says why; one-shot commands fail).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{KeySource, Plugin, run, run_ok, stderr, write_secret};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrase_keystore_serves_and_bad_inputs_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let ks = dir.path().join("ks");
    let pass = dir.path().join("pass");
    write_secret(&pass, b"a long passphrase for the keystore\n");
    let fast = ["--argon2-memory-mib", "19", "--argon2-passes", "2"];
    let out = run_ok(
        &[
            &["keystore", "init", "--keystore", ks.to_str().unwrap(), "--passphrase-file", pass.to_str().unwrap()][..],
            &fast[..],
        ]
        .concat(),
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

    // serve never exits over a backend problem: Status names it.
    let log = dir.path().join("bad.log");
    let reports = |source: KeySource, needle: &'static str| {
        let socket = dir.path().join("bad.sock");
        let log = log.clone();
        async move {
            let mut p = Plugin::spawn(&source, &socket, &log, &[]).await;
            let why = common::wait_unhealthy(&mut p, needle, std::time::Duration::from_secs(20)).await;
            assert!(p.child.try_wait().unwrap().is_none(), "serve exited");
            assert!(p.stop());
            why
        }
    };
    let wrong = dir.path().join("wrong");
    write_secret(&wrong, b"not the passphrase\n");
    let pass_source = |p: &std::path::Path| KeySource::Passphrase { keystore: ks.clone(), passphrase: p.to_path_buf() };
    reports(pass_source(&wrong), "wrong master key or passphrase").await;
    let key = dir.path().join("k.key");
    write_secret(&key, &[1u8; 32]);
    let key_source = KeySource::Software { keystore: ks.clone(), master_key: key.clone() };
    reports(key_source, "sealed with a passphrase, but a master key file was given").await;

    let file = ks.join("keystore.qks");
    let good = std::fs::read(&file).unwrap();
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    reports(pass_source(&pass), "truncated").await;
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 4;
    std::fs::write(&file, &flipped).unwrap();
    reports(pass_source(&pass), "corrupt").await;
    std::fs::write(&file, b"{\"not\": \"a keystore\"}").unwrap();
    reports(pass_source(&pass), "is not a qubesec-kms keystore").await;
    std::fs::write(&file, &good).unwrap();
    // A one-shot command fails with the same reason.
    let out = run(
        &["keystore", "list", "--keystore", ks.to_str().unwrap(), "--passphrase-file", wrong.to_str().unwrap()],
        &[],
    );
    assert!(!out.status.success() && stderr(&out).contains("wrong master key or passphrase"), "{}", stderr(&out));

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
