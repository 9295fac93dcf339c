//! End-to-end: a real etcd + kube-apiserver + kube-controller-manager.
//!
//! Needs `cargo xtask testenv build` first; without the binaries these tests
//! fail (they never skip).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use qubesec_testenv::{ControlPlane, process_alive};

const SECRET_VALUE: &str = "qubesec-plaintext-canary-7f3a";

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() }
}

async fn create_namespace(client: kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client);
    let ns = Namespace { metadata: meta(name), ..Namespace::default() };
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
}

fn assert_all_gone(pids: &[u32]) {
    assert!(!pids.is_empty());
    for &pid in pids {
        assert!(!process_alive(pid), "pid {pid} is still alive after stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_etcd_restart_and_garbage_collection() {
    let started = Instant::now();
    let mut cp = ControlPlane::builder().controller_manager(true).start().await.unwrap();
    eprintln!("control plane (etcd + apiserver + kcm) ready in {:.1} s", started.elapsed().as_secs_f64());

    let ns = "e2e";
    create_namespace(cp.client(), ns).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(cp.client(), ns);
    let owner = configmaps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("owner"),
                data: Some(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
                ..ConfigMap::default()
            },
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(cp.client(), ns);
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: meta("canary"),
                data: Some(BTreeMap::from([("value".to_owned(), ByteString(SECRET_VALUE.as_bytes().to_vec()))])),
                ..Secret::default()
            },
        )
        .await
        .unwrap();

    // Raw etcd: with no encryption config (the identity provider), the
    // plaintext is right there in the stored protobuf.
    let raw = cp.etcd_get("/registry/secrets/e2e/canary").await.unwrap().expect("the Secret is in etcd");
    assert!(raw.windows(SECRET_VALUE.len()).any(|w| w == SECRET_VALUE.as_bytes()), "plaintext not found in etcd value");
    assert!(raw.starts_with(b"k8s\x00"), "expected protobuf storage");
    let keys = cp.etcd_keys("/registry/secrets/e2e/").await.unwrap();
    assert_eq!(keys, ["/registry/secrets/e2e/canary"]);
    assert_eq!(cp.etcd_get("/registry/secrets/e2e/nope").await.unwrap(), None);

    // Restart the apiserver with an extra flag; etcd keeps the data.
    let old_pid = cp.apiserver_pid().unwrap();
    let restarted = Instant::now();
    cp.restart_apiserver(["--v=1"]).await.unwrap();
    eprintln!("apiserver restarted in {:.1} s", restarted.elapsed().as_secs_f64());
    assert_eq!(cp.apiserver_args(), ["--v=1"]);
    assert!(!process_alive(old_pid), "the old apiserver is still alive");
    assert_ne!(cp.apiserver_pid(), Some(old_pid));
    let secrets: Api<Secret> = Api::namespaced(cp.client(), ns);
    let back = secrets.get("canary").await.unwrap();
    assert_eq!(back.data.unwrap()["value"].0, SECRET_VALUE.as_bytes(), "Secret reads back after the restart");

    // Garbage collection by kube-controller-manager: a dependent goes when its owner goes.
    let configmaps: Api<ConfigMap> = Api::namespaced(cp.client(), ns);
    let owner_ref = OwnerReference {
        api_version: "v1".to_owned(),
        kind: "ConfigMap".to_owned(),
        name: "owner".to_owned(),
        uid: owner.metadata.uid.clone().unwrap(),
        ..OwnerReference::default()
    };
    configmaps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta { owner_references: Some(vec![owner_ref]), ..meta("dependent") },
                ..ConfigMap::default()
            },
        )
        .await
        .unwrap();
    configmaps.delete("owner", &DeleteParams::background()).await.unwrap();
    let gc_started = Instant::now();
    let deadline = gc_started + Duration::from_secs(90);
    loop {
        if configmaps.get_opt("dependent").await.unwrap().is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "dependent ConfigMap not garbage-collected in 90 s\n{}", cp.log_tails(30));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("dependent garbage-collected {:.1} s after the owner's deletion", gc_started.elapsed().as_secs_f64());

    // Stop: every process we started (etcd, two apiservers, kcm) is gone.
    let pids = cp.started_pids().to_vec();
    assert_eq!(pids.len(), 4, "{pids:?}");
    cp.check_running().unwrap();
    cp.stop();
    assert_all_gone(&pids);
    cp.stop(); // idempotent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_control_planes_at_once_do_not_collide() {
    let started = Instant::now();
    let (a, b) = tokio::join!(ControlPlane::builder().start(), ControlPlane::builder().start());
    let (a, b) = (a.unwrap(), b.unwrap());
    eprintln!("two control planes (etcd + apiserver each) ready in {:.1} s", started.elapsed().as_secs_f64());
    assert_ne!(a.dir(), b.dir());
    assert_ne!(a.apiserver_url(), b.apiserver_url());
    assert_ne!(a.etcd_url(), b.etcd_url());

    // The same object in both: they are separate clusters.
    create_namespace(a.client(), "same-name").await;
    create_namespace(b.client(), "same-name").await;
    assert!(a.etcd_get("/registry/namespaces/same-name").await.unwrap().is_some());

    // Stopped by Drop: nothing survives and the directories are removed.
    let pids: Vec<u32> = a.started_pids().iter().chain(b.started_pids()).copied().collect();
    let dirs = [a.dir().to_path_buf(), b.dir().to_path_buf()];
    drop(a);
    drop(b);
    assert_all_gone(&pids);
    for dir in dirs {
        assert!(!dir.exists(), "{} was not removed", dir.display());
    }
}
