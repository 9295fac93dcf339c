//! End to end on a real etcd + kube-apiserver (qubesec-testenv): Secrets are
//! encrypted at rest through the built `qubesec-kms` plugin, with the
//! software keystore and with SoftHSM2; rotation is observed by the
//! apiserver, old Secrets still read, rewriting moves them to the new key,
//! and restarting the apiserver and the plugin loses nothing.
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

async fn encrypt_secrets_end_to_end(source: KeySource, dir: &Path) {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn software_keystore_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let source = KeySource::software(dir.path());
    encrypt_secrets_end_to_end(source, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm2_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let source = KeySource::SoftHsm(SoftHsm::new(dir.path(), "qubesec-e2e"));
    encrypt_secrets_end_to_end(source, dir.path()).await;
}
