//! No secret byte in the logs: run the plugin at debug level (our crates and
//! every dependency), exercise it, and search the captured log for the
//! plaintexts, the KEKs and the master key, raw, hex and base64.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use common::{KeySource, Plugin};
use qubesec_kms::pb;

/// Opens the keystore file independently, from its documented format
/// (docs/kms-keystore-format.md), and returns the raw KEKs.
fn keks_from_file(file: &[u8], master: &[u8]) -> Vec<Vec<u8>> {
    assert_eq!(&file[..8], b"QSKMSKEY");
    let sealed_len = u32::from_be_bytes(file[60..64].try_into().unwrap()) as usize;
    let cipher = Aes256Gcm::new_from_slice(master).unwrap();
    let nonce: [u8; 12] = file[48..60].try_into().unwrap();
    let body = cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: &file[64..64 + sealed_len], aad: &file[..64] })
        .expect("the documented format opens");
    assert_eq!(&file[8..10], &[0, 2], "format 2");
    let count = u32::from_be_bytes(body[8..12].try_into().unwrap()) as usize;
    (0..count).map(|i| body[12 + i * 60 + 28..12 + i * 60 + 60].to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_bytes_in_debug_logs() {
    let dir = tempfile::tempdir().unwrap();
    let source = KeySource::software(dir.path());
    let log = dir.path().join("plugin.log");
    let mut plugin =
        Plugin::start(&source, &dir.path().join("kms.sock"), &log, &["--log-level", "debug", "--log-format", "json"])
            .await;
    let mut client = plugin.client().await;

    let mut plaintexts: Vec<Vec<u8>> = vec![b"qubesec-log-canary-plaintext-5b2f".to_vec()];
    plaintexts.push(qubesec_core::rand::bytes(32).unwrap().to_vec());
    let mut sealed = Vec::new();
    for p in &plaintexts {
        let r = client
            .encrypt(pb::EncryptRequest { plaintext: p.clone(), uid: "log-test".into() })
            .await
            .unwrap()
            .into_inner();
        sealed.push(r);
    }
    source.rotate();
    plugin.wait_healthy(std::time::Duration::from_secs(10)).await;
    for (p, r) in plaintexts.iter().zip(&sealed) {
        let back = client
            .decrypt(pb::DecryptRequest {
                ciphertext: r.ciphertext.clone(),
                uid: "log-test".into(),
                key_id: r.key_id.clone(),
                annotations: Default::default(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&back.plaintext, p);
        // A failing request logs at debug level too.
        let mut bad = r.ciphertext.clone();
        bad[20] ^= 1;
        let err = client
            .decrypt(pb::DecryptRequest {
                ciphertext: bad,
                uid: "bad".into(),
                key_id: r.key_id.clone(),
                annotations: Default::default(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
    let _ = client.encrypt(pb::EncryptRequest { plaintext: vec![], uid: "empty".into() }).await;
    assert!(plugin.stop());

    let text = std::fs::read(&log).unwrap();
    let lines = String::from_utf8_lossy(&text);
    assert!(lines.contains("\"level\":\"DEBUG\""), "debug logging was not on:\n{lines}");
    assert!(lines.contains("decrypted") && lines.contains("request failed"), "requests were not logged:\n{lines}");
    assert!(lines.lines().all(|l| l.starts_with('{')), "not JSON lines:\n{lines}");

    let KeySource::Software { keystore, master_key } = &source else { unreachable!() };
    let master = std::fs::read(master_key).unwrap();
    let keks = keks_from_file(&std::fs::read(keystore.join("keystore.qks")).unwrap(), &master);
    assert_eq!(keks.len(), 2);
    let mut secrets: Vec<(String, Vec<u8>)> = vec![("master key".into(), master.clone())];
    secrets.extend(keks.iter().enumerate().map(|(i, k)| (format!("KEK {i}"), k.clone())));
    secrets.extend(plaintexts.iter().enumerate().map(|(i, p)| (format!("plaintext {i}"), p.clone())));
    for (what, bytes) in &secrets {
        let debug = ("debug bytes", format!("{:?}", &bytes[..8]).into_bytes());
        for (form, needle) in common::secret_forms(bytes).into_iter().chain([debug]) {
            assert!(!common::contains(&text, &needle), "{what} ({form}) appears in the debug log");
        }
    }
}

/// The new log lines and command outputs of issue 14: a refused PIN, the PIN
/// state file, node identities, export and import. None may carry the PIN
/// (raw or as an unkeyed hash), a KEK, the master key or the identity seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pin_identity_or_key_in_new_log_lines_state_files_or_command_output() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    // PKCS#11: a refused PIN, then the right one, at debug level.
    let hsm = common::SoftHsm::new(dir.path(), "qubesec-logs");
    let wrong_pin = "qubesec-wrong-pin-8d3a";
    let pin_file = dir.path().join("pin-under-test");
    common::write_secret(&pin_file, format!("{wrong_pin}\n").as_bytes());
    let source = KeySource::SoftHsm(common::SoftHsm { pin_file: pin_file.clone(), ..hsm.clone() });
    let log = dir.path().join("pkcs11.log");
    let mut p =
        Plugin::spawn(&source, &dir.path().join("p.sock"), &log, &["--log-level", "debug", "--log-format", "json"])
            .await;
    common::wait_unhealthy(&mut p, "PIN", std::time::Duration::from_secs(30)).await;
    let state: Vec<u8> =
        std::fs::read_dir(&hsm.state_dir).unwrap().flatten().flat_map(|e| std::fs::read(e.path()).unwrap()).collect();
    assert!(!state.is_empty(), "the refusal was recorded");
    common::write_secret(&pin_file, format!("{}\n", common::USER_PIN).as_bytes());
    p.wait_healthy(std::time::Duration::from_secs(60)).await;
    assert!(p.stop());
    let mut text = std::fs::read(&log).unwrap();

    // Software keystore: identity, export, import and status output.
    let a = KeySource::software(&dir.path().join("a"));
    a.rotate();
    let mut outputs = a.cli(&["keystore", "status"]);
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    let me = common::Receiver::new(&b_dir, qubesec_core::KemAlgorithm::XWing);
    let bundle = dir.path().join("b.bundle");
    outputs += &a.export_to(&me, &bundle);
    let signer = a.identity_fingerprint();
    let b_ks = dir.path().join("b-ks");
    let b_master = dir.path().join("b.master.key");
    let b = KeySource::Software { keystore: b_ks, master_key: b_master };
    let mut args = b.import_args(&me, &signer, &bundle);
    args.extend(["--log-level".into(), "debug".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = common::run(&args, &[]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    outputs += &common::stdout(&out);
    outputs += &common::stderr(&out);
    let out = common::run(&args, &[]); // refused as a replay: its error too
    assert!(!out.status.success());
    outputs += &common::stderr(&out);
    text.extend_from_slice(outputs.as_bytes());

    let KeySource::Software { keystore, master_key } = &a else { unreachable!() };
    let master = std::fs::read(master_key).unwrap();
    let keks = keks_from_file(&std::fs::read(keystore.join("keystore.qks")).unwrap(), &master);
    assert_eq!(keks.len(), 2);
    let seed = identity_seed(&std::fs::read(keystore.join("identity.qki")).unwrap(), &master);
    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        ("master key".into(), master.clone()),
        ("identity seed".into(), seed),
        ("kem private key".into(), std::fs::read(&me.key).unwrap()),
        ("wrong PIN".into(), wrong_pin.as_bytes().to_vec()),
        ("SHA-256 of the wrong PIN".into(), sha2::Sha256::digest(wrong_pin.as_bytes()).to_vec()),
        ("SHA-256 of the PIN file".into(), sha2::Sha256::digest(format!("{wrong_pin}\n").as_bytes()).to_vec()),
        ("SHA-256 of the right PIN".into(), sha2::Sha256::digest(common::USER_PIN.as_bytes()).to_vec()),
    ];
    secrets.extend(keks.iter().enumerate().map(|(i, k)| (format!("KEK {i}"), k.clone())));
    for (what, bytes) in &secrets {
        for (form, needle) in common::secret_forms(bytes) {
            assert!(!common::contains(&text, &needle), "{what} ({form}) appears in a log line or command output");
            assert!(!common::contains(&state, &needle), "{what} ({form}) appears in the PIN state file");
        }
    }
    let lines = String::from_utf8_lossy(&text);
    assert!(lines.contains("the token refused the PIN") && lines.contains("imported:"), "the new lines were exercised");
}

/// The identity file's ML-DSA seed, opened from its documented format.
fn identity_seed(file: &[u8], master: &[u8]) -> Vec<u8> {
    assert_eq!(&file[..8], b"QSKMSIDN");
    let p = u32::from_be_bytes(file[12..16].try_into().unwrap()) as usize;
    let nonce: [u8; 12] = file[16 + p..28 + p].try_into().unwrap();
    let key =
        qubesec_core::kdf::derive(qubesec_core::HashAlgorithm::Sha256, master, b"", b"qubesec-kms identity v1", 32)
            .unwrap();
    let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
    cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: &file[32 + p..], aad: &file[..32 + p] })
        .expect("the documented identity format opens")
}
