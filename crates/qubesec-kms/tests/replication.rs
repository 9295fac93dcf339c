//! Replication between control-plane nodes: `export` seals node A's KEKs to
//! node B's ML-KEM-1024 (or X-Wing) public key, checked against the
//! fingerprint compared out of band, and signs the bundle with A's identity;
//! `import` verifies it against a trusted signer before decrypting, adds the
//! versions inactive and never changes the active one; `activate` switches.
//! Forged, replayed, misaddressed and tampered bundles change nothing.
//! Also: `retire` refuses the active version and removes an old one; PKCS#11
//! versions are parsed strictly and concurrent rotations never share one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{KeySource, Plugin, Receiver, run, stderr};
use qubesec_core::KemAlgorithm;
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

/// A node: its keystore (software, key file) and its KEM key pair for bundles.
struct Node {
    dir: std::path::PathBuf,
    ks: KeySource,
    me: Receiver,
}

impl Node {
    /// A node whose keystore does not exist yet (made by its first import).
    fn joining(root: &std::path::Path, name: &str, alg: KemAlgorithm) -> Node {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let me = Receiver::new(&dir, alg);
        let ks = KeySource::Software { keystore: dir.join("keystore"), master_key: dir.join("master.key") };
        Node { dir, ks, me }
    }

    /// A node with a keystore made by `keystore init`.
    fn first(root: &std::path::Path, name: &str, alg: KemAlgorithm) -> Node {
        let mut n = Self::joining(root, name, alg);
        n.ks = KeySource::software(&n.dir);
        n
    }

    /// The identity fingerprint and public key file `keystore status` gives.
    fn identity(&self) -> (String, std::path::PathBuf) {
        let pem = self.dir.join("identity.pub.pem");
        let out = self.ks.cli(&["keystore", "status", "--identity-out", pem.to_str().unwrap()]);
        let fp = out.lines().find_map(|l| l.strip_prefix("identity: ")).expect(&out).split(' ').next().unwrap();
        assert!(out.contains("-----BEGIN PUBLIC KEY-----"), "{out}");
        (fp.to_owned(), pem)
    }

    fn export_to(&self, to: &Node, out: &std::path::Path) -> String {
        self.ks.export_to(&to.me, out)
    }

    fn import(&self, bundle: &std::path::Path, trusted: &str) -> std::process::Output {
        let args = self.ks.import_args(&self.me, trusted, bundle);
        run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    }

    fn keystore_bytes(&self) -> Vec<u8> {
        let KeySource::Software { keystore, .. } = &self.ks else { unreachable!() };
        std::fs::read(keystore.join("keystore.qks")).unwrap()
    }
}

async fn replicate(alg: KemAlgorithm) {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::first(dir.path(), "node-a", alg);
    let b = Node::joining(dir.path(), "node-b", alg);
    let (a_fp, a_pem) = a.identity();

    // Stage v2 on A, replicate to B (B's keystore is created by the import).
    let out = a.ks.cli(&["rotate", "--stage"]);
    assert!(out.contains("staged: version 2 added inactive"), "{out}");
    let bundle = dir.path().join("a-to-b.bundle");
    let out = a.export_to(&b, &bundle);
    assert!(out.contains("exported 2 key versions") && out.contains(&b.me.fingerprint) && out.contains(&a_fp), "{out}");
    let out = b.import(&bundle, a_pem.to_str().unwrap());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = common::stdout(&out);
    assert!(text.contains("imported: 2 new key versions") && text.contains("active version 1"), "{text}");
    assert!(text.contains("qubesec-kms/v2/") && text.contains("(staged)"), "{text}");
    assert_ne!(std::fs::read(b.dir.join("master.key")).unwrap(), std::fs::read(a.dir.join("master.key")).unwrap());
    let (b_fp, _) = b.identity();
    assert_ne!(b_fp, a_fp, "B got an identity of its own");

    let pa = Plugin::start(&a.ks, &a.dir.join("kms.sock"), &a.dir.join("plugin.log"), &[]).await;
    let mut pb_ = Plugin::start(&b.ks, &b.dir.join("kms.sock"), &b.dir.join("plugin.log"), &[]).await;
    let (sa, sb) = (pa.status().await.unwrap(), pb_.status().await.unwrap());
    assert_eq!(sa.key_id, sb.key_id, "both nodes report the same (still v1) key id");
    assert!(sa.key_id.starts_with("qubesec-kms/v1/"));
    let v1_from_a = seal(&pa, b"sealed on node a under v1").await;

    // Activate v2 on B first: A (where v2 is only staged) still reads B's data.
    b.ks.cli(&["activate", "--version", "2"]);
    let v2 = loop {
        let s = pb_.wait_healthy(std::time::Duration::from_secs(10)).await;
        if s.key_id.starts_with("qubesec-kms/v2/") {
            break s.key_id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let v2_from_b = seal(&pb_, b"sealed on node b under v2").await;
    assert_eq!(v2_from_b.key_id, v2);
    assert_eq!(open(&pa, &v2_from_b).await.unwrap(), b"sealed on node b under v2");
    assert_eq!(open(&pb_, &v1_from_a).await.unwrap(), b"sealed on node a under v1");
    a.ks.cli(&["activate", "--version", "2"]);
    let out = a.ks.cli(&["keystore", "list"]);
    assert!(out.contains("(active)") && out.lines().any(|l| l.starts_with("2\t") && l.ends_with("(active)")), "{out}");

    // Going back needs --allow-older.
    let mut args = vec!["activate".to_owned(), "--version".into(), "1".into()];
    args.extend(b.ks.args());
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(!out.status.success() && stderr(&out).contains("--allow-older"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_ml_kem_1024() {
    replicate(KemAlgorithm::MlKem1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_x_wing() {
    replicate(KemAlgorithm::XWing).await;
}

/// The attacks of issue 14, point 1: each refused with a precise error and
/// nothing changed on disk.
#[test]
fn forged_replayed_misaddressed_and_tampered_bundles_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::first(dir.path(), "a", KemAlgorithm::XWing);
    let b = Node::joining(dir.path(), "b", KemAlgorithm::XWing);
    let c = Node::joining(dir.path(), "c", KemAlgorithm::XWing);
    let (a_fp, _) = a.identity();
    let first = dir.path().join("first.bundle");
    a.export_to(&b, &first);
    assert!(b.import(&first, &a_fp).status.success());

    let refused = |bundle: &std::path::Path, trusted: &str, needle: &str| {
        let before = b.keystore_bytes();
        let out = b.import(bundle, trusted);
        assert!(!out.status.success(), "import of {} must fail", bundle.display());
        assert!(stderr(&out).contains(needle), "expected {needle:?}:\n{}", stderr(&out));
        assert_eq!(b.keystore_bytes(), before, "a refused import changed the keystore");
    };

    // An attacker who knows B's public key makes a bundle of keys it knows.
    let m = Node::first(dir.path(), "mallory", KemAlgorithm::XWing);
    m.ks.rotate();
    let forged = dir.path().join("forged.bundle");
    m.export_to(&b, &forged);
    refused(&forged, &a_fp, "not a trusted signer");
    // Re-importing the first bundle, or an older one after a newer one.
    refused(&first, &a_fp, "replayed or out of date");
    let (older, newer) = (dir.path().join("older.bundle"), dir.path().join("newer.bundle"));
    a.export_to(&b, &older);
    std::thread::sleep(std::time::Duration::from_millis(5));
    a.export_to(&b, &newer);
    assert!(b.import(&newer, &a_fp).status.success());
    refused(&older, &a_fp, "replayed or out of date");
    // Made for another node.
    let for_c = dir.path().join("for-c.bundle");
    a.export_to(&c, &for_c);
    refused(&for_c, &a_fp, "was made for recipient");
    // Tampered anywhere, truncated, or unsigned (format 1).
    let good = dir.path().join("good.bundle");
    a.export_to(&b, &good);
    let bytes = std::fs::read(&good).unwrap();
    for (i, needle) in [(14, "signature does not verify"), (bytes.len() / 2, "signature does not verify")] {
        let mut t = bytes.clone();
        t[i] ^= 1;
        let path = dir.path().join(format!("tampered-{i}.bundle"));
        std::fs::write(&path, t).unwrap();
        refused(&path, &a_fp, needle);
    }
    let cut = dir.path().join("cut.bundle");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    refused(&cut, &a_fp, "truncated");
    let mut v1 = bytes.clone();
    v1[9] = 1;
    std::fs::write(&cut, v1).unwrap();
    refused(&cut, &a_fp, "unsigned");
    // Export refuses a recipient key whose fingerprint differs from the one compared out of band.
    let mut args = vec!["export".to_owned(), "--recipient".into(), c.me.public.display().to_string()];
    args.extend(["--recipient-fingerprint".into(), b.me.fingerprint.clone(), "--out".into(), "/dev/null".into()]);
    args.extend(a.ks.args());
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(!out.status.success() && stderr(&out).contains("not the expected"), "{}", stderr(&out));

    // Import never changes the active version, even when the exporter's changed.
    a.ks.rotate();
    let rotated = dir.path().join("rotated.bundle");
    a.export_to(&b, &rotated);
    let out = b.import(&rotated, &a_fp);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = common::stdout(&out);
    assert!(text.contains("active version unchanged: 1") && text.contains("added qubesec-kms/v2/"), "{text}");
    let list = b.ks.cli(&["keystore", "list"]);
    assert!(list.lines().any(|l| l.starts_with("1\t") && l.ends_with("(active)")), "{list}");
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

/// `pkcs11-tool` (OpenSC) creates token objects the way another tool or an
/// older build could: here, AES keys under labels that must not alias ours.
fn pkcs11_tool_keygen(hsm: &common::SoftHsm, label: &str, id_hex: &str) {
    let out = std::process::Command::new("pkcs11-tool")
        .args(["--module", common::SOFTHSM_MODULE, "--token-label", &hsm.label, "--login", "--pin", common::USER_PIN])
        .args(["--keygen", "--key-type", "AES:32", "--label", label, "--id", id_hex])
        .env("SOFTHSM2_CONF", &hsm.conf)
        .output()
        .expect("pkcs11-tool (apt-get install opensc) runs");
    assert!(out.status.success(), "pkcs11-tool: {}{}", common::stdout(&out), stderr(&out));
}

/// Every object label on the token (`pkcs11-tool --list-objects`).
fn token_labels(hsm: &common::SoftHsm) -> Vec<String> {
    let out = std::process::Command::new("pkcs11-tool")
        .args(["--module", common::SOFTHSM_MODULE, "--token-label", &hsm.label, "--login", "--pin", common::USER_PIN])
        .arg("--list-objects")
        .env("SOFTHSM2_CONF", &hsm.conf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    common::stdout(&out)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("label:"))
        .map(|l| l.trim().to_owned())
        .filter(|l| l.starts_with("qubesec-kek/v"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs11_concurrent_rotations_never_share_a_version_and_labels_parse_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = common::SoftHsm::new(dir.path(), "qubesec-race");
    let src = KeySource::SoftHsm(hsm.clone());
    let mut plugin = Plugin::start(&src, &dir.path().join("kms.sock"), &dir.path().join("p.log"), &[]).await;
    let v1 = seal(&plugin, b"under v1").await;

    // Eight rotations at once against the one token (what two nodes sharing an HSM could do).
    let children: Vec<_> = (0..8)
        .map(|i| {
            let mut args: Vec<String> = vec!["rotate".into()];
            if i % 2 == 0 {
                args.push("--stage".into());
            }
            args.extend(src.args());
            std::process::Command::new(common::BIN)
                .args(&args)
                .env("SOFTHSM2_CONF", &hsm.conf)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut versions = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let text = common::stdout(&out);
        let v: u32 = text.split("version ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        versions.push(v);
    }
    versions.sort_unstable();
    let reported = versions.len();
    versions.dedup();
    assert_eq!(versions.len(), reported, "two rotations reported the same version: {versions:?}");
    let mut labels = token_labels(&hsm);
    let count = labels.len();
    labels.sort();
    labels.dedup();
    assert_eq!(labels.len(), count, "two key objects share a version label: {labels:?}");
    assert_eq!(count, 9, "{labels:?}");

    // Labels that only look like versions never alias one.
    let top = *versions.last().unwrap();
    pkcs11_tool_keygen(&hsm, &format!("qubesec-kek/v0{}", top + 1), "aa01");
    pkcs11_tool_keygen(&hsm, &format!("qubesec-kek/v+{}", top + 2), "aa02");
    src.cli(&["activate", "--version", &top.to_string()]);
    let s = loop {
        let s = plugin.wait_healthy(std::time::Duration::from_secs(10)).await;
        if s.key_id.starts_with(&format!("qubesec-kms/v{top}/")) {
            break s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        plugin.wait_healthy(std::time::Duration::from_secs(10)).await.key_id,
        s.key_id,
        "an alias became active"
    );
    let mut args = vec!["activate".to_owned(), "--version".into(), (top + 1).to_string()];
    args.extend(src.args());
    let out =
        run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[("SOFTHSM2_CONF", hsm.conf.to_str().unwrap())]);
    assert!(!out.status.success() && stderr(&out).contains(&format!("no key version {}", top + 1)), "{}", stderr(&out));
    assert_eq!(open(&plugin, &v1).await.unwrap(), b"under v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs11_token_generated_iv_is_refused_clearly_when_the_token_cannot() {
    // SoftHSM2 2.6 implements PKCS#11 2.40: no message-based AES-GCM, so it
    // cannot generate IVs. The plugin must say so and never fall back to an IV of its own.
    let dir = tempfile::tempdir().unwrap();
    let hsm = common::SoftHsm::new(dir.path(), "qubesec-iv");
    let src = KeySource::SoftHsm(hsm);
    let plugin = Plugin::start(&src, &dir.path().join("a.sock"), &dir.path().join("a.log"), &[]).await;
    let sealed = seal(&plugin, b"caller IV").await;
    drop(plugin);
    let mut iv =
        Plugin::spawn(&src, &dir.path().join("b.sock"), &dir.path().join("b.log"), &["--token-generated-iv"]).await;
    let why = common::wait_unhealthy(&mut iv, "cannot generate AES-GCM IVs", std::time::Duration::from_secs(20)).await;
    assert!(why.contains("C_EncryptMessage"), "{why}");
    let mut c = iv.client().await;
    let err = c.encrypt(pb::EncryptRequest { plaintext: b"x".to_vec(), uid: "r".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert_eq!(open(&iv, &sealed).await.unwrap(), b"caller IV", "Decrypt is unaffected");
}
