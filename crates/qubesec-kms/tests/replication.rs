//! Replication between control-plane nodes: `export` seals node A's KEKs to
//! node B's ML-KEM-1024 (or X-Wing) public key, `import` installs them on B;
//! both plugins then report the same key id and decrypt each other's data.
//! Also: `retire` refuses the active version and removes an old one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{KeySource, Plugin, run, run_ok, stderr};
use qubesec_core::{Algorithm, KemAlgorithm, PrivateKey};
use qubesec_kms::pb;

async fn seal(plugin: &Plugin, plaintext: &[u8]) -> pb::EncryptResponse {
    let mut c = plugin.client().await;
    c.encrypt(pb::EncryptRequest { plaintext: plaintext.to_vec(), uid: "r".into() }).await.unwrap().into_inner()
}

async fn open(plugin: &Plugin, r: &pb::EncryptResponse) -> Result<Vec<u8>, tonic::Status> {
    let mut c = plugin.client().await;
    c.decrypt(pb::DecryptRequest {
        ciphertext: r.ciphertext.clone(),
        uid: "r".into(),
        key_id: r.key_id.clone(),
        annotations: Default::default(),
    })
    .await
    .map(|r| r.into_inner().plaintext)
}

async fn replicate(alg: KemAlgorithm) {
    let dir = tempfile::tempdir().unwrap();
    let a_dir = dir.path().join("node-a");
    let b_dir = dir.path().join("node-b");
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let a = KeySource::software(&a_dir);
    a.rotate();

    // Node B's identity key pair (what `qubesec kem keygen` writes).
    let sk = PrivateKey::generate(Algorithm::Kem(alg)).unwrap();
    std::fs::write(b_dir.join("node.key.pem"), sk.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    std::fs::write(b_dir.join("node.pub.pem"), sk.public_key().unwrap().to_spki_pem().unwrap()).unwrap();

    let bundle = dir.path().join("a-to-b.bundle");
    let out = a.cli(&[
        "export",
        "--recipient",
        b_dir.join("node.pub.pem").to_str().unwrap(),
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert!(out.contains("exported 2 key versions"), "{out}");
    let b_ks = b_dir.join("keystore");
    let b_master = b_dir.join("master.key");
    let out = run_ok(
        &[
            "import",
            "--keystore",
            b_ks.to_str().unwrap(),
            "--master-key-file",
            b_master.to_str().unwrap(),
            "--identity",
            b_dir.join("node.key.pem").to_str().unwrap(),
            "--in",
            bundle.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.contains("imported: 2 new key versions"), "{out}");
    let b = KeySource::Software { keystore: b_ks, master_key: b_master };
    assert_ne!(std::fs::read(b_dir.join("master.key")).unwrap(), std::fs::read(a_dir.join("master.key")).unwrap());

    let pa = Plugin::start(&a, &a_dir.join("kms.sock"), &a_dir.join("plugin.log"), &[]).await;
    let pb_ = Plugin::start(&b, &b_dir.join("kms.sock"), &b_dir.join("plugin.log"), &[]).await;
    let (sa, sb) = (pa.status().await.unwrap(), pb_.status().await.unwrap());
    assert_eq!(sa.key_id, sb.key_id, "both nodes report the same key id");
    assert!(sa.key_id.starts_with("qubesec-kms/v2/"));
    let from_a = seal(&pa, b"sealed on node a").await;
    let from_b = seal(&pb_, b"sealed on node b").await;
    assert_eq!(open(&pb_, &from_a).await.unwrap(), b"sealed on node a");
    assert_eq!(open(&pa, &from_b).await.unwrap(), b"sealed on node b");

    // A third node whose key the bundle was not sealed to cannot import it.
    let other = PrivateKey::generate(Algorithm::Kem(alg)).unwrap();
    std::fs::write(dir.path().join("other.key.pem"), other.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    let c_dir = dir.path().join("node-c");
    let out = run(
        &[
            "import",
            "--keystore",
            c_dir.join("ks").to_str().unwrap(),
            "--master-key-file",
            c_dir.join("master.key").to_str().unwrap(),
            "--identity",
            dir.path().join("other.key.pem").to_str().unwrap(),
            "--in",
            bundle.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not open with this identity key"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_ml_kem_1024() {
    replicate(KemAlgorithm::MlKem1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_x_wing() {
    replicate(KemAlgorithm::XWing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retire_refuses_the_active_version_and_removes_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ks = KeySource::software(dir.path());
    ks.rotate();
    let mut args = vec!["retire".to_owned(), "--version".into(), "2".into()];
    args.extend(ks.args());
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("version 2 is the active key version"), "{}", stderr(&out));

    let plugin = Plugin::start(&ks, &dir.path().join("kms.sock"), &dir.path().join("p.log"), &[]).await;
    let old = {
        // Sealed under v2 (active); v1 data would be lost on retiring v1.
        seal(&plugin, b"v2 data").await
    };
    ks.cli(&["retire", "--version", "1"]);
    let list = ks.cli(&["keystore", "list"]);
    assert!(!list.contains("qubesec-kms/v1/") && list.contains("qubesec-kms/v2/"), "{list}");
    assert_eq!(open(&plugin, &old).await.unwrap(), b"v2 data");
    let v1_id = "qubesec-kms/v1/0000000000000000";
    let mut c = plugin.client().await;
    let err = c
        .decrypt(pb::DecryptRequest {
            ciphertext: old.ciphertext.clone(),
            uid: "r".into(),
            key_id: v1_id.into(),
            annotations: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs11_rotate_and_retire() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = common::SoftHsm::new(dir.path(), "qubesec-rotate");
    let src = KeySource::SoftHsm(hsm);
    let mut plugin = Plugin::start(&src, &dir.path().join("kms.sock"), &dir.path().join("p.log"), &[]).await;
    let v1 = seal(&plugin, b"under v1").await;
    assert!(v1.key_id.starts_with("qubesec-kms/v1/"));
    let out = src.rotate();
    assert!(out.contains("version 2 is active"), "{out}");
    let started = std::time::Instant::now();
    loop {
        let s = plugin.wait_healthy(std::time::Duration::from_secs(10)).await;
        if s.key_id.starts_with("qubesec-kms/v2/") {
            break;
        }
        assert!(started.elapsed().as_secs() < 10, "rotation not picked up in 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(open(&plugin, &v1).await.unwrap(), b"under v1");
    let mut args = vec!["retire".to_owned(), "--version".into(), "2".into()];
    args.extend(src.args());
    let env = src.env();
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[("SOFTHSM2_CONF", env[0].1.as_str())]);
    assert!(!out.status.success(), "retiring the active token key must fail");
}
