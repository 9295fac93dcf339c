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
    let count = u32::from_be_bytes(body[8..12].try_into().unwrap()) as usize;
    (0..count).map(|i| body[12 + i * 60 + 28..12 + i * 60 + 60].to_vec()).collect()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
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
        for (form, needle) in [
            ("raw", bytes.clone()),
            ("hex", hex::encode(bytes).into_bytes()),
            ("HEX", hex::encode_upper(bytes).into_bytes()),
            ("base64", b64(bytes).into_bytes()),
            ("debug bytes", format!("{:?}", &bytes[..8]).into_bytes()),
        ] {
            assert!(!common::contains(&text, &needle), "{what} ({form}) appears in the debug log");
        }
    }
}
