//! End to end on a real etcd + kube-apiserver (qubesec-testenv): Secrets are
//! encrypted at rest through the built `qubesec-kms` plugin, with the
//! software keystore and with SoftHSM2; rotation is observed by the
//! apiserver, old Secrets still read, rewriting moves them to the new key,
//! and restarting the apiserver and the plugin loses nothing. An HSM outage
//! longer than the static pod's liveness window costs no restart and no
//! Secret. Two kube-apiservers on one etcd, each with its own plugin and
//! keystore, keep every Secret readable through a staged rotation. A
//! kube-apiserver 1.31 (socket path as `:authority`) works through the plugin.
//!
//! Needs `cargo xtask testenv build` (or QUBESEC_TESTENV_DIR) and SoftHSM2;
//! without them these tests fail, they never skip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{KeySource, Plugin, SoftHsm, contains, encrypted_object_key_id};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{ListParams, PostParams};
use qubesec_testenv::ControlPlane;

const PREFIX: &[u8] = b"k8s:enc:kms:v2:qubesec:";
const NS: &str = "kms-e2e";

fn secret(name: &str, value: &str) -> Secret {
    Secret {
        metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() },
        data: Some(BTreeMap::from([("value".to_owned(), ByteString(value.as_bytes().to_vec()))])),
        ..Secret::default()
    }
}

fn canary(name: &str) -> String {
    format!("qubesec-canary-{name}-9c1e7d")
}

/// The stored key id of a Secret, after checking the prefix and that the plaintext is absent.
async fn stored_key_id(cp: &ControlPlane, name: &str) -> String {
    let raw = cp.etcd_get(&format!("/registry/secrets/{NS}/{name}")).await.unwrap().expect("Secret in etcd");
    assert!(raw.starts_with(PREFIX), "not KMS v2 encrypted: {:?}", String::from_utf8_lossy(&raw[..raw.len().min(40)]));
    assert!(!contains(&raw, canary(name).as_bytes()), "plaintext of {name} found in etcd");
    encrypted_object_key_id(&raw[PREFIX.len()..])
}

async fn read_value(client: kube::Client, name: &str) -> String {
    let secrets: Api<Secret> = Api::namespaced(client, NS);
    let s = secrets.get(name).await.unwrap();
    String::from_utf8(s.data.unwrap()["value"].0.clone()).unwrap()
}

fn apiserver_args(config: &Path) -> Vec<String> {
    vec![
        format!("--encryption-provider-config={}", config.display()),
        "--encryption-provider-config-automatic-reload=true".to_owned(),
    ]
}

async fn encrypt_secrets_end_to_end(source: KeySource, dir: &Path, outage: Option<&SoftHsm>) {
    let t0 = Instant::now();
    let socket = dir.join("run/kms.sock");
    let log = dir.join("plugin.log");
    let mut plugin = Plugin::start(&source, &socket, &log, &[]).await;
    let k1 = plugin.status().await.unwrap().key_id;

    let config = dir.join("encryption-config.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - kms: {{apiVersion: v2, name: qubesec, endpoint: \"unix://{}\", timeout: 3s}}\n      - identity: {{}}\n",
            socket.display()
        ),
    )
    .unwrap();
    let args = apiserver_args(&config);
    let mut builder = ControlPlane::builder();
    for a in &args {
        builder = builder.apiserver_arg(a.clone());
    }
    let mut cp = builder.start().await.unwrap();
    eprintln!("[{:.1}s] plugin + control plane up, key id {k1}", t0.elapsed().as_secs_f64());

    let namespaces: Api<Namespace> = Api::all(cp.client());
    let ns = Namespace {
        metadata: ObjectMeta { name: Some(NS.to_owned()), ..ObjectMeta::default() },
        ..Namespace::default()
    };
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(cp.client(), NS);
    let old_names = ["old-a", "old-b", "old-c"];
    for name in old_names {
        secrets.create(&PostParams::default(), &secret(name, &canary(name))).await.unwrap();
        assert_eq!(stored_key_id(&cp, name).await, k1, "{name} is stored under the active key");
        assert_eq!(read_value(cp.client(), name).await, canary(name));
    }

    // Rotate: the plugin picks the new key up without a restart (within 10 s).
    let rotated = Instant::now();
    let out = source.rotate();
    assert!(out.contains("rotated"), "{out}");
    let k2 = loop {
        let s = plugin.status().await.unwrap();
        if s.key_id != k1 && s.healthz == "ok" {
            break s.key_id;
        }
        assert!(rotated.elapsed() < Duration::from_secs(10), "plugin did not pick up the rotation in 10 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "[{:.1}s] plugin reports {k2} {:.1} s after rotate",
        t0.elapsed().as_secs_f64(),
        rotated.elapsed().as_secs_f64()
    );
    assert!(k2.starts_with("qubesec-kms/v2/"), "{k2}");

    // The apiserver polls Status every 60 s while healthy; wait for new writes to use k2.
    let mut i = 0;
    loop {
        let name = format!("probe-{i}");
        secrets.create(&PostParams::default(), &secret(&name, &canary(&name))).await.unwrap();
        if stored_key_id(&cp, &name).await == k2 {
            break;
        }
        i += 1;
        assert!(rotated.elapsed() < Duration::from_secs(100), "apiserver never used {k2}\n{}", cp.log_tails(20));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!(
        "[{:.1}s] apiserver writes with {k2} {:.1} s after rotate (its Status poll)",
        t0.elapsed().as_secs_f64(),
        rotated.elapsed().as_secs_f64()
    );

    // Old Secrets still read and are still stored under k1.
    for name in old_names {
        assert_eq!(stored_key_id(&cp, name).await, k1);
        assert_eq!(read_value(cp.client(), name).await, canary(name));
    }

    // Rewrite every Secret in the cluster (what `kubectl replace` does): all move to k2.
    let all: Api<Secret> = Api::all(cp.client());
    let list = all.list(&ListParams::default()).await.unwrap();
    for s in list.items {
        let ns = s.metadata.namespace.clone().unwrap();
        let name = s.metadata.name.clone().unwrap();
        Api::<Secret>::namespaced(cp.client(), &ns).replace(&name, &PostParams::default(), &s).await.unwrap();
    }
    for key in cp.etcd_keys("/registry/secrets/").await.unwrap() {
        let raw = cp.etcd_get(&key).await.unwrap().unwrap();
        assert!(raw.starts_with(PREFIX), "{key} not encrypted");
        assert_eq!(encrypted_object_key_id(&raw[PREFIX.len()..]), k2, "{key} not moved to the new key");
    }
    for name in old_names {
        assert_eq!(read_value(cp.client(), name).await, canary(name));
    }
    eprintln!("[{:.1}s] all Secrets rewritten under {k2}", t0.elapsed().as_secs_f64());

    // Restart the plugin (graceful) and the apiserver: nothing is lost.
    assert!(plugin.stop(), "plugin did not exit cleanly on SIGTERM:\n{}", plugin.log_text());
    assert!(!socket.exists(), "socket left behind after a clean stop");
    let mut plugin = Plugin::start(&source, &socket, &log, &[]).await;
    assert_eq!(plugin.wait_healthy(Duration::from_secs(10)).await.key_id, k2);
    cp.restart_apiserver(args.clone()).await.unwrap();
    for name in old_names {
        assert_eq!(read_value(cp.client(), name).await, canary(name));
    }
    let secrets: Api<Secret> = Api::namespaced(cp.client(), NS);
    secrets.create(&PostParams::default(), &secret("after-restart", &canary("after-restart"))).await.unwrap();
    assert_eq!(stored_key_id(&cp, "after-restart").await, k2);
    assert_eq!(read_value(cp.client(), "after-restart").await, canary("after-restart"));
    eprintln!("[{:.1}s] restarts done, nothing lost", t0.elapsed().as_secs_f64());
    assert!(plugin.stop());

    let Some(hsm) = outage else { return };
    // The token goes away for longer than the static pod's liveness window,
    // while we probe /livez as the kubelet would: it never fails, so no restart.
    let (period, threshold) = liveness_probe();
    let window = period * threshold;
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let mut plugin = Plugin::start(&source, &socket, &log, &["--metrics-addr", &metrics]).await;
    let pid = plugin.pid();
    let away = dir.join("tokens-away");
    std::fs::rename(&hsm.tokendir, &away).unwrap();
    let lost_at = Instant::now();
    let mut unhealthy_seen = false;
    while lost_at.elapsed() < window + Duration::from_secs(5) {
        assert_eq!(http_get(port, "/livez").await, 200, "/livez failed during the outage: the kubelet would restart");
        unhealthy_seen |= plugin.status().await.is_some_and(|s| s.healthz != "ok");
        tokio::time::sleep(period / 2).await;
    }
    assert!(unhealthy_seen, "Status stayed ok with the token gone");
    assert_eq!(http_get(port, "/readyz").await, 503);
    std::fs::rename(&away, &hsm.tokendir).unwrap();
    let s = plugin.wait_healthy(Duration::from_secs(60)).await;
    assert_eq!(s.key_id, k2);
    assert_eq!(plugin.pid(), pid, "no restart");
    // A fresh apiserver has no cached DEKs: every read goes through Decrypt.
    cp.restart_apiserver(args.clone()).await.unwrap();
    for name in old_names.iter().copied().chain(["after-restart"]) {
        assert_eq!(read_value(cp.client(), name).await, canary(name));
    }
    eprintln!(
        "[{:.1}s] {:.0} s outage (liveness window {window:?}) ridden out",
        t0.elapsed().as_secs_f64(),
        lost_at.elapsed().as_secs_f64()
    );
    assert!(plugin.stop());
}

/// The static pod's liveness probe: (periodSeconds, failureThreshold).
fn liveness_probe() -> (Duration, u32) {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/kms/qubesec-kms.yaml")).unwrap();
    let pod: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let probe = &pod["spec"]["containers"][0]["livenessProbe"];
    assert_eq!(probe["httpGet"]["path"].as_str(), Some("/livez"));
    let period = probe["periodSeconds"].as_u64().unwrap();
    let threshold = probe["failureThreshold"].as_u64().unwrap();
    (Duration::from_secs(period), u32::try_from(threshold).unwrap())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A minimal HTTP/1.1 GET; returns the status code (0 when nothing answers).
async fn http_get(port: u16, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return 0 };
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
    if read.is_err() {
        return 0;
    }
    String::from_utf8_lossy(&buf).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn encryption_config(path: &Path, socket: &Path) {
    std::fs::write(
        path,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - kms: {{apiVersion: v2, name: qubesec, endpoint: \"unix://{}\", timeout: 3s}}\n      - identity: {{}}\n",
            socket.display()
        ),
    )
    .unwrap();
}

async fn create_ns(client: kube::Client) {
    let namespaces: Api<Namespace> = Api::all(client);
    let ns = Namespace {
        metadata: ObjectMeta { name: Some(NS.to_owned()), ..ObjectMeta::default() },
        ..Namespace::default()
    };
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
}

/// Two kube-apiservers on one etcd, each with its own plugin and keystore
/// (two control-plane nodes): stage on A, replicate, activate on A, then on
/// B, re-encrypt; every Secret stays readable through both at every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_staged_rotation_keeps_every_secret_readable_through_both_apiservers() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let a = KeySource::software(&a_dir);
    // B: a KEM key for bundles; its keystore is created by importing A's.
    let me = common::Receiver::new(&b_dir, qubesec_core::KemAlgorithm::XWing);
    let a_id = a.identity_fingerprint();
    let b = KeySource::Software { keystore: b_dir.join("keystore"), master_key: b_dir.join("master.key") };
    let replicate = |n: u32| {
        let bundle = dir.path().join(format!("a-to-b-{n}.bundle"));
        a.export_to(&me, &bundle);
        let args = b.import_args(&me, &a_id, &bundle);
        common::run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    };
    replicate(1);

    let (a_sock, b_sock) = (a_dir.join("kms.sock"), b_dir.join("kms.sock"));
    let mut pa = Plugin::start(&a, &a_sock, &a_dir.join("plugin.log"), &[]).await;
    let mut pb_ = Plugin::start(&b, &b_sock, &b_dir.join("plugin.log"), &[]).await;
    let k1 = pa.status().await.unwrap().key_id;
    assert_eq!(pb_.status().await.unwrap().key_id, k1);
    let (a_cfg, b_cfg) = (a_dir.join("enc.yaml"), b_dir.join("enc.yaml"));
    encryption_config(&a_cfg, &a_sock);
    encryption_config(&b_cfg, &b_sock);
    let a_args = apiserver_args(&a_cfg);
    let b_args = apiserver_args(&b_cfg);
    let mut builder = ControlPlane::builder();
    for x in &a_args {
        builder = builder.apiserver_arg(x.clone());
    }
    let mut cp = builder.start().await.unwrap();
    let mut api_b = cp.start_extra_apiserver(None, b_args.clone()).await.unwrap();
    eprintln!("[{:.1}s] two apiservers on one etcd, key id {k1}", t0.elapsed().as_secs_f64());
    create_ns(cp.client()).await;

    let mut names: Vec<String> = Vec::new();
    async fn write(client: kube::Client, names: &mut Vec<String>, name: &str) {
        let api: Api<Secret> = Api::namespaced(client, NS);
        api.create(&PostParams::default(), &secret(name, &canary(name))).await.unwrap();
        names.push(name.to_owned());
    }
    async fn read_all(cp: &ControlPlane, b: &kube::Client, names: &[String], step: &str) {
        for name in names {
            assert_eq!(read_value(cp.client(), name).await, canary(name), "{step}: {name} via apiserver A");
            assert_eq!(read_value(b.clone(), name).await, canary(name), "{step}: {name} via apiserver B");
        }
    }
    write(cp.client(), &mut names, "via-a-1").await;
    write(api_b.clone(), &mut names, "via-b-1").await;
    read_all(&cp, &api_b, &names, "before rotation").await;

    // Stage v2 on A and replicate: nothing changes for the apiservers.
    a.cli(&["rotate", "--stage"]);
    let out = replicate(2);
    assert!(out.contains("(staged)") && out.contains("active version unchanged: 1"), "{out}");
    read_all(&cp, &api_b, &names, "after staging").await;

    // Activate on A only; A's apiserver writes with v2 (restarted to pick it
    // up now instead of at its next 60 s Status poll); B, with v2 staged, reads them.
    a.cli(&["activate", "--version", "2"]);
    let k2 = loop {
        let s = pa.wait_healthy(Duration::from_secs(10)).await;
        if s.key_id != k1 {
            break s.key_id;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    cp.restart_apiserver(a_args.clone()).await.unwrap();
    write(cp.client(), &mut names, "via-a-2").await;
    assert_eq!(stored_key_id(&cp, "via-a-2").await, k2);
    write(api_b.clone(), &mut names, "via-b-2").await;
    assert_eq!(stored_key_id(&cp, "via-b-2").await, k1, "B still writes with v1");
    read_all(&cp, &api_b, &names, "activated on A only").await;

    // Activate on B too, then re-encrypt everything through B.
    b.cli(&["activate", "--version", "2"]);
    loop {
        if pb_.wait_healthy(Duration::from_secs(10)).await.key_id == k2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(api_b);
    let mut extra_args = b_args.clone();
    extra_args.push("--v=0".into());
    api_b = cp.start_extra_apiserver(None, extra_args).await.unwrap();
    write(api_b.clone(), &mut names, "via-b-3").await;
    assert_eq!(stored_key_id(&cp, "via-b-3").await, k2);
    read_all(&cp, &api_b, &names, "activated on both").await;
    let list = Api::<Secret>::namespaced(api_b.clone(), NS).list(&ListParams::default()).await.unwrap();
    for s in list.items {
        let name = s.metadata.name.clone().unwrap();
        Api::<Secret>::namespaced(api_b.clone(), NS).replace(&name, &PostParams::default(), &s).await.unwrap();
    }
    for name in &names {
        assert_eq!(stored_key_id(&cp, name).await, k2, "{name} re-encrypted");
    }
    read_all(&cp, &api_b, &names, "after re-encryption").await;
    eprintln!(
        "[{:.1}s] staged rotation across two apiservers: every Secret readable at every step",
        t0.elapsed().as_secs_f64()
    );
    assert!(pa.stop() && pb_.stop());
}

/// kube-apiserver 1.31 sends the socket path as `:authority`; it must still
/// write and read encrypted Secrets through the plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_apiserver_1_31_reads_and_writes_through_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let source = KeySource::software(dir.path());
    let socket = dir.path().join("kms.sock");
    let plugin = Plugin::start(&source, &socket, &dir.path().join("plugin.log"), &[]).await;
    let k1 = plugin.status().await.unwrap().key_id;
    let cfg = dir.path().join("enc.yaml");
    encryption_config(&cfg, &socket);
    let legacy = qubesec_testenv::legacy_apiserver_path().unwrap();
    let mut binaries = qubesec_testenv::Binaries::locate().unwrap();
    binaries.kube_apiserver = legacy;
    let args = apiserver_args(&cfg);
    let mut builder = ControlPlane::builder().binaries(binaries);
    for x in &args {
        builder = builder.apiserver_arg(x.clone());
    }
    let mut cp = builder.start().await.unwrap();
    let version = cp.client().apiserver_version().await.unwrap();
    assert_eq!(format!("{}.{}", version.major, version.minor), "1.31", "{version:?}");
    create_ns(cp.client()).await;
    let api: Api<Secret> = Api::namespaced(cp.client(), NS);
    for name in ["legacy-a", "legacy-b"] {
        api.create(&PostParams::default(), &secret(name, &canary(name))).await.unwrap();
        assert_eq!(stored_key_id(&cp, name).await, k1);
    }
    // A fresh apiserver decrypts through the plugin.
    cp.restart_apiserver(args).await.unwrap();
    for name in ["legacy-a", "legacy-b"] {
        assert_eq!(read_value(cp.client(), name).await, canary(name));
    }
    assert!(plugin.log_text().is_empty() || !plugin.log_text().contains("ERROR"), "{}", plugin.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn software_keystore_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let source = KeySource::software(dir.path());
    encrypt_secrets_end_to_end(source, dir.path(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm2_end_to_end_with_an_outage_beyond_the_liveness_window() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new(dir.path(), "qubesec-e2e");
    let source = KeySource::SoftHsm(hsm.clone());
    encrypt_secrets_end_to_end(source, dir.path(), Some(&hsm)).await;
}
