//! `cargo xtask bench operator`: the operator at scale on a real control plane.
//!
//! Phase A: a fresh control plane, the release-built operator as a separate process, then
//! 1,000 `QuantumKEMKeyPair` and 200 `QuantumCertificate` (issued by one CA) created at once;
//! measured: time until all are Ready, reconciles per second, API requests per resource (the
//! operator's own `qubesec_kube_requests_total`), peak RSS and CPU time of the operator process.
//! Then an idle period (5 minutes by default): writes by the operator, counted by the operator
//! and, independently, by the API server's `apiserver_request_total`, must stay at zero.
//!
//! Phase B: a second control plane holding 5,000 unrelated Secrets of 100 KiB before the
//! operator starts; the same workload. The operator's memory must not grow with the Secrets
//! (it never lists them: its watches are label-selected).
//!
//! Numbers go to stdout as a Markdown table for docs/benchmarks.md. Nothing is asserted about
//! speed; the run fails only if something never becomes Ready.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use qubesec_testenv::ControlPlane;
use serde_json::json;

use crate::cluster_demo::{Guard, free_port, http_get, install_crds, spawn};
use crate::util;

/// The sizes of one run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    /// `QuantumKEMKeyPair`s.
    pub(crate) key_pairs: usize,
    /// Leaf `QuantumCertificate`s (plus one CA).
    pub(crate) certificates: usize,
    /// Unrelated Secrets in phase B.
    pub(crate) noise: usize,
    /// Bytes per unrelated Secret.
    pub(crate) noise_bytes: usize,
    /// Idle seconds after phase A.
    pub(crate) idle: u64,
}

impl Sizes {
    /// The sizes: 1,000 + 200, 5,000 × 100 KiB, 5 minutes idle.
    pub(crate) fn full() -> Self {
        Self { key_pairs: 1000, certificates: 200, noise: 5000, noise_bytes: 100 * 1024, idle: 300 }
    }

    /// A smoke run: a tenth of everything, 30 s idle.
    pub(crate) fn quick() -> Self {
        Self { key_pairs: 100, certificates: 20, noise: 500, noise_bytes: 100 * 1024, idle: 30 }
    }
}

const NS: &str = "bench";
const WAIT: Duration = Duration::from_secs(900);

/// What one phase measured.
#[derive(Debug, Default)]
struct Measured {
    ready_after: Duration,
    reconciles: f64,
    requests: BTreeMap<String, f64>,
    peak_rss_kib: u64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    cpu_seconds: f64,
    idle: Option<Idle>,
}

#[derive(Debug, Default)]
struct Idle {
    seconds: u64,
    operator_writes: f64,
    apiserver_writes: f64,
    reconciles: f64,
    rss_kib: u64,
}

pub(crate) fn run(sizes: Sizes) -> anyhow::Result<()> {
    crate::testenv::run(crate::testenv::Command::Build { force: false })?;
    util::cargo(&["build", "--release", "--quiet", "-p", "qubesec-operator", "--bin", "qubesec-operator"])?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| util::root().join("target"));
    let operator = target.join("release").join("qubesec-operator");
    let dir = target.join("bench-operator");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let a = runtime.block_on(phase(&dir.join("a"), &operator, sizes, false))?;
    let b = runtime.block_on(phase(&dir.join("b"), &operator, sizes, true))?;
    report(sizes, &a, &b);
    Ok(())
}

async fn phase(dir: &Path, operator: &Path, sizes: Sizes, noise: bool) -> anyhow::Result<Measured> {
    std::fs::create_dir_all(dir)?;
    let name = if noise { "B (with unrelated Secrets)" } else { "A" };
    println!("\n== phase {name}: control plane");
    let cp = ControlPlane::builder().start().await.context("starting the control plane")?;
    let client = cp.client();
    install_crds(&client).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [NS, "noise"] {
        let obj =
            Namespace { metadata: ObjectMeta { name: Some(ns.into()), ..ObjectMeta::default() }, ..Default::default() };
        namespaces.create(&PostParams::default(), &obj).await?;
    }
    if noise {
        let started = Instant::now();
        create_noise(&client, sizes).await?;
        println!(
            "{} unrelated Secrets of {} KiB in {:.1} s",
            sizes.noise,
            sizes.noise_bytes / 1024,
            started.elapsed().as_secs_f64()
        );
    }
    let log = dir.join("operator.log");
    let metrics = format!("127.0.0.1:{}", free_port()?);
    let kubeconfig = cp.kubeconfig_path().to_path_buf();
    let mut op =
        spawn(operator, &["--metrics-addr", &metrics], &[("KUBECONFIG", &kubeconfig)], &log, "qubesec-operator")?;
    wait_ready_endpoint(&metrics, &mut op, &log).await?;
    // Let it list everything once (with noise, this is where a Secret-watching operator would grow).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = op.0.id();
    let rss_before_kib = proc_status(pid, "VmRSS")?;
    println!("operator up, RSS {} MiB", rss_before_kib / 1024);

    println!("creating 1 CA, {} key pairs and {} certificates", sizes.key_pairs, sizes.certificates);
    let cpu_before = cpu_seconds(pid)?;
    let started = Instant::now();
    create_workload(&client, sizes).await?;
    let created = started.elapsed();
    let mut peak = 0;
    let total = sizes.key_pairs + sizes.certificates + 1;
    let mut last_print = Instant::now();
    loop {
        op.check(&log)?;
        peak = peak.max(proc_status(pid, "VmRSS")?);
        let ready = count_ready(&client).await?;
        if ready == total {
            break;
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            println!("  {:>6.1} s  Ready {ready}/{total}", started.elapsed().as_secs_f64());
            last_print = Instant::now();
        }
        ensure!(started.elapsed() < WAIT, "only {ready}/{total} Ready after {WAIT:?}; see {}", log.display());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ready_after = started.elapsed();
    println!("all {total} Ready after {:.1} s (created in {:.1} s)", ready_after.as_secs_f64(), created.as_secs_f64());
    let cpu_seconds = cpu_seconds(pid)? - cpu_before;
    let text = http_get(&metrics, "/metrics").await?;
    let reconciles = sum(&text, "qubesec_reconciles_total", None);
    let mut requests = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("qubesec_kube_requests_total{")) {
        let verb = label(line, "verb").unwrap_or_default();
        let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        *requests.entry(verb).or_insert(0.0) += value;
    }
    let mut measured = Measured {
        ready_after,
        reconciles,
        requests,
        peak_rss_kib: proc_status(pid, "VmHWM")?.max(peak),
        rss_before_kib,
        rss_after_kib: proc_status(pid, "VmRSS")?,
        cpu_seconds,
        idle: None,
    };
    if !noise {
        measured.idle = Some(idle(&client, &metrics, pid, sizes.idle, &mut op, &log).await?);
    }
    drop(op);
    drop(cp);
    Ok(measured)
}

async fn wait_ready_endpoint(metrics: &str, op: &mut Guard, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(metrics, "/readyz").await.is_err() {
        op.check(log)?;
        ensure!(Instant::now() < deadline, "the operator did not become ready; see {}", log.display());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn api(client: &kube::Client, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), NS, &ApiResource::from_gvk(&GroupVersionKind::gvk("qubesec.io", "v1", kind)))
}

fn manifest(kind: &str, name: &str, spec: serde_json::Value) -> anyhow::Result<DynamicObject> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "qubesec.io/v1", "kind": kind, "metadata": {"name": name, "namespace": NS}, "spec": spec
    }))?)
}

/// Creates the CA, the key pairs and the leaf certificates, 32 requests at a time.
async fn create_workload(client: &kube::Client, sizes: Sizes) -> anyhow::Result<()> {
    let mut objects = vec![(
        "QuantumCertificate",
        manifest(
            "QuantumCertificate",
            "bench-ca",
            json!({"subject": "CN=Bench CA", "isCA": true, "duration": "8760h"}),
        )?,
    )];
    for i in 0..sizes.key_pairs {
        objects.push((
            "QuantumKEMKeyPair",
            manifest("QuantumKEMKeyPair", &format!("kem-{i:04}"), json!({"algorithm": "ML-KEM-768"}))?,
        ));
    }
    for i in 0..sizes.certificates {
        let spec = json!({"subject": format!("CN=leaf-{i}"), "dnsNames": [format!("leaf-{i}.bench.svc")], "issuerRef": {"name": "bench-ca"}});
        objects.push(("QuantumCertificate", manifest("QuantumCertificate", &format!("leaf-{i:03}"), spec)?));
    }
    futures::stream::iter(objects)
        .map(|(kind, obj)| async move { api(client, kind).create(&PostParams::default(), &obj).await.map(|_| ()) })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// 5,000 (or fewer) Secrets of 100 KiB of pseudo-random data, unlabelled, 16 at a time.
async fn create_noise(client: &kube::Client, sizes: Sizes) -> anyhow::Result<()> {
    use sha2::Digest as _;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "noise");
    let mut block = Vec::with_capacity(sizes.noise_bytes + 32);
    let mut h = sha2::Sha256::digest(b"qubesec bench noise").to_vec();
    while block.len() < sizes.noise_bytes {
        h = sha2::Sha256::digest(&h).to_vec();
        block.extend_from_slice(&h);
    }
    block.truncate(sizes.noise_bytes);
    futures::stream::iter(0..sizes.noise)
        .map(|i| {
            let mut data = block.clone();
            data[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let secret = Secret {
                metadata: ObjectMeta { name: Some(format!("release-{i:05}")), ..ObjectMeta::default() },
                data: Some(BTreeMap::from([("release".to_owned(), k8s_openapi::ByteString(data))])),
                ..Secret::default()
            };
            let secrets = secrets.clone();
            async move { secrets.create(&PostParams::default(), &secret).await.map(|_| ()) }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn count_ready(client: &kube::Client) -> anyhow::Result<usize> {
    let mut ready = 0;
    for kind in ["QuantumKEMKeyPair", "QuantumCertificate"] {
        let list = api(client, kind).list(&ListParams::default()).await?;
        ready += list
            .items
            .iter()
            .filter(|o| {
                o.data["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["type"] == "Ready"
                            && c["status"] == "True"
                            && c["observedGeneration"].as_i64() == o.metadata.generation
                    })
                })
            })
            .count();
    }
    Ok(ready)
}

/// Waits `seconds` and counts what the operator writes meanwhile: by its own counters and by the
/// API server's (writes to Secrets, ConfigMaps, Events and qubesec.io resources by anyone).
async fn idle(
    client: &kube::Client,
    metrics: &str,
    pid: u32,
    seconds: u64,
    op: &mut Guard,
    log: &Path,
) -> anyhow::Result<Idle> {
    println!("idle for {seconds} s, counting writes");
    let op_writes = |text: &str| -> f64 {
        ["create", "update", "patch", "delete"]
            .iter()
            .map(|v| sum(text, "qubesec_kube_requests_total", Some(("verb", v))))
            .sum()
    };
    let before = http_get(metrics, "/metrics").await?;
    let server_before = apiserver_writes(client).await?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        op.check(log)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let after = http_get(metrics, "/metrics").await?;
    let server_after = apiserver_writes(client).await?;
    Ok(Idle {
        seconds,
        operator_writes: op_writes(&after) - op_writes(&before),
        apiserver_writes: server_after - server_before,
        reconciles: sum(&after, "qubesec_reconciles_total", None) - sum(&before, "qubesec_reconciles_total", None),
        rss_kib: proc_status(pid, "VmRSS")?,
    })
}

/// Writes the API server has served to Secrets, ConfigMaps, Events and qubesec.io resources.
async fn apiserver_writes(client: &kube::Client) -> anyhow::Result<f64> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    let mut total = 0.0;
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let verb = label(line, "verb").unwrap_or_default();
        let resource = label(line, "resource").unwrap_or_default();
        let group = label(line, "group").unwrap_or_default();
        let write = ["POST", "PUT", "PATCH", "APPLY", "DELETE"].contains(&verb.as_str());
        let ours = ["secrets", "configmaps", "events"].contains(&resource.as_str()) || group == "qubesec.io";
        if write && ours {
            total += line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        }
    }
    Ok(total)
}

/// The value of label `name` in a Prometheus text line.
fn label(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &line[start..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// The sum of series `metric` (optionally with one label value) in a Prometheus exposition.
fn sum(text: &str, metric: &str, with: Option<(&str, &str)>) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .filter(|l| with.is_none_or(|(k, v)| label(l, k).as_deref() == Some(v)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
fn proc_status(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = text.lines().find(|l| l.starts_with(&format!("{field}:"))).context("no such field")?;
    Ok(line.split_whitespace().nth(1).context("malformed")?.parse()?)
}

/// User + system CPU time of a process, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = &text[text.rfind(')').context("malformed stat")? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields.get(11).context("utime")?.parse::<f64>()? + fields.get(12).context("stime")?.parse::<f64>()?;
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    if hz <= 0.0 {
        bail!("bad CLK_TCK");
    }
    Ok(ticks / hz)
}

fn report(sizes: Sizes, a: &Measured, b: &Measured) {
    let resources = (sizes.key_pairs + sizes.certificates + 1) as f64;
    let mib = |k: u64| k as f64 / 1024.0;
    let requests = |m: &Measured| {
        let total: f64 = m.requests.values().sum();
        let detail: Vec<String> = m.requests.iter().map(|(v, n)| format!("{v} {n:.0}")).collect();
        format!("{:.2} ({})", total / resources, detail.join(", "))
    };
    println!("\n== results (machine: {} CPUs)", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!(
        "\n| | phase A | phase B ({} unrelated Secrets of {} KiB) |\n|---|---|---|",
        sizes.noise,
        sizes.noise_bytes / 1024
    );
    println!("| resources | {} key pairs + {} certificates + 1 CA | same |", sizes.key_pairs, sizes.certificates);
    println!("| all Ready after | {:.1} s | {:.1} s |", a.ready_after.as_secs_f64(), b.ready_after.as_secs_f64());
    println!(
        "| reconciles (per second) | {:.0} ({:.0}/s) | {:.0} ({:.0}/s) |",
        a.reconciles,
        a.reconciles / a.ready_after.as_secs_f64(),
        b.reconciles,
        b.reconciles / b.ready_after.as_secs_f64()
    );
    println!("| API requests per resource (by verb) | {} | {} |", requests(a), requests(b));
    println!(
        "| operator RSS before the workload | {:.1} MiB | {:.1} MiB |",
        mib(a.rss_before_kib),
        mib(b.rss_before_kib)
    );
    println!("| operator peak RSS | {:.1} MiB | {:.1} MiB |", mib(a.peak_rss_kib), mib(b.peak_rss_kib));
    println!("| operator RSS when all Ready | {:.1} MiB | {:.1} MiB |", mib(a.rss_after_kib), mib(b.rss_after_kib));
    println!("| operator CPU time | {:.1} s | {:.1} s |", a.cpu_seconds, b.cpu_seconds);
    if let Some(i) = &a.idle {
        println!(
            "\nidle {} s after phase A: {} writes by the operator (its counters), {} writes to Secrets/ConfigMaps/Events/qubesec.io (apiserver_request_total), {} reconciles, RSS {:.1} MiB",
            i.seconds,
            i.operator_writes,
            i.apiserver_writes,
            i.reconciles,
            mib(i.rss_kib)
        );
    }
}
