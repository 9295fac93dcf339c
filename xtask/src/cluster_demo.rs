//! `cargo xtask demo`: the main job. A local control plane whose Secrets are
//! encrypted at rest by the QubeSec KMS plugin, the operator reconciling the
//! samples in `deploy/samples/`, and a report proving the flows worked.
//!
//! Steps: build the binaries; create a software keystore and start
//! `qubesec-kms serve`; start etcd + kube-apiserver (with the plugin as its
//! encryption provider) + kube-controller-manager; install the CRDs; start
//! `qubesec-operator`; apply the samples; wait until every resource is Ready;
//! print each resource's fingerprint, the Alice/Bob key comparison, the
//! verification result, the certificate chain, and the raw etcd bytes of a
//! Secret. `--keep` leaves everything running until Ctrl-C.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use qubesec_testenv::ControlPlane;

use crate::util;

const FIELD_MANAGER: &str = "qubesec-demo";
const NAMESPACE: &str = "default";
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// A child process killed when dropped.
struct Guard(Child, &'static str);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    fn check(&mut self, log: &Path) -> anyhow::Result<()> {
        if let Some(status) = self.0.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(20).collect();
            bail!(
                "{} exited ({status}); last log lines:\n{}",
                self.1,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn(bin: &Path, args: &[&str], env: &[(&str, &Path)], log: &Path, name: &'static str) -> anyhow::Result<Guard> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(bin);
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Ok(Guard(cmd.spawn().with_context(|| format!("starting {}", bin.display()))?, name))
}

/// The demo's numbered steps: `[i/n] text (mm:ss since the demo started)`.
struct Progress {
    started: Instant,
    step: usize,
}

/// Steps `run` and `demo` announce: 2 builds, then 7 in the cluster.
const STEPS: usize = 9;

impl Progress {
    fn new() -> Self {
        Self { started: Instant::now(), step: 0 }
    }

    fn step(&mut self, text: &str) {
        self.step += 1;
        let secs = self.started.elapsed().as_secs();
        println!("\n== [{}/{STEPS}] {text}  ({}:{:02})", self.step, secs / 60, secs % 60);
        let _ = std::io::stdout().flush();
    }
}

/// One applied sample: its API resource and name.
struct Sample {
    ar: ApiResource,
    name: String,
}

pub(crate) fn run(keep: bool) -> anyhow::Result<()> {
    let mut progress = Progress::new();
    // Only what the demo runs: kubectl and helm (for the deployment tests) are not built here.
    progress.step(
        "Building etcd, kube-apiserver and kube-controller-manager from the Go module proxy \
         (first run only: about 20 min on 2 cores; cached in target/testenv)",
    );
    crate::testenv::gobuild::build(crate::testenv::gobuild::Set::ControlPlane, false)?;
    let go_built = progress.started.elapsed();
    progress.step("Building qubesec-kms, qubesec-operator and qubesec (cargo; first run only: a few minutes)");
    util::cargo(&["build", "-p", "qubesec-kms", "-p", "qubesec-operator", "-p", "qubesec-cli"])?;
    let built = progress.started.elapsed();
    let target = target_dir();
    let bin = |name: &str| target.join("debug").join(name);
    let dir = target.join("demo-cluster");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let bins = Binaries { kms: bin("qubesec-kms"), operator: bin("qubesec-operator"), cli: bin("qubesec") };
    runtime.block_on(demo(&dir, &bins, keep, &mut progress))?;
    let total = progress.started.elapsed();
    println!(
        "\ndemo passed in {} (Go builds {}, cargo build {}, the cluster part {})",
        mmss(total),
        mmss(go_built),
        mmss(built.saturating_sub(go_built)),
        mmss(total.saturating_sub(built)),
    );
    print_cache(&target);
    Ok(())
}

/// The project's binaries the demo runs.
struct Binaries {
    kms: PathBuf,
    operator: PathBuf,
    cli: PathBuf,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| util::root().join("target"))
}

fn mmss(d: Duration) -> String {
    let secs = d.as_secs();
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// What the next run reuses: the Go-built binaries and the cargo build, with their sizes.
fn print_cache(target: &Path) {
    let cache = qubesec_testenv::layout::cache_dir();
    println!("cached for the next run (which skips both builds):");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&cache)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir() && !p.ends_with("gomod")).collect())
        .unwrap_or_default();
    dirs.sort();
    for d in dirs {
        println!("  {:<60} {:>6} MiB", d.display(), dir_size(&d) / (1024 * 1024));
    }
    println!("  {:<60} {:>6} MiB", target.join("debug").display(), dir_size(&target.join("debug")) / (1024 * 1024));
    println!("  Go's module and build caches: `go env GOMODCACHE GOCACHE`");
}

/// Bytes under `path` (files only; symlinks not followed).
fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

async fn demo(dir: &Path, bins: &Binaries, keep: bool, progress: &mut Progress) -> anyhow::Result<()> {
    let (kms, operator, cli) = (bins.kms.as_path(), bins.operator.as_path(), bins.cli.as_path());
    let started = Instant::now();
    progress.step("KMS plugin: software keystore, then `qubesec-kms serve` on a unix socket");
    let keystore = dir.join("keystore");
    let master = dir.join("master.key");
    let socket = dir.join("kms").join("kms.sock");
    let s = |p: &Path| p.display().to_string();
    let init = Command::new(kms)
        .args(["keystore", "init", "--keystore", &s(&keystore), "--master-key-file", &s(&master)])
        .output()?;
    ensure!(init.status.success(), "keystore init failed: {}", String::from_utf8_lossy(&init.stderr));
    let kms_metrics = format!("127.0.0.1:{}", free_port()?);
    let kms_log = dir.join("kms.log");
    let mut plugin = spawn(
        kms,
        &[
            "serve",
            "--keystore",
            &s(&keystore),
            "--master-key-file",
            &s(&master),
            "--socket",
            &s(&socket),
            "--metrics-addr",
            &kms_metrics,
        ],
        &[],
        &kms_log,
        "qubesec-kms",
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        plugin.check(&kms_log)?;
        ensure!(Instant::now() < deadline, "the KMS plugin did not create {} within 30 s", socket.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = Command::new(kms).args(["status", "--socket", &s(&socket)]).output()?;
    ensure!(status.status.success(), "qubesec-kms status failed: {}", String::from_utf8_lossy(&status.stderr));
    print!("{}", String::from_utf8_lossy(&status.stdout));

    progress.step("Control plane: etcd, kube-apiserver (KMS v2 provider `qubesec`), kube-controller-manager");
    let enc = dir.join("encryption-config.yaml");
    std::fs::write(
        &enc,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - kms: {{apiVersion: v2, name: qubesec, endpoint: unix://{}, timeout: 3s}}\n      - identity: {{}}\n",
            socket.display()
        ),
    )?;
    let mut cp = ControlPlane::builder()
        .controller_manager(true)
        .apiserver_arg(format!("--encryption-provider-config={}", enc.display()))
        .keep_dir(keep)
        .start()
        .await
        .context("starting the control plane")?;
    println!("apiserver {} ready after {:.1} s", cp.apiserver_url(), started.elapsed().as_secs_f64());
    let client = cp.client();

    progress.step("CRDs from deploy/crds");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut crd_names = Vec::new();
    for path in sorted_yaml(&util::root().join("deploy/crds"))? {
        let crd: CustomResourceDefinition = serde_yaml::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("parsing {}", path.display()))?;
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        crds.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd)).await?;
        crd_names.push(name);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in &crd_names {
        loop {
            let crd = crds.get(name).await?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            ensure!(Instant::now() < deadline, "CRD {name} not established within 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    println!("{} CRDs established", crd_names.len());

    progress.step("Operator: `qubesec-operator` against the local apiserver");
    let op_log = dir.join("operator.log");
    let op_metrics = format!("127.0.0.1:{}", free_port()?);
    let mut op = spawn(
        operator,
        &["--metrics-addr", &op_metrics, "--leader-elect", "--lease-namespace", NAMESPACE],
        &[("KUBECONFIG", cp.kubeconfig_path())],
        &op_log,
        "qubesec-operator",
    )?;

    progress.step("Samples from deploy/samples");
    let samples = apply_samples(&client).await?;
    println!("applied {} resources", samples.len());

    progress.step("Waiting for every resource to be Ready");
    let statuses = wait_ready(&client, &samples, &mut op, &op_log, &mut plugin, &kms_log).await?;

    progress.step("Report");
    println!("{:<26} {:<20} {:<8} FINGERPRINT / RESULT", "KIND", "NAME", "READY");
    for (sample, status) in samples.iter().zip(&statuses) {
        let fp = status.get("fingerprint").or_else(|| status.get("result")).and_then(|v| v.as_str()).unwrap_or("-");
        println!("{:<26} {:<20} {:<8} {fp}", sample.ar.kind, sample.name, "True");
    }
    report(&client, &cp, dir, cli).await?;
    operator_report(&client, &op_metrics).await?;
    println!("\ncluster part passed in {:.0} s; logs and files in {}", started.elapsed().as_secs_f64(), dir.display());

    if keep {
        println!(
            "\nEverything keeps running. In another shell:\n  export KUBECONFIG={}\n  kubectl get qubesec",
            cp.kubeconfig_path().display()
        );
        println!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c().await?;
    }
    drop(op);
    cp.stop();
    drop(plugin);
    Ok(())
}

fn sorted_yaml(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

async fn apply_samples(client: &kube::Client) -> anyhow::Result<Vec<Sample>> {
    let mut out = Vec::new();
    for path in sorted_yaml(&util::root().join("deploy/samples"))? {
        let text = std::fs::read_to_string(&path)?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_json::to_value(serde_yaml::Value::deserialize(doc)?)?;
            if value.is_null() {
                continue;
            }
            let obj: DynamicObject =
                serde_json::from_value(value).with_context(|| format!("parsing {}", path.display()))?;
            let types = obj.types.clone().context("a sample without apiVersion/kind")?;
            let gvk = GroupVersionKind::try_from(&types)?;
            let ar = ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", gvk.kind.to_lowercase()));
            let name = obj.metadata.name.clone().context("a sample without a name")?;
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &ar);
            api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&obj))
                .await
                .with_context(|| format!("applying {} {name} from {}", gvk.kind, path.display()))?;
            out.push(Sample { ar, name });
        }
    }
    Ok(out)
}

fn is_ready(status: &serde_json::Value) -> bool {
    status["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

async fn wait_ready(
    client: &kube::Client,
    samples: &[Sample],
    op: &mut Guard,
    op_log: &Path,
    plugin: &mut Guard,
    kms_log: &Path,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let started = Instant::now();
    let mut last_ready = usize::MAX;
    loop {
        op.check(op_log)?;
        plugin.check(kms_log)?;
        let mut statuses = Vec::new();
        let mut waiting = Vec::new();
        for s in samples {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &s.ar);
            let status = api.get(&s.name).await?.data.get("status").cloned().unwrap_or_default();
            if !is_ready(&status) {
                waiting.push(s.name.as_str());
            }
            statuses.push(status);
        }
        let ready = samples.len() - waiting.len();
        if ready != last_ready {
            let rest = if waiting.is_empty() { String::new() } else { format!("  (waiting: {})", waiting.join(", ")) };
            println!("  {:>5.1} s  Ready {ready}/{}{rest}", started.elapsed().as_secs_f64(), samples.len());
            let _ = std::io::stdout().flush();
            last_ready = ready;
        }
        if waiting.is_empty() {
            return Ok(statuses);
        }
        if Instant::now() > deadline {
            let detail: BTreeMap<&str, String> = samples
                .iter()
                .zip(&statuses)
                .filter(|(s, _)| waiting.contains(&s.name.as_str()))
                .map(|(s, st)| (s.name.as_str(), st.to_string()))
                .collect();
            bail!("not Ready after {} s: {detail:#?}\noperator log: {}", READY_TIMEOUT.as_secs(), op_log.display());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn secret_bytes(client: &kube::Client, name: &str, key: &str) -> anyhow::Result<Vec<u8>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let secret = secrets.get(name).await.with_context(|| format!("reading Secret {name}"))?;
    let data = secret.data.unwrap_or_default();
    Ok(data.get(key).with_context(|| format!("Secret {name} has no key {key:?}"))?.0.clone())
}

async fn report(client: &kube::Client, cp: &ControlPlane, dir: &Path, cli: &Path) -> anyhow::Result<()> {
    println!("\n-- Key exchange (Alice: ML-KEM key pair + decapsulation; Bob: encapsulation; both: HKDF to AES-256)");
    let alice = secret_bytes(client, "alice-aes", "key").await?;
    let bob = secret_bytes(client, "bob-aes", "key").await?;
    ensure!(alice == bob, "Alice's and Bob's derived keys differ");
    ensure!(alice.len() == 32, "the derived AES-256 key is {} bytes", alice.len());
    let digest = qubesec_fingerprint(&alice);
    println!("alice-aes and bob-aes hold the same 32-byte AES-256 key (SHA-256 {digest}; the key itself is not shown)");

    println!("\n-- Signature verification");
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("qubesec.io", "v1", "QuantumVerifySignature"),
        "quantumverifysignatures",
    );
    let verify: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &ar);
    let result = verify.get("release-verify").await?.data["status"]["result"].as_str().unwrap_or("-").to_owned();
    ensure!(result == "Valid", "release-verify reports {result}");
    println!("release-verify: {result}");

    println!("\n-- Certificate chain (api-tls issued by demo-root-ca)");
    let crt = dir.join("api-tls.crt");
    let ca = dir.join("ca.crt");
    std::fs::write(&crt, secret_bytes(client, "api-tls", "tls.crt").await?)?;
    std::fs::write(&ca, secret_bytes(client, "api-tls", "ca.crt").await?)?;
    let show = Command::new(cli).args(["cert", "show"]).arg(&crt).output()?;
    print!("{}", String::from_utf8_lossy(&show.stdout));
    let verified = Command::new(cli)
        .args(["cert", "verify", "--ca"])
        .arg(&ca)
        .arg("--intermediate")
        .arg(&crt)
        .arg(&crt)
        .output()?;
    ensure!(verified.status.success(), "qubesec cert verify failed: {}", String::from_utf8_lossy(&verified.stderr));
    println!("qubesec cert verify --ca ca.crt tls.crt: {}", String::from_utf8_lossy(&verified.stdout).trim());

    println!("\n-- Encryption at rest (raw etcd bytes of Secret default/alice-aes)");
    let raw = cp.etcd_get("/registry/secrets/default/alice-aes").await?.context("Secret alice-aes not in etcd")?;
    const PREFIX: &[u8] = b"k8s:enc:kms:v2:qubesec:";
    ensure!(
        raw.starts_with(PREFIX),
        "the Secret is not encrypted by QubeSec's KMS plugin: {:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(40)])
    );
    ensure!(!raw.windows(alice.len()).any(|w| w == alice.as_slice()), "the derived key appears in etcd in plaintext");
    let shown: String =
        raw[..raw.len().min(48)].iter().map(|&b| if b.is_ascii_graphic() { char::from(b) } else { '.' }).collect();
    println!("{shown}...  ({} bytes; prefix k8s:enc:kms:v2:qubesec:, no plaintext key bytes)", raw.len());
    Ok(())
}

/// Rotation schedule, leader Lease and a few named metric series of the running operator.
async fn operator_report(client: &kube::Client, metrics_addr: &str) -> anyhow::Result<()> {
    println!("\n-- Rotation (alice-kem rotates every 720h, keeping 3 retired public keys)");
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("qubesec.io", "v1", "QuantumKEMKeyPair"),
        "quantumkemkeypairs",
    );
    let kp = Api::<DynamicObject>::namespaced_with(client.clone(), NAMESPACE, &ar).get("alice-kem").await?;
    let status = &kp.data["status"];
    let field = |k: &str| status[k].as_str().map_or_else(|| status[k].to_string(), str::to_owned);
    println!(
        "alice-kem: revision {}, created {}, next rotation {}",
        field("revision"),
        field("createdAt"),
        field("nextRotationTime")
    );

    println!("\n-- Operator (leader election and metrics)");
    let lease = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), NAMESPACE)
        .get("qubesec-operator")
        .await?;
    let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
    println!("Lease {NAMESPACE}/qubesec-operator held by {holder}");
    let text = http_get(metrics_addr, "/metrics").await?;
    let value = |series: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(series))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
    let expiry = value("qubesec_certificate_expiry_timestamp_seconds{namespace=\"default\",name=\"api-tls\"}");
    ensure!(expiry > now, "no certificate expiry series for api-tls in the operator's /metrics");
    println!("qubesec_reconciles_total (all kinds and outcomes): {}", value("qubesec_reconciles_total{kind=") as u64);
    println!(
        "qubesec_crypto_operation_duration_seconds: {} operations timed",
        value("qubesec_crypto_operation_duration_seconds_count") as u64
    );
    println!(
        "qubesec_certificate_expiry_timestamp_seconds{{name=\"api-tls\"}}: in {:.0} days",
        (expiry - now) / 86400.0
    );
    println!("qubesec_leader: {}", value("qubesec_leader"));
    Ok(())
}

/// `GET path` over plain HTTP/1.1; the body of a 200 answer.
async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    let (head, body) = buf.split_once("\r\n\r\n").context("malformed HTTP answer")?;
    ensure!(head.starts_with("HTTP/1.1 200"), "GET {path}: {}", head.lines().next().unwrap_or_default());
    Ok(body.to_owned())
}

/// `sha256:<hex>` of some bytes, the project's fingerprint notation.
fn qubesec_fingerprint(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

use serde::Deserialize as _;
