//! Fault tests over the socket of the built plugin: malformed requests get
//! precise gRPC codes and never crash it; a lost SoftHSM2 token makes Status
//! unhealthy and Encrypt `Unavailable`, and the plugin recovers without a
//! restart; a wrong PIN costs one login attempt across restarts; `serve`
//! never exits over its backend; the socket is born 0600; clients that send
//! a socket path as `:authority` (grpcio, kube-apiserver < 1.32) are answered.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{KeySource, Plugin, SoftHsm};
use qubesec_kms::pb;
use tonic::Code;

async fn encrypt(plugin: &Plugin, plaintext: &[u8]) -> Result<pb::EncryptResponse, tonic::Status> {
    let mut c = plugin.client().await;
    c.encrypt(pb::EncryptRequest { plaintext: plaintext.to_vec(), uid: "test".into() })
        .await
        .map(tonic::Response::into_inner)
}

async fn decrypt(plugin: &Plugin, ciphertext: &[u8], key_id: &str) -> Result<Vec<u8>, tonic::Status> {
    let mut c = plugin.client().await;
    c.decrypt(pb::DecryptRequest {
        ciphertext: ciphertext.to_vec(),
        uid: "test".into(),
        key_id: key_id.into(),
        annotations: Default::default(),
    })
    .await
    .map(|r| r.into_inner().plaintext)
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    r.expect_err("the request must fail").code()
}

async fn malformed_requests_get_precise_codes(source: KeySource, dir: &std::path::Path) {
    let mut plugin = Plugin::start(&source, &dir.join("kms.sock"), &dir.join("plugin.log"), &[]).await;
    let good = encrypt(&plugin, b"a dek seed").await.unwrap();
    assert!(good.ciphertext.len() <= 1024);
    assert_eq!(decrypt(&plugin, &good.ciphertext, &good.key_id).await.unwrap(), b"a dek seed");

    // Encrypt: empty and oversized plaintexts.
    assert_eq!(code(encrypt(&plugin, b"").await), Code::InvalidArgument);
    assert_eq!(code(encrypt(&plugin, &[1; 996]).await), Code::InvalidArgument);
    assert_eq!(encrypt(&plugin, &[1; 995]).await.unwrap().ciphertext.len(), 1024);

    // Decrypt: oversized, empty, truncated, unknown layout, tampered.
    assert_eq!(code(decrypt(&plugin, &[1; 1025], &good.key_id).await), Code::InvalidArgument);
    assert_eq!(code(decrypt(&plugin, &[], &good.key_id).await), Code::InvalidArgument);
    assert_eq!(code(decrypt(&plugin, &good.ciphertext[..20], &good.key_id).await), Code::InvalidArgument);
    let mut layout = good.ciphertext.clone();
    layout[0] = 9;
    assert_eq!(code(decrypt(&plugin, &layout, &good.key_id).await), Code::InvalidArgument);
    for i in [1, 13, good.ciphertext.len() - 1] {
        let mut tampered = good.ciphertext.clone();
        tampered[i] ^= 0x40;
        assert_eq!(code(decrypt(&plugin, &tampered, &good.key_id).await), Code::InvalidArgument, "byte {i}");
    }

    // Key ids: empty or too long is malformed; well-formed but unknown is NotFound.
    assert_eq!(code(decrypt(&plugin, &good.ciphertext, "").await), Code::InvalidArgument);
    assert_eq!(code(decrypt(&plugin, &good.ciphertext, &"k".repeat(1025)).await), Code::InvalidArgument);
    assert_eq!(code(decrypt(&plugin, &good.ciphertext, "qubesec-kms/v1/0000000000000000").await), Code::NotFound);
    assert_eq!(code(decrypt(&plugin, &good.ciphertext, "qubesec-kms/v77/0123456789abcdef").await), Code::NotFound);
    assert_eq!(code(decrypt(&plugin, &good.ciphertext, "aws-kms/some-key").await), Code::NotFound);

    // Still alive and healthy; the right ciphertext still decrypts.
    assert!(plugin.child.try_wait().unwrap().is_none(), "plugin died");
    assert_eq!(plugin.wait_healthy(Duration::from_secs(5)).await.healthz, "ok");
    assert_eq!(decrypt(&plugin, &good.ciphertext, &good.key_id).await.unwrap(), b"a dek seed");
    assert!(plugin.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_software() {
    let dir = tempfile::tempdir().unwrap();
    malformed_requests_get_precise_codes(KeySource::software(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_softhsm2() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new(dir.path(), "qubesec-malformed");
    malformed_requests_get_precise_codes(KeySource::SoftHsm(hsm), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_socket_is_never_replaced_and_a_stale_one_is() {
    let dir = tempfile::tempdir().unwrap();
    let source = KeySource::software(dir.path());
    let socket = dir.path().join("s/kms.sock");
    let plugin = Plugin::start(&source, &socket, &dir.path().join("a.log"), &[]).await;
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let mut args = vec!["serve".to_owned(), "--socket".into(), socket.display().to_string()];
    args.extend(source.args());
    let out = common::run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("another process is serving"), "{}", common::stderr(&out));
    assert!(plugin.status().await.is_some(), "the live plugin still answers");

    // SIGKILL leaves a stale socket file behind; the next start removes it.
    let mut plugin = plugin;
    plugin.child.kill().unwrap();
    plugin.child.wait().unwrap();
    assert!(socket.exists());
    let again = Plugin::start(&source, &socket, &dir.path().join("b.log"), &[]).await;
    assert!(again.log_text().contains("removing a stale socket"));

    // A regular file in the way is refused, not deleted.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let mut args = vec!["serve".to_owned(), "--socket".into(), file.display().to_string()];
    args.extend(source.args());
    let out = common::run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_across_ten_restarts_costs_one_login_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new(dir.path(), "qubesec-pin");
    let wrong = dir.path().join("wrong-pin");
    common::write_secret(&wrong, b"999999\n");
    let bad = KeySource::SoftHsm(SoftHsm { pin_file: wrong.clone(), ..hsm.clone() });
    let socket = dir.path().join("kms.sock");
    let mut logs = Vec::new();
    let mut last = None;
    for restart in 0..10 {
        let log = dir.path().join(format!("run-{restart}.log"));
        let mut p = Plugin::spawn(&bad, &socket, &log, &["--log-level", "debug"]).await;
        let why = common::wait_unhealthy(&mut p, "PIN", Duration::from_secs(30)).await;
        assert!(!why.contains("999999"), "{why}");
        assert!(p.child.try_wait().unwrap().is_none(), "serve exited over a refused PIN");
        if restart < 9 {
            // What the kubelet does to a crash-looping static pod, minus the crash.
            p.child.kill().unwrap();
            p.child.wait().unwrap();
        } else {
            last = Some(p);
        }
        logs.push(log);
    }
    let text: String = logs.iter().map(|l| std::fs::read_to_string(l).unwrap()).collect();
    assert_eq!(text.matches("logging in to the PKCS#11 token").count(), 1, "login attempts over 10 starts:\n{text}");
    assert!(text.contains("it is not tried again until that file changes"), "{text}");
    assert!(!text.contains("999999"), "the PIN must not be logged");
    let state: Vec<_> = std::fs::read_dir(&hsm.state_dir).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(state.len(), 1, "{state:?}");
    let state_text = std::fs::read_to_string(&state[0]).unwrap();
    assert!(!state_text.contains("999999"), "{state_text}");

    // The operator fixes the PIN file: the running plugin (no restart) logs in once more.
    let mut p = last.unwrap();
    common::write_secret(&wrong, format!("{}\n", common::USER_PIN).as_bytes());
    let s = p.wait_healthy(Duration::from_secs(60)).await;
    assert!(s.key_id.starts_with("qubesec-kms/v1/"), "{s:?}");
    assert_eq!(p.log_text().matches("logging in to the PKCS#11 token").count(), 1, "{}", p.log_text());
    assert!(
        std::fs::read_dir(&hsm.state_dir).unwrap().next().is_none(),
        "the rejection is forgotten after a good login"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_never_exits_over_a_missing_keystore_and_picks_it_up() {
    let dir = tempfile::tempdir().unwrap();
    let keystore = dir.path().join("later/keystore");
    let master_key = dir.path().join("later/master.key");
    let source = KeySource::Software { keystore: keystore.clone(), master_key: master_key.clone() };
    let mut p = Plugin::spawn(&source, &dir.path().join("kms.sock"), &dir.path().join("p.log"), &[]).await;
    common::wait_unhealthy(&mut p, "no keystore", Duration::from_secs(20)).await;
    let out = common::run_ok(
        &[
            "keystore",
            "init",
            "--keystore",
            keystore.to_str().unwrap(),
            "--master-key-file",
            master_key.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.contains("created"));
    let s = p.wait_healthy(Duration::from_secs(60)).await;
    assert!(s.key_id.starts_with("qubesec-kms/v1/"));
    assert!(p.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_born_0600_and_never_chmod_ed() {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let dir = tempfile::tempdir().unwrap();
    let sockdir = dir.path().join("run");
    std::fs::create_dir_all(&sockdir).unwrap();
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
    inotify.add_watch(&sockdir, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ATTRIB).unwrap();
    let socket = sockdir.join("kms.sock");
    let p = Plugin::start(&KeySource::software(dir.path()), &socket, &dir.path().join("p.log"), &[]).await;
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let events = inotify.read_events().unwrap_or_default();
    let on_socket: Vec<_> =
        events.iter().filter(|e| e.name.as_deref() == Some(std::ffi::OsStr::new("kms.sock"))).map(|e| e.mask).collect();
    assert!(on_socket.iter().any(|m| m.contains(AddWatchFlags::IN_CREATE)), "{on_socket:?}");
    assert!(
        !on_socket.iter().any(|m| m.contains(AddWatchFlags::IN_ATTRIB)),
        "the socket's mode was changed after bind (a window where others could connect): {on_socket:?}"
    );
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_token_is_unavailable_then_recovers_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new(dir.path(), "qubesec-loss");
    let source = KeySource::SoftHsm(hsm.clone());
    let mut plugin = Plugin::start(&source, &dir.path().join("kms.sock"), &dir.path().join("plugin.log"), &[]).await;
    let key_id = plugin.status().await.unwrap().key_id;
    let before = encrypt(&plugin, b"sealed before the loss").await.unwrap();
    let pid = plugin.pid();

    // The token directory goes away.
    let moved = dir.path().join("tokens-away");
    std::fs::rename(&hsm.tokendir, &moved).unwrap();
    let lost_at = Instant::now();
    loop {
        let s = plugin.status().await.expect("Status still answers");
        if s.healthz != "ok" {
            eprintln!("unhealthy after {:.1} s: {}", lost_at.elapsed().as_secs_f64(), s.healthz);
            break;
        }
        assert!(lost_at.elapsed() < Duration::from_secs(20), "Status stayed ok with the token gone");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(code(encrypt(&plugin, b"x").await), Code::Unavailable);
    assert_eq!(code(decrypt(&plugin, &before.ciphertext, &before.key_id).await), Code::Unavailable);

    // It comes back: same process, same key, old ciphertexts decrypt.
    std::fs::rename(&moved, &hsm.tokendir).unwrap();
    let back_at = Instant::now();
    let s = plugin.wait_healthy(Duration::from_secs(60)).await;
    eprintln!("healthy again {:.1} s after the token came back", back_at.elapsed().as_secs_f64());
    assert_eq!(s.key_id, key_id);
    assert_eq!(plugin.pid(), pid);
    assert!(plugin.child.try_wait().unwrap().is_none());
    assert_eq!(decrypt(&plugin, &before.ciphertext, &before.key_id).await.unwrap(), b"sealed before the loss");
    let after = encrypt(&plugin, b"after").await.unwrap();
    assert_eq!(after.key_id, key_id);
    assert!(plugin.log_text().contains("PKCS#11 token connected"), "{}", plugin.log_text());
}

/// HPACK "literal header field without indexing, new name" (no Huffman).
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_path_authority_is_answered_not_reset() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kms.sock");
    let mut plugin = Plugin::start(&KeySource::software(dir.path()), &socket, &dir.path().join("p.log"), &[]).await;

    // What kube-apiserver < 1.32 sends: the socket path as :authority.
    let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut headers = Vec::new();
    hpack_literal(&mut headers, ":method", "POST");
    hpack_literal(&mut headers, ":scheme", "http");
    hpack_literal(&mut headers, ":path", "/v2.KeyManagementService/Status");
    hpack_literal(&mut headers, ":authority", socket.to_str().unwrap());
    hpack_literal(&mut headers, "content-type", "application/grpc");
    hpack_literal(&mut headers, "te", "trailers");
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&frame(4, 0, 0, &[])).unwrap();
    s.write_all(&frame(1, 0x4, 1, &headers)).unwrap();
    // An empty StatusRequest: one gRPC message of length 0.
    s.write_all(&frame(0, 0x1, 1, &[0, 0, 0, 0, 0])).unwrap();
    let (mut reset, mut data, mut end) = (None, 0usize, false);
    for _ in 0..20 {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).unwrap();
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).unwrap();
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
        match head[3] {
            3 if stream == 1 => reset = Some(u32::from_be_bytes(payload[..4].try_into().unwrap())),
            0 if stream == 1 => data += len,
            1 if stream == 1 && head[4] & 0x1 != 0 => end = true,
            _ => {}
        }
        if reset.is_some() || end {
            break;
        }
    }
    assert_eq!(reset, None, "the stream was reset");
    assert!(end && data > 5, "no StatusResponse came back (data {data} bytes)");
    assert_eq!(plugin.wait_healthy(Duration::from_secs(5)).await.healthz, "ok");
}

/// Python `grpcio` with its default channel for a unix socket (it sends the
/// percent-encoded path as `:authority`): Status, Encrypt and Decrypt work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_default_channel_works() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kms.sock");
    let mut plugin = Plugin::start(&KeySource::software(dir.path()), &socket, &dir.path().join("p.log"), &[]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/grpcio_client.py");
    let out = std::process::Command::new("python3").arg(script).arg(&socket).output().expect("python3 runs");
    let text = format!("{}{}", common::stdout(&out), common::stderr(&out));
    assert!(out.status.success(), "grpcio client failed:\n{text}");
    assert!(text.contains("status ok qubesec-kms/v1/") && text.contains("round trip ok"), "{text}");
    assert_eq!(plugin.wait_healthy(Duration::from_secs(5)).await.healthz, "ok");
}
