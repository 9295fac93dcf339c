//! End to end on a real etcd + kube-apiserver + kube-controller-manager: the
//! operator runs in-process on the test's runtime, the samples are applied,
//! and the flows, admission validation, ownership, idempotency across
//! restarts, regeneration and garbage collection are checked.
//!
//! Needs the control-plane binaries (`cargo xtask testenv build`, or
//! `QUBESEC_TESTENV_DIR`); without them the test fails, it never skips.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, ResourceExt};
use qubesec_core::x509::{Certificate, verify_chain};
use qubesec_core::x509::{ChainOptions, ExtendedKeyUsage, verify_chain_with};
use qubesec_operator::crd::{
    CommonStatus, QuantumCertificate, QuantumDecapsulateSecret, QuantumDerivedKey, QuantumEncapsulateSecret,
    QuantumKEMKeyPair, QuantumRandomNumber, QuantumSignMessage, QuantumVerifySignature, VerifyResult, is_ready,
};
use qubesec_operator::leader::{LeaderElector, LeaseConfig};
use qubesec_operator::{Config, Context};
use qubesec_testenv::ControlPlane;
use serde::Deserialize;
use serde_json::json;
use support::{Requests, TIMEOUT, impersonating, recorded_client, wait_for};
use tokio::task::JoinHandle;

const NS: &str = "demo";

fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/samples")
}

fn api_resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("qubesec.io", "v1", kind))
}

fn dynamic(client: &Client, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), NS, &api_resource(kind))
}

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in qubesec_operator::crd::all() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(&name, &PatchParams::apply("e2e").force(), &Patch::Apply(&crd)).await.unwrap();
        tokio::time::timeout(TIMEOUT, await_condition(crds.clone(), &name, conditions::is_crd_established()))
            .await
            .unwrap()
            .unwrap();
    }
}

/// Every document of every sample file, in file order.
fn samples() -> Vec<serde_json::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(samples_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            docs.push(serde_json::Value::deserialize(doc).unwrap());
        }
    }
    docs
}

async fn apply_samples(client: &Client) -> Vec<(String, String)> {
    let mut applied = Vec::new();
    for doc in samples() {
        let kind = doc["kind"].as_str().unwrap().to_owned();
        let obj: DynamicObject = serde_json::from_value(doc).unwrap();
        let name = obj.name_any();
        dynamic(client, &kind).patch(&name, &PatchParams::apply("e2e"), &Patch::Apply(&obj)).await.unwrap();
        applied.push((kind, name));
    }
    applied
}

/// Applies the cluster-wide RBAC of `deploy/kustomize/`: the operator's ClusterRole and its binding
/// (`components/cluster-wide/rbac.yaml`), and the leader-election Role and RoleBinding in
/// `qubesec-system` (`base/leader-election.yaml`).
async fn apply_rbac(client: &Client) {
    let kustomize = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kustomize");
    let text = ["components/cluster-wide/rbac.yaml", "base/leader-election.yaml"]
        .map(|file| std::fs::read_to_string(kustomize.join(file)).unwrap())
        .join("\n---\n");
    let pp = PatchParams::apply("e2e");
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = serde_json::Value::deserialize(doc).unwrap();
        let name = v["metadata"]["name"].as_str().unwrap().to_owned();
        match v["kind"].as_str().unwrap() {
            "ClusterRole" => {
                let o: ClusterRole = serde_json::from_value(v).unwrap();
                Api::<ClusterRole>::all(client.clone()).patch(&name, &pp, &Patch::Apply(&o)).await.unwrap();
            }
            "ClusterRoleBinding" => {
                let o: ClusterRoleBinding = serde_json::from_value(v).unwrap();
                Api::<ClusterRoleBinding>::all(client.clone()).patch(&name, &pp, &Patch::Apply(&o)).await.unwrap();
            }
            "Role" => {
                let o: Role = serde_json::from_value(v).unwrap();
                let ns = o.metadata.namespace.clone().unwrap();
                Api::<Role>::namespaced(client.clone(), &ns).patch(&name, &pp, &Patch::Apply(&o)).await.unwrap();
            }
            "RoleBinding" => {
                let o: RoleBinding = serde_json::from_value(v).unwrap();
                let ns = o.metadata.namespace.clone().unwrap();
                Api::<RoleBinding>::namespaced(client.clone(), &ns).patch(&name, &pp, &Patch::Apply(&o)).await.unwrap();
            }
            other => panic!("unexpected kind {other} in the RBAC manifests"),
        }
    }
}

/// A client that acts as the operator's ServiceAccount, so the operator runs with exactly the
/// permissions the cluster-wide RBAC in `deploy/kustomize/` grants (see [`apply_rbac`]).
async fn operator_client(cp: &ControlPlane) -> Client {
    impersonating(cp, "system:serviceaccount:qubesec-system:qubesec-operator").await
}

/// A control plane (without kube-controller-manager) with the CRDs, the test namespaces and the
/// operator's RBAC; returns it, an admin client and a client acting as the operator.
async fn cluster_with_operator_rbac() -> (ControlPlane, Client, Client) {
    let cp = ControlPlane::builder().start().await.unwrap();
    let client = cp.client();
    install_crds(&client).await;
    create_namespaces(&client).await;
    apply_rbac(&client).await;
    let sa_client = operator_client(&cp).await;
    (cp, client, sa_client)
}

async fn create_namespaces(client: &Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in [NS, "qubesec-system"] {
        let ns = Namespace {
            metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
            ..Namespace::default()
        };
        namespaces.create(&PostParams::default(), &ns).await.unwrap();
    }
}

/// The operator as its ServiceAccount, with a client that counts and records its requests.
async fn start_operator(cp: &ControlPlane) -> (JoinHandle<()>, Arc<Context>, Requests) {
    let metrics = qubesec_operator::Metrics::new();
    let (client, requests) =
        recorded_client(cp, "system:serviceaccount:qubesec-system:qubesec-operator", &metrics).await;
    let ctx = Context::with_metrics(client, Config::default(), metrics);
    (tokio::spawn(qubesec_operator::controllers::run(ctx.clone())), ctx, requests)
}

/// Writes (`create`, `update`, `patch`) the operator's client made, by resource.
fn writes(ctx: &Context) -> f64 {
    ["create", "update", "patch"].iter().map(|v| ctx.metrics.requests(v) as f64).sum()
}

fn ready_dyn(o: &DynamicObject) -> bool {
    let common: Option<CommonStatus> = o.data.get("status").and_then(|s| serde_json::from_value(s.clone()).ok());
    is_ready(common.as_ref(), o.metadata.generation)
}

fn secret_bytes(s: &Secret, key: &str) -> Vec<u8> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .unwrap_or_else(|| panic!("no {key} in {}", s.name_any()))
}

/// `(kind/name, status.fingerprint)` of every sample resource.
async fn fingerprints(client: &Client, applied: &[(String, String)]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (kind, name) in applied {
        let o = dynamic(client, kind).get(name).await.unwrap();
        let status = &o.data["status"];
        // Verifications record the key's fingerprint; everything else its output's.
        let fp = status["fingerprint"].as_str().or(status["keyFingerprint"].as_str()).unwrap_or_default().to_owned();
        out.insert(format!("{kind}/{name}"), fp);
    }
    out
}

async fn expect_rejected(client: &Client, kind: &str, body: serde_json::Value, field: &str) -> String {
    let obj: DynamicObject = serde_json::from_value(body).unwrap();
    let err = dynamic(client, kind).create(&PostParams::default(), &obj).await.expect_err("apiserver accepted it");
    let msg = err.to_string();
    assert!(msg.contains(field), "rejection of {kind} does not name {field}: {msg}");
    eprintln!("e2e: rejected {kind}: {msg}");
    msg
}

fn manifest(kind: &str, name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({ "apiVersion": "qubesec.io/v1", "kind": kind, "metadata": { "name": name, "namespace": NS }, "spec": spec })
}

/// Python `cryptography` (>= 48) parses the leaf and verifies its signature with the CA's key.
/// Fails (never skips) when python3 or cryptography is missing, like the CLI's interop tests.
fn pyca_verifies(leaf_pem: &[u8], ca: &Certificate) {
    const SCRIPT: &str = r#"
import sys
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_der_public_key
leaf = x509.load_pem_x509_certificate(sys.stdin.buffer.read())
ca_key = load_der_public_key(bytes.fromhex(sys.argv[1]))
ca_key.verify(leaf.signature, leaf.tbs_certificate_bytes)
assert leaf.issuer.rfc4514_string() == sys.argv[2], leaf.issuer.rfc4514_string()
san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
print(",".join(san.get_values_for_type(x509.DNSName)))
"#;
    use std::io::Write as _;
    let python = std::env::var("QUBESEC_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut child = std::process::Command::new(&python)
        .args(["-c", SCRIPT, &hex::encode(ca.public_key_spki_der()), &ca.subject()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} (needs Python 3 with cryptography >= 48): {e}"));
    child.stdin.take().unwrap().write_all(leaf_pem).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "Python cryptography rejected the leaf: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "api.example.com");
}

/// `GET path` from an HTTP endpoint: (status line, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// Serves the operator's `/metrics`, `/healthz` and `/readyz` on an ephemeral port.
async fn serve_http(ctx: &Arc<Context>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(qubesec_operator::http::serve(listener, ctx.clone(), std::future::pending()));
    addr
}

/// The value of the series `name` whose labels include every `labels` pair, from an exposition.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, label_text) = series.split_once('{').map_or((series, ""), |(m, l)| (m, l.trim_end_matches('}')));
        let wanted = labels.iter().all(|(k, v)| label_text.split(',').any(|p| p == format!("{k}=\"{v}\"")));
        (metric == name && wanted).then(|| value.parse().ok()).flatten()
    })
}

fn unix(rfc3339: &str) -> f64 {
    rfc3339.parse::<jiff::Timestamp>().unwrap().as_second() as f64
}

fn now_unix() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

fn step(t: &mut Instant, what: &str) {
    eprintln!("e2e: {what}: {:.1} s", t.elapsed().as_secs_f64());
    *t = Instant::now();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_flows_validation_restart_regeneration_and_gc() {
    let total = Instant::now();
    let mut t = Instant::now();
    let cp = ControlPlane::builder().controller_manager(true).start().await.unwrap();
    let client = cp.client();
    step(&mut t, "control plane up");
    install_crds(&client).await;
    create_namespaces(&client).await;
    step(&mut t, "CRDs established");

    // 1. The samples all become Ready, with the operator holding only its RBAC permissions.
    apply_rbac(&client).await;
    let sa_client = operator_client(&cp).await;
    let denied = Api::<Namespace>::all(sa_client.clone()).list(&ListParams::default()).await;
    assert!(denied.is_err(), "the impersonated operator client is not restricted");
    let (operator, first_ctx, first_requests) = start_operator(&cp).await;
    let metrics_addr = serve_http(&first_ctx).await;
    let applied = apply_samples(&client).await;
    assert_eq!(applied.len(), 14, "{applied:?}");
    for (kind, name) in &applied {
        wait_for(&dynamic(&client, kind), name, "Ready", ready_dyn).await;
    }
    step(&mut t, "all 14 sample resources Ready");

    // 2. Key exchange: both sides hold the same AES-256 key.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let alice = secret_bytes(&secrets.get("alice-aes").await.unwrap(), "key");
    let bob = secret_bytes(&secrets.get("bob-aes").await.unwrap(), "key");
    assert_eq!(alice.len(), 32);
    assert_eq!(alice, bob, "the two derived AES-256 keys differ");
    // The same salt and info given as base64 (`saltBase64`, `infoBase64`: binary HKDF inputs)
    // derive the same key.
    let b64 = |text: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text);
    let binary: QuantumDerivedKey = serde_json::from_value(manifest(
        "QuantumDerivedKey",
        "alice-aes-binary",
        json!({
            "sharedSecretRef": {"name": "alice-decap", "key": "shared_secret"},
            "saltBase64": b64("qubesec-demo"),
            "infoBase64": b64("alice-bob session key v1"),
        }),
    ))
    .unwrap();
    let derived_keys: Api<QuantumDerivedKey> = Api::namespaced(client.clone(), NS);
    derived_keys.create(&PostParams::default(), &binary).await.unwrap();
    wait_for(&derived_keys, "alice-aes-binary", "Ready", |d| {
        is_ready(d.status.as_ref().map(|s| &s.common), d.metadata.generation)
    })
    .await;
    let from_base64 = secret_bytes(&secrets.get("alice-aes-binary").await.unwrap(), "key");
    assert_eq!(from_base64, alice, "saltBase64/infoBase64 derived another key than salt/info");
    derived_keys.delete("alice-aes-binary", &DeleteParams::default()).await.unwrap();
    let encap: Api<QuantumEncapsulateSecret> = Api::namespaced(client.clone(), NS);
    let decap: Api<QuantumDecapsulateSecret> = Api::namespaced(client.clone(), NS);
    let e_fp = encap.get("bob-encap").await.unwrap().status.unwrap().output.fingerprint.unwrap();
    let d_fp = decap.get("alice-decap").await.unwrap().status.unwrap().output.fingerprint.unwrap();
    assert_eq!(e_fp, d_fp, "decapsulated shared secret fingerprint differs from the encapsulated one");
    let kem_secret = secrets.get("alice-kem").await.unwrap();
    let owner = &kem_secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("QuantumKEMKeyPair", Some(true)));
    let labels = kem_secret.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "qubesec");
    assert_eq!(labels["qubesec.io/owner-kind"], "QuantumKEMKeyPair");
    let meta: serde_json::Value = serde_json::from_slice(&secret_bytes(&kem_secret, "metadata")).unwrap();
    assert_eq!(meta["algorithm"], "ML-KEM-768");
    let kp: Api<QuantumKEMKeyPair> = Api::namespaced(client.clone(), NS);
    let kp_status = kp.get("alice-kem").await.unwrap().status.unwrap();
    assert_eq!(meta["fingerprint"], kp_status.output.fingerprint.clone().unwrap());
    assert_eq!(kp_status.output.short_fingerprint.unwrap().len(), 10);
    let seed = secret_bytes(&kem_secret, "private_key");
    assert_eq!(seed.len(), 64, "the raw private key is the 64-byte ML-KEM seed");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let pub_cm = cms.get("alice-kem").await.unwrap();
    assert!(pub_cm.data.unwrap()["public_key.pem"].starts_with("-----BEGIN PUBLIC KEY-----"));

    // 3. The leaf certificate chains to the CA.
    let tls = secrets.get("api-tls").await.unwrap();
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
    let chain = Certificate::chain_from_pem(&secret_bytes(&tls, "tls.crt")).unwrap();
    let ca = Certificate::from_pem(&secret_bytes(&tls, "ca.crt")).unwrap();
    assert_eq!(chain.len(), 2, "tls.crt holds the leaf and the CA");
    let path = verify_chain(&chain[0], &chain[1..], std::slice::from_ref(&ca), SystemTime::now()).unwrap();
    assert_eq!(path.len(), 2);
    assert!(chain[0].matches_host("api.example.com"));
    assert!(String::from_utf8(secret_bytes(&tls, "tls.key")).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
    pyca_verifies(&secret_bytes(&tls, "tls.crt"), &ca);
    let certs: Api<QuantumCertificate> = Api::namespaced(client.clone(), NS);
    let cert_status = certs.get("api-tls").await.unwrap().status.unwrap();
    assert_eq!(cert_status.serial_number.unwrap(), chain[0].serial_hex());
    assert!(cert_status.renewal_time.is_some() && cert_status.not_after.is_some());
    // The kubernetes.io/tls Secret carries the `metadata` key every output has.
    let tls_meta: serde_json::Value = serde_json::from_slice(&secret_bytes(&tls, "metadata")).unwrap();
    assert_eq!(tls_meta["certificateFingerprint"], chain[0].fingerprint().to_string());
    assert_eq!(tls_meta["fingerprint"], chain[0].key_fingerprint().to_string());
    assert_eq!(tls_meta["serialNumber"], chain[0].serial_hex());
    // verify_chain honours the extended key usage when asked: the leaf is for servers only.
    let server = ChainOptions::default().purpose(ExtendedKeyUsage::ServerAuth);
    verify_chain_with(&chain[0], &chain[1..], std::slice::from_ref(&ca), SystemTime::now(), &server).unwrap();
    let client_auth = ChainOptions::default().purpose(ExtendedKeyUsage::ClientAuth);
    let err = verify_chain_with(&chain[0], &chain[1..], std::slice::from_ref(&ca), SystemTime::now(), &client_auth)
        .unwrap_err();
    assert!(err.to_string().contains("clientAuth"), "{err}");
    // SLH-DSA-SHA2-256f: the key pair, a 49 856-byte signature and its verification (crypto threads).
    let slh_sig = cms.get("firmware-signature").await.unwrap().binary_data.unwrap()["signature"].0.clone();
    assert_eq!(slh_sig.len(), 49_856);
    let verify: Api<QuantumVerifySignature> = Api::namespaced(client.clone(), NS);
    let slh = verify.get("firmware-verify").await.unwrap().status.unwrap();
    assert_eq!((slh.result, slh.algorithm.as_deref()), (Some(VerifyResult::Valid), Some("SLH-DSA-SHA2-256f")));
    step(&mut t, "key exchange and certificate checks");

    // 3a. The metrics after the sample flows: every kind reconciled, every crypto operation timed,
    // certificate expiry/renewal and key creation timestamps matching the statuses.
    let cross: QuantumEncapsulateSecret = serde_json::from_value(manifest(
        "QuantumEncapsulateSecret",
        "cross-ns",
        json!({"publicKeyRef": {"kind": "QuantumKEMKeyPair", "name": "alice-kem", "namespace": "qubesec-system"}}),
    ))
    .unwrap();
    encap.create(&PostParams::default(), &cross).await.unwrap();
    wait_for(&encap, "cross-ns", "Failed", |e| {
        e.status.as_ref().and_then(|s| s.common.ready()).is_some_and(|c| c.reason == "CrossNamespaceRefDenied")
    })
    .await;
    encap.delete("cross-ns", &DeleteParams::default()).await.unwrap();
    assert_eq!(http_get(metrics_addr, "/healthz").await.0, "HTTP/1.1 200 OK");
    assert_eq!(http_get(metrics_addr, "/readyz").await.0, "HTTP/1.1 200 OK");
    let (code, text) = http_get(metrics_addr, "/metrics").await;
    assert_eq!(code, "HTTP/1.1 200 OK");
    let get = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in /metrics:\n{text}"))
    };
    for kind in [
        "kemkeypair",
        "signaturekeypair",
        "randomnumber",
        "encapsulatesecret",
        "decapsulatesecret",
        "derivedkey",
        "signmessage",
        "verifysignature",
        "certificate",
    ] {
        let ok = get("qubesec_reconciles_total", &[("kind", kind), ("outcome", "success")]);
        assert!(ok >= 1.0, "{kind}: {ok} successful reconciles");
        let n = get("qubesec_reconcile_duration_seconds_count", &[("kind", kind)]);
        let sum = get("qubesec_reconcile_duration_seconds_sum", &[("kind", kind)]);
        assert!(n >= ok && sum > 0.0 && sum / n < 30.0, "{kind}: {n} reconciles took {sum} s in all");
    }
    let errors = get("qubesec_reconcile_errors_total", &[("kind", "encapsulatesecret"), ("category", "user")]);
    assert!(errors >= 1.0, "the cross-namespace reference was not counted as a user error");
    for (operation, algorithm, exactly) in [
        ("keygen", "ML-KEM-768", Some(1.0)),
        // The CA's key is made inside its issuance, the leaf's too (ML-DSA-65, beside the
        // signature key pair sample's): each keygen is labelled with the key's algorithm.
        ("keygen", "ML-DSA-87", Some(1.0)),
        ("keygen", "ML-DSA-65", Some(2.0)),
        ("keygen", "SLH-DSA-SHA2-256f", Some(1.0)),
        ("sign", "SLH-DSA-SHA2-256f", Some(1.0)),
        ("verify", "SLH-DSA-SHA2-256f", None),
        ("encapsulate", "ML-KEM-768", None),
        ("decapsulate", "ML-KEM-768", None),
        ("sign", "ML-DSA-65", Some(1.0)),
        ("verify", "ML-DSA-65", None),
        ("derive", "HKDF-SHA-256", None),
        ("random", "os-csprng", Some(1.0)),
        ("certificate-issue", "ML-DSA-87", Some(2.0)),
    ] {
        let labels = [("operation", operation), ("algorithm", algorithm)];
        let n = get("qubesec_crypto_operation_duration_seconds_count", &labels);
        let sum = get("qubesec_crypto_operation_duration_seconds_sum", &labels);
        match exactly {
            Some(want) => assert_eq!(n, want, "{operation} {algorithm} ran {n} times"),
            None => assert!(n >= 1.0, "{operation} {algorithm} never ran"),
        }
        assert!(sum > 0.0 && sum / n < 5.0, "{operation} {algorithm}: {n} operations took {sum} s");
    }
    let cert_status = certs.get("api-tls").await.unwrap().status.unwrap();
    let labels = [("namespace", NS), ("name", "api-tls")];
    let expiry = get("qubesec_certificate_expiry_timestamp_seconds", &labels);
    assert_eq!(expiry, unix(cert_status.not_after.as_deref().unwrap()));
    assert!((expiry - now_unix() - 2160.0 * 3600.0).abs() < 600.0, "api-tls expires at {expiry}, not in 90 days");
    let renewal = get("qubesec_certificate_renewal_timestamp_seconds", &labels);
    assert_eq!(renewal, unix(cert_status.renewal_time.as_deref().unwrap()));
    assert_eq!(expiry - renewal, 720.0 * 3600.0, "renewal is not renewBefore (720h) ahead of notAfter");
    let kem_status = kp.get("alice-kem").await.unwrap().status.unwrap();
    let created = get(
        "qubesec_key_created_timestamp_seconds",
        &[("kind", "kemkeypair"), ("namespace", NS), ("name", "alice-kem"), ("algorithm", "ML-KEM-768")],
    );
    assert_eq!(created, unix(kem_status.created_at.as_deref().unwrap()));
    let age = now_unix() - created;
    assert!((0.0..300.0).contains(&age), "alice-kem's key is {age} s old");
    step(&mut t, "metrics scraped");

    // 3b. A short-lived certificate is renewed at its renewal time, keeping its key.
    let short: QuantumCertificate = serde_json::from_value(manifest(
        "QuantumCertificate",
        "short-lived",
        json!({"subject": "CN=short-lived", "duration": "40s", "renewBefore": "32s"}),
    ))
    .unwrap();
    certs.create(&PostParams::default(), &short).await.unwrap();
    let first = wait_for(&certs, "short-lived", "Ready", |c| {
        is_ready(c.status.as_ref().map(|s| &s.common), c.metadata.generation)
    })
    .await
    .status
    .unwrap();
    let renewed = wait_for(&certs, "short-lived", "renewed", |c| {
        c.status.as_ref().is_some_and(|s| s.serial_number.is_some() && s.serial_number != first.serial_number)
    })
    .await
    .status
    .unwrap();
    assert_eq!(
        renewed.output.fingerprint, first.output.fingerprint,
        "rotationPolicy Never keeps the key across renewals"
    );
    assert!(renewed.not_after > first.not_after);
    certs.delete("short-lived", &DeleteParams::default()).await.unwrap();
    step(&mut t, "short-lived certificate renewed");

    // 4. Admission rejects invalid manifests, naming the field.
    expect_rejected(
        &client,
        "QuantumKEMKeyPair",
        manifest("QuantumKEMKeyPair", "bad-alg", json!({"algorithm": "RSA-2048"})),
        "spec.algorithm",
    )
    .await;
    expect_rejected(
        &client,
        "QuantumRandomNumber",
        manifest("QuantumRandomNumber", "zero", json!({"bytes": 0})),
        "spec.bytes",
    )
    .await;
    expect_rejected(
        &client,
        "QuantumDecapsulateSecret",
        manifest(
            "QuantumDecapsulateSecret",
            "both",
            json!({"keyPairRef": {"name": "alice-kem"}, "ciphertext": "AAAA", "ciphertextRef": {"name": "bob-encap"}}),
        ),
        "spec.ciphertextRef",
    )
    .await;
    let secret_ref = json!({"name": "alice-decap", "key": "shared_secret"});
    expect_rejected(
        &client,
        "QuantumDerivedKey",
        manifest(
            "QuantumDerivedKey",
            "two-salts",
            json!({"sharedSecretRef": secret_ref, "salt": "a", "saltBase64": "YQ=="}),
        ),
        "spec.saltBase64",
    )
    .await;
    expect_rejected(
        &client,
        "QuantumDerivedKey",
        manifest("QuantumDerivedKey", "bad-info", json!({"sharedSecretRef": secret_ref, "infoBase64": "not base64!"})),
        "spec.infoBase64",
    )
    .await;
    expect_rejected(
        &client,
        "QuantumDecapsulateSecret",
        manifest(
            "QuantumDecapsulateSecret",
            "bad-b64",
            json!({"keyPairRef": {"name": "alice-kem"}, "ciphertext": "%%not base64%%"}),
        ),
        "spec.ciphertext",
    )
    .await;
    let err = kp
        .patch("alice-kem", &PatchParams::default(), &Patch::Merge(json!({"spec": {"algorithm": "ML-KEM-1024"}})))
        .await
        .expect_err("algorithm change accepted");
    assert!(err.to_string().contains("spec.algorithm") && err.to_string().contains("immutable"), "{err}");
    // Output names cannot be added (or removed) once the resource exists.
    let err = kp
        .patch("alice-kem", &PatchParams::default(), &Patch::Merge(json!({"spec": {"secretName": "elsewhere"}})))
        .await
        .expect_err("adding spec.secretName accepted");
    assert!(err.to_string().contains("spec.secretName is immutable"), "{err}");
    let sign_api = dynamic(&client, "QuantumSignMessage");
    let err = sign_api
        .patch("release-signature", &PatchParams::default(), &Patch::Merge(json!({"spec": {"configMapName": "x"}})))
        .await
        .expect_err("adding spec.configMapName accepted");
    assert!(err.to_string().contains("spec.configMapName is immutable"), "{err}");
    let err = dynamic(&client, "QuantumCertificate")
        .patch("demo-root-ca", &PatchParams::default(), &Patch::Merge(json!({"spec": {"isCA": false}})))
        .await
        .expect_err("isCA change accepted");
    assert!(err.to_string().contains("spec.isCA is immutable"), "{err}");
    let err = dynamic(&client, "QuantumSignatureKeyPair")
        .patch(
            "release-signer",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"purpose": "CertificateAuthority"}})),
        )
        .await
        .expect_err("purpose change accepted");
    assert!(err.to_string().contains("spec.purpose is immutable"), "{err}");
    // Limits promised at admission: HKDF length by hash, context bytes, rotation period,
    // renewBefore < duration, IP addresses and DNS names, at least 16 random bytes.
    let raw = |hash: &str, length: u32| json!({"sharedSecretRef": secret_ref, "hash": hash, "keyType": "Raw", "length": length});
    expect_rejected(
        &client,
        "QuantumDerivedKey",
        manifest("QuantumDerivedKey", "too-long", raw("SHA-256", 8161)),
        "spec.length",
    )
    .await;
    expect_rejected(
        &client,
        "QuantumDerivedKey",
        manifest("QuantumDerivedKey", "too-short", raw("SHA-256", 8)),
        "spec.length",
    )
    .await;
    let longest: DynamicObject =
        serde_json::from_value(manifest("QuantumDerivedKey", "sha512-max", raw("SHA-512", 16320))).unwrap();
    dynamic(&client, "QuantumDerivedKey").create(&PostParams::default(), &longest).await.unwrap();
    let wide = "é".repeat(200); // 200 characters, 400 bytes
    expect_rejected(
        &client,
        "QuantumSignMessage",
        manifest(
            "QuantumSignMessage",
            "wide-context",
            json!({"keyPairRef": {"name": "release-signer"}, "message": "m", "context": wide}),
        ),
        "spec.context",
    )
    .await;
    expect_rejected(
        &client,
        "QuantumKEMKeyPair",
        manifest("QuantumKEMKeyPair", "too-fast", json!({"rotation": {"every": "5s"}})),
        "spec.rotation.every",
    )
    .await;
    expect_rejected(
        &client,
        "QuantumCertificate",
        manifest(
            "QuantumCertificate",
            "renews-too-early",
            json!({"subject": "CN=x", "duration": "24h", "renewBefore": "24h"}),
        ),
        "spec.renewBefore",
    )
    .await;
    expect_rejected(
        &client,
        "QuantumCertificate",
        manifest("QuantumCertificate", "bad-ip", json!({"subject": "CN=x", "ipAddresses": ["10.0.0.300"]})),
        "spec.ipAddresses",
    )
    .await;
    expect_rejected(
        &client,
        "QuantumCertificate",
        manifest("QuantumCertificate", "bad-dns", json!({"dnsNames": ["under_score.example.com"]})),
        "spec.dnsNames",
    )
    .await;
    expect_rejected(
        &client,
        "QuantumRandomNumber",
        manifest("QuantumRandomNumber", "eight", json!({"bytes": 8})),
        "spec.bytes",
    )
    .await;
    // Inline base64 with `+` and `/` (almost every real value) is admitted, and works:
    // a random 1088-byte ciphertext and the 49 856-byte SLH-DSA signature, both inline.
    let std_b64 = |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    let ct = secret_bytes(&secrets.get("bob-encap").await.unwrap(), "ciphertext");
    let (ct_b64, sig_b64) = (std_b64(&ct), std_b64(&slh_sig));
    assert!(ct_b64.contains(['+', '/']) && sig_b64.contains(['+', '/']), "the test values must hold + and /");
    let salt = std_b64(&qubesec_core::rand::bytes(48).unwrap());
    assert!(salt.contains(['+', '/']) || salt.len() == 64);
    for (kind, name, spec) in [
        ("QuantumDecapsulateSecret", "inline-ct", json!({"keyPairRef": {"name": "alice-kem"}, "ciphertext": ct_b64})),
        (
            "QuantumVerifySignature",
            "inline-sig",
            json!({"publicKeyRef": {"name": "firmware-signer"}, "message": "firmware v2.3.1 sha256:4be1d0c2",
                   "context": "firmware", "signature": sig_b64}),
        ),
        (
            "QuantumDerivedKey",
            "binary-salt",
            json!({"sharedSecretRef": {"name": "bob-encap"}, "saltBase64": salt, "infoBase64": std_b64(&[0xfb, 0xff, 0xfe])}),
        ),
    ] {
        let obj: DynamicObject = serde_json::from_value(manifest(kind, name, spec)).unwrap();
        dynamic(&client, kind)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
        wait_for(&dynamic(&client, kind), name, "Ready", ready_dyn).await;
    }
    let inline_ct = decap.get("inline-ct").await.unwrap().status.unwrap();
    assert_eq!(
        inline_ct.output.fingerprint.as_deref(),
        Some(e_fp.as_str()),
        "inline ciphertext decapsulated differently"
    );
    assert_eq!(verify.get("inline-sig").await.unwrap().status.unwrap().result, Some(VerifyResult::Valid));
    // Subject DNs with STREET, DC and UID (RFC 4514).
    let dn: DynamicObject = serde_json::from_value(manifest(
        "QuantumCertificate",
        "dn-cert",
        json!({"subject": "CN=svc,UID=jsmith,STREET=1 Main St,DC=example,DC=com", "privateKey": {"algorithm": "ML-DSA-44"}}),
    ))
    .unwrap();
    dynamic(&client, "QuantumCertificate").create(&PostParams::default(), &dn).await.unwrap();
    wait_for(&dynamic(&client, "QuantumCertificate"), "dn-cert", "Ready", ready_dyn).await;
    let dn_cert = Certificate::from_pem(&secret_bytes(&secrets.get("dn-cert").await.unwrap(), "tls.crt")).unwrap();
    assert_eq!(dn_cert.subject(), "CN=svc,UID=jsmith,STREET=1 Main St,DC=example,DC=com");
    step(&mut t, "invalid manifests rejected, inline base64 and RFC 4514 names work");

    // 5. Never overwrite a Secret we do not own; refuse cross-namespace references.
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta { name: Some("squatter".into()), ..ObjectMeta::default() },
                data: Some(BTreeMap::from([("random".into(), ByteString(b"mine".to_vec()))])),
                ..Secret::default()
            },
        )
        .await
        .unwrap();
    let rand: Api<QuantumRandomNumber> = Api::namespaced(client.clone(), NS);
    let obj: QuantumRandomNumber =
        serde_json::from_value(manifest("QuantumRandomNumber", "squat", json!({"secretName": "squatter"}))).unwrap();
    rand.create(&PostParams::default(), &obj).await.unwrap();
    let failed = wait_for(&rand, "squat", "Failed", |r| {
        r.status.as_ref().and_then(|s| s.common.ready()).is_some_and(|c| c.reason == "OutputNotOwned")
    })
    .await;
    assert!(failed.status.unwrap().common.error.unwrap().contains("not owned"));
    assert_eq!(secret_bytes(&secrets.get("squatter").await.unwrap(), "random"), b"mine");
    // The race: a Secret the operator's cache never showed (it watches only its own label)
    // appears under the output's name. The create fails, a metadata-only read shows it is
    // foreign, and it stays untouched; the same for one that copies the operator's label.
    let squatters = [("squatter-late", false), ("squatter-labelled", true)];
    for (name, labelled) in squatters {
        let obj: QuantumRandomNumber =
            serde_json::from_value(manifest("QuantumRandomNumber", name, json!({"secretName": name}))).unwrap();
        let labels =
            labelled.then(|| BTreeMap::from([("app.kubernetes.io/managed-by".to_owned(), "qubesec".to_owned())]));
        let squat = Secret {
            metadata: ObjectMeta { name: Some(name.into()), labels, ..ObjectMeta::default() },
            data: Some(BTreeMap::from([("random".into(), ByteString(b"mine".to_vec()))])),
            ..Secret::default()
        };
        // Created together: whichever comes first, the operator never overwrites the Secret.
        let pp = PostParams::default();
        let (a, b) = tokio::join!(rand.create(&pp, &obj), secrets.create(&pp, &squat));
        a.unwrap();
        b.unwrap();
        wait_for(&rand, name, "OutputNotOwned", |r| {
            r.status.as_ref().and_then(|s| s.common.ready()).is_some_and(|c| c.reason == "OutputNotOwned")
        })
        .await;
        let kept = secrets.get(name).await.unwrap();
        assert_eq!(secret_bytes(&kept, "random"), b"mine", "{name} was overwritten");
        assert!(kept.metadata.owner_references.is_none(), "{name} was taken over");
    }
    // What the operator's later writes rely on: the API server refuses a replace, and a status
    // apply, at a resourceVersion that is no longer current.
    let seen = secrets.get("squatter").await.unwrap();
    let mut newer = seen.clone();
    newer.data.as_mut().unwrap().insert("x".into(), ByteString(b"1".to_vec()));
    secrets.replace("squatter", &PostParams::default(), &newer).await.unwrap();
    let stale = secrets.replace("squatter", &PostParams::default(), &seen).await.unwrap_err();
    assert!(matches!(&stale, kube::Error::Api(s) if s.code == 409), "{stale}");
    let stale_status = json!({"apiVersion": "qubesec.io/v1", "kind": "QuantumRandomNumber",
        "metadata": {"resourceVersion": "1"}, "status": {"status": "Pending"}});
    let err =
        rand.patch_status("squat", &PatchParams::apply("e2e").force(), &Patch::Apply(&stale_status)).await.unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 409), "{err}");

    // A Secret qubesec did not make is read only once it opts in with qubesec.io/input=true.
    let user_ikm = Secret {
        metadata: ObjectMeta { name: Some("user-ikm".into()), ..ObjectMeta::default() },
        data: Some(BTreeMap::from([("shared_secret".into(), ByteString(b"correct horse battery staple".to_vec()))])),
        ..Secret::default()
    };
    secrets.create(&PostParams::default(), &user_ikm).await.unwrap();
    let from_user: QuantumDerivedKey = serde_json::from_value(manifest(
        "QuantumDerivedKey",
        "from-user",
        json!({"sharedSecretRef": {"name": "user-ikm"}}),
    ))
    .unwrap();
    derived_keys.create(&PostParams::default(), &from_user).await.unwrap();
    let refused = wait_for(&derived_keys, "from-user", "InputNotOptedIn", |d| {
        d.status.as_ref().and_then(|s| s.common.ready()).is_some_and(|c| c.reason == "InputNotOptedIn")
    })
    .await;
    assert!(refused.status.unwrap().common.error.unwrap().contains("qubesec.io/input=true"));
    assert!(
        secrets.get_opt("from-user").await.unwrap().is_none(),
        "a key was derived from a Secret that did not opt in"
    );
    secrets
        .patch(
            "user-ikm",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"qubesec.io/input": "true"}}})),
        )
        .await
        .unwrap();
    // The metadata-only watch of opted-in inputs notices the label: no resync needed.
    let opted = wait_for(&derived_keys, "from-user", "Ready after opting in", |d| {
        is_ready(d.status.as_ref().map(|s| &s.common), d.metadata.generation)
    })
    .await
    .status
    .unwrap();
    // Derived from a guessable user value: no fingerprint of it, or of the key, in status.
    assert_eq!((opted.output.fingerprint, opted.input_fingerprint), (None, None));
    assert_eq!(secret_bytes(&secrets.get("from-user").await.unwrap(), "key").len(), 32);

    // A CA key is only a CA key: a key pair for CAs backs a CA but never signs a chosen
    // message; a message-signing key pair never backs a CA.
    let sigkeys = dynamic(&client, "QuantumSignatureKeyPair");
    let ca_key: DynamicObject = serde_json::from_value(manifest(
        "QuantumSignatureKeyPair",
        "ca-key",
        json!({"algorithm": "ML-DSA-87", "purpose": "CertificateAuthority"}),
    ))
    .unwrap();
    sigkeys.create(&PostParams::default(), &ca_key).await.unwrap();
    for (kind, name, spec) in [
        (
            "QuantumCertificate",
            "kp-ca",
            json!({"subject": "CN=Key Pair CA", "isCA": true, "keyPairRef": {"name": "ca-key"}}),
        ),
        (
            "QuantumSignMessage",
            "forge",
            json!({"keyPairRef": {"name": "ca-key"}, "message": "tbs bytes of my choosing"}),
        ),
        (
            "QuantumCertificate",
            "signing-key-ca",
            json!({"subject": "CN=Bad CA", "isCA": true, "keyPairRef": {"name": "release-signer"}}),
        ),
    ] {
        let obj: DynamicObject = serde_json::from_value(manifest(kind, name, spec)).unwrap();
        dynamic(&client, kind).create(&PostParams::default(), &obj).await.unwrap();
    }
    wait_for(&dynamic(&client, "QuantumCertificate"), "kp-ca", "Ready", ready_dyn).await;
    let reason =
        |o: &DynamicObject| o.data["status"]["conditions"][0]["reason"].as_str().unwrap_or_default().to_owned();
    for (kind, name) in [("QuantumSignMessage", "forge"), ("QuantumCertificate", "signing-key-ca")] {
        let o =
            wait_for(&dynamic(&client, kind), name, "KeyPurposeMismatch", |o| reason(o) == "KeyPurposeMismatch").await;
        eprintln!("e2e: {kind} {name}: {}", o.data["status"]["error"]);
    }
    assert!(cms.get_opt("forge").await.unwrap().is_none(), "the CA key signed a chosen message");
    assert!(secrets.get_opt("signing-key-ca").await.unwrap().is_none());

    // Issuance the validators accept: the root has pathLen 0, so no CA below it; a leaf asking
    // for more than the root's remaining validity is capped at the root's notAfter, and says so.
    for (name, spec) in [
        ("sub-ca", json!({"subject": "CN=Sub CA", "isCA": true, "issuerRef": {"name": "demo-root-ca"}})),
        ("long-leaf", json!({"subject": "CN=long", "duration": "100000h", "issuerRef": {"name": "demo-root-ca"}})),
    ] {
        let obj: QuantumCertificate = serde_json::from_value(manifest("QuantumCertificate", name, spec)).unwrap();
        certs.create(&PostParams::default(), &obj).await.unwrap();
    }
    let sub = wait_for(&certs, "sub-ca", "IssuanceFailed", |c| {
        c.status.as_ref().and_then(|s| s.common.ready()).is_some_and(|r| r.reason == "IssuanceFailed")
    })
    .await;
    let why = sub.status.unwrap().common.error.unwrap();
    assert!(why.contains("pathLenConstraint 0"), "{why}");
    let long = wait_for(&certs, "long-leaf", "Ready", |c| {
        is_ready(c.status.as_ref().map(|s| &s.common), c.metadata.generation)
    })
    .await
    .status
    .unwrap();
    let root_status = certs.get("demo-root-ca").await.unwrap().status.unwrap();
    assert_eq!(long.not_after, root_status.not_after, "the leaf outlives its CA");
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let deadline = Instant::now() + TIMEOUT;
    while !events.list(&ListParams::default()).await.unwrap().items.iter().any(|e| {
        e.reason.as_deref() == Some("ValidityCapped")
            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("long-leaf")
    }) {
        assert!(Instant::now() < deadline, "no ValidityCapped event");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cross: QuantumEncapsulateSecret = serde_json::from_value(manifest(
        "QuantumEncapsulateSecret",
        "cross",
        json!({"publicKeyRef": {"name": "alice-kem", "namespace": "default"}}),
    ))
    .unwrap();
    encap.create(&PostParams::default(), &cross).await.unwrap();
    wait_for(&encap, "cross", "cross-namespace refusal", |r| {
        r.status.as_ref().and_then(|s| s.common.ready()).is_some_and(|c| c.reason == "CrossNamespaceRefDenied")
    })
    .await;
    step(&mut t, "ownership and namespace isolation");

    // 6. Restarting the operator changes no fingerprint and rewrites no key.
    let before = fingerprints(&client, &applied).await;
    assert!(before.values().all(|f| f.starts_with("sha256:")), "{before:#?}");
    let kem_rv = secrets.get("alice-kem").await.unwrap().metadata.resource_version;
    operator.abort();
    let _ = operator.await;
    // The first operator watched Secrets and ConfigMaps only through its label selectors (its
    // outputs with data, opted-in inputs as metadata), and read Secret data only of opted-in ones.
    let seen: Vec<String> = first_requests.lock().unwrap().clone();
    let mut watched = 0;
    for line in &seen {
        let Some(rest) = line.strip_prefix("GET ") else { continue };
        let (uri, accept) = rest.split_once(" | ").unwrap();
        let path = uri.split('?').next().unwrap();
        let collection = path.ends_with("/secrets") || path.ends_with("/configmaps");
        let query = uri.split_once('?').map(|(_, q)| q).unwrap_or_default();
        if collection {
            watched += 1;
            let own = query.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dqubesec");
            let input = query.contains("labelSelector=qubesec.io%2Finput%3Dtrue");
            assert!(own || input, "a Secret/ConfigMap list or watch without the label selector: {line}");
            assert!(own || accept.contains("PartialObjectMetadata"), "opted-in inputs are watched as metadata: {line}");
        } else if path.contains("/secrets/") && !accept.contains("PartialObjectMetadata") {
            assert!(path.ends_with("/secrets/user-ikm"), "read a Secret's data that did not opt in: {line}");
        }
    }
    assert!(watched >= 4, "{seen:#?}");
    let (operator, ctx, _) = start_operator(&cp).await;
    let expected = [
        ("kemkeypair", 1),
        ("signaturekeypair", 1),
        ("randomnumber", 1),
        ("encapsulatesecret", 1),
        ("decapsulatesecret", 1),
        ("derivedkey", 2),
        ("signmessage", 1),
        ("verifysignature", 1),
        ("certificate", 2),
    ];
    let deadline = Instant::now() + TIMEOUT;
    while !expected.iter().all(|(k, n)| ctx.metrics.count(k, "success") >= *n) {
        assert!(
            Instant::now() < deadline,
            "restarted operator did not reconcile everything:\n{}",
            ctx.metrics.encode()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(fingerprints(&client, &applied).await, before, "a fingerprint changed across the restart");
    assert_eq!(secrets.get("alice-kem").await.unwrap().metadata.resource_version, kem_rv, "key Secret rewritten");
    // Reconciling everything again changed nothing, so the restarted operator wrote nothing:
    // no output (ConfigMaps included), no status, no event.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = ctx.metrics.encode();
    assert_eq!(
        writes(&ctx),
        0.0,
        "the restarted operator wrote:\n{}",
        text.lines().filter(|l| l.starts_with("qubesec_kube_requests_total")).collect::<Vec<_>>().join("\n")
    );
    step(&mut t, "restart kept every fingerprint");

    // 7. Verify turns Invalid when the message changes, Valid again when restored.
    let verify: Api<QuantumVerifySignature> = Api::namespaced(client.clone(), NS);
    let result = |v: &QuantumVerifySignature| v.status.as_ref().and_then(|s| s.result);
    assert_eq!(result(&verify.get("release-verify").await.unwrap()), Some(VerifyResult::Valid));
    verify
        .patch("release-verify", &PatchParams::default(), &Patch::Merge(json!({"spec": {"message": "tampered"}})))
        .await
        .unwrap();
    let v = wait_for(&verify, "release-verify", "Invalid", |v| result(v) == Some(VerifyResult::Invalid)).await;
    assert_eq!(v.status.unwrap().valid, Some(false));
    verify
        .patch(
            "release-verify",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"message": "qubesec v0.1.0 sha256:9f2c1e7a"}})),
        )
        .await
        .unwrap();
    wait_for(&verify, "release-verify", "Valid again", |v| result(v) == Some(VerifyResult::Valid)).await;
    step(&mut t, "verify Valid -> Invalid -> Valid");

    // 8. A deleted output Secret comes back, with a Warning event and the new fingerprint.
    let old_fp = rand.get("session-nonce").await.unwrap().status.unwrap().output.fingerprint.unwrap();
    let old_uid = secrets.get("session-nonce").await.unwrap().metadata.uid;
    secrets.delete("session-nonce", &DeleteParams::default()).await.unwrap();
    let back = wait_for(&secrets, "session-nonce", "recreated", |s| s.metadata.uid != old_uid).await;
    let new_fp = qubesec_core::Fingerprint::of_bytes(&secret_bytes(&back, "random")).to_string();
    assert_ne!(new_fp, old_fp);
    wait_for(&rand, "session-nonce", "new fingerprint in status", |r| {
        r.status.as_ref().and_then(|s| s.output.fingerprint.as_deref()) == Some(new_fp.as_str())
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let list = events.list(&ListParams::default()).await.unwrap();
        let found = list.items.iter().any(|e| {
            e.reason.as_deref() == Some("SecretRegenerated")
                && e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("session-nonce")
        });
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "no SecretRegenerated Warning event");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    step(&mut t, "deleted Secret regenerated with a Warning event");

    // 8b. A new key pair ripples through the exchange: Bob re-encapsulates, Alice
    // decapsulates the new ciphertext, and both derived keys follow, still equal.
    let old_kp_fp = kp.get("alice-kem").await.unwrap().status.unwrap().output.fingerprint.unwrap();
    secrets.delete("alice-kem", &DeleteParams::default()).await.unwrap();
    let new_kp_fp = wait_for(&kp, "alice-kem", "new key", |k| {
        k.status.as_ref().and_then(|s| s.output.fingerprint.as_ref()).is_some_and(|f| *f != old_kp_fp)
    })
    .await
    .status
    .unwrap()
    .output
    .fingerprint
    .unwrap();
    let derived: Api<QuantumDerivedKey> = Api::namespaced(client.clone(), NS);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let e = encap.get("bob-encap").await.unwrap().status.unwrap();
        let d = decap.get("alice-decap").await.unwrap().status.unwrap();
        let a = derived.get("alice-aes").await.unwrap().status.unwrap();
        let b = derived.get("bob-aes").await.unwrap().status.unwrap();
        if e.public_key_fingerprint.as_ref() == Some(&new_kp_fp)
            && e.output.fingerprint.is_some()
            && e.output.fingerprint == d.output.fingerprint
            && a.input_fingerprint == e.output.fingerprint
            && b.input_fingerprint == e.output.fingerprint
        {
            break;
        }
        assert!(Instant::now() < deadline, "the exchange did not follow the new key: {e:#?} {d:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let alice2 = secret_bytes(&secrets.get("alice-aes").await.unwrap(), "key");
    assert_eq!(alice2, secret_bytes(&secrets.get("bob-aes").await.unwrap(), "key"));
    assert_ne!(alice2, alice, "the derived key did not change with the shared secret");
    step(&mut t, "new key pair rippled through encapsulate, decapsulate and both derived keys");

    // 9. Deleting a resource garbage-collects its outputs (kube-controller-manager).
    certs.delete("api-tls", &DeleteParams::default()).await.unwrap();
    let sign: Api<QuantumSignMessage> = Api::namespaced(client.clone(), NS);
    sign.delete("release-signature", &DeleteParams::default()).await.unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while secrets.get_opt("api-tls").await.unwrap().is_some()
        || cms.get_opt("release-signature").await.unwrap().is_some()
    {
        assert!(Instant::now() < deadline, "owned Secret/ConfigMap not garbage-collected");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    step(&mut t, "outputs garbage-collected");
    // ... and the deleted certificate's expiry and renewal series leave /metrics.
    let series =
        |text: &str| text.lines().any(|l| l.starts_with("qubesec_certificate_") && l.contains("name=\"api-tls\""));
    while series(&ctx.metrics.encode()) {
        assert!(Instant::now() < deadline, "a deleted certificate's metric series stayed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ctx.metrics.encode().contains("name=\"demo-root-ca\""), "the remaining certificate's series went too");

    operator.abort();
    eprintln!("e2e: total {:.1} s", total.elapsed().as_secs_f64());
}

/// Two replicas with leader election: only the Lease holder reconciles; when it dies without
/// releasing the Lease, the other takes over once the Lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_runs_one_replica_at_a_time() {
    let started = Instant::now();
    let (_cp, client, sa_client) = cluster_with_operator_rbac().await; // `_cp` keeps it running
    let replica = |identity: &str| {
        let ctx = Context::new(sa_client.clone(), Config::default());
        let elector = LeaderElector::new(
            sa_client.clone(),
            LeaseConfig {
                namespace: "qubesec-system".into(),
                name: "qubesec-operator".into(),
                identity: identity.into(),
                duration: Duration::from_secs(3),
                retry_every: Duration::from_millis(500),
            },
        );
        let run_ctx = ctx.clone();
        let task = tokio::spawn(async move {
            elector.run(move || qubesec_operator::controllers::run(run_ctx.clone())).await;
        });
        (task, ctx)
    };
    let (a_task, a) = replica("replica-a");
    let (b_task, b) = replica("replica-b");
    let rand: Api<QuantumRandomNumber> = Api::namespaced(client.clone(), NS);
    let create = |name: &str| {
        serde_json::from_value::<QuantumRandomNumber>(manifest("QuantumRandomNumber", name, json!({}))).unwrap()
    };
    let ready = |r: &QuantumRandomNumber| is_ready(r.status.as_ref().map(|s| &s.common), r.metadata.generation);
    rand.create(&PostParams::default(), &create("first")).await.unwrap();
    wait_for(&rand, "first", "Ready", ready).await;
    let (a_n, b_n) = (a.metrics.count("randomnumber", "success"), b.metrics.count("randomnumber", "success"));
    assert!((a_n > 0) != (b_n > 0), "exactly one replica reconciles (a: {a_n}, b: {b_n})");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "qubesec-system");
    let holder = leases.get("qubesec-operator").await.unwrap().spec.unwrap().holder_identity.unwrap();
    let (leader, follower, follower_ctx) = if a_n > 0 { (a_task, b_task, b) } else { (b_task, a_task, a) };
    assert_eq!(holder, if a_n > 0 { "replica-a" } else { "replica-b" });
    // The leader dies without giving the Lease back; the follower waits for it to expire.
    leader.abort();
    let _ = leader.await;
    let killed = Instant::now();
    rand.create(&PostParams::default(), &create("second")).await.unwrap();
    wait_for(&rand, "second", "Ready after failover", ready).await;
    // The Lease (3 s) expires, the follower's next retry (0.5 s) takes it and reconciles. The
    // bound is the protocol's (one lease duration plus a retry), with slack for a loaded machine;
    // it fails if the follower waits for anything longer than the Lease, like a resync.
    let took = killed.elapsed();
    eprintln!(
        "e2e leader election: failover reconciled a new resource {:.1} s after the leader died",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(3 + 1 + 6), "failover took {took:?} for a 3 s lease");
    assert!(follower_ctx.metrics.count("randomnumber", "success") > 0, "the follower never took over");
    let spec = leases.get("qubesec-operator").await.unwrap().spec.unwrap();
    assert_ne!(spec.holder_identity.unwrap(), holder);
    assert_eq!(spec.lease_transitions, Some(1));
    follower.abort();
    let _ = follower.await;

    // A clean shutdown gives the Lease back: with a 60 s lease, the other replica takes it at once.
    let elector = |identity: &str| {
        LeaderElector::new(
            sa_client.clone(),
            LeaseConfig {
                namespace: "qubesec-system".into(),
                name: "handover".into(),
                identity: identity.into(),
                duration: Duration::from_secs(60),
                retry_every: Duration::from_secs(5),
            },
        )
    };
    let (c, d) = (elector("replica-c"), elector("replica-d"));
    assert!(c.try_acquire().await.unwrap(), "replica-c could not take a free lease");
    assert!(!d.try_acquire().await.unwrap(), "replica-d took a lease replica-c holds");
    d.release().await.unwrap();
    let held = leases.get("handover").await.unwrap().spec.unwrap();
    assert_eq!(held.holder_identity.as_deref(), Some("replica-c"), "a non-holder's release changed the lease");
    c.release().await.unwrap();
    let released = leases.get("handover").await.unwrap().spec.unwrap();
    assert_eq!(released.holder_identity, None, "release left a holder");
    assert!(d.try_acquire().await.unwrap(), "replica-d could not take the released lease");
    let spec = leases.get("handover").await.unwrap().spec.unwrap();
    assert_eq!((spec.holder_identity.as_deref(), spec.lease_transitions), (Some("replica-d"), Some(1)));

    // Crypto never holds up the Lease: a leader (6 s lease, renewed every 0.5 s) keeps it, renewing
    // on schedule, while its crypto threads make several slow SLH-DSA-SHA2-256s signatures.
    let lost = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let led = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storm_ctx = Context::new(sa_client.clone(), Config { crypto_workers: 2, ..Config::default() });
    let (lost2, led2) = (lost.clone(), led.clone());
    let storm = LeaderElector::new(
        sa_client.clone(),
        LeaseConfig {
            namespace: "qubesec-system".into(),
            name: "storm".into(),
            identity: "replica-s".into(),
            duration: Duration::from_secs(6),
            retry_every: Duration::from_millis(500),
        },
    )
    .observe(move |leading| {
        use std::sync::atomic::Ordering::SeqCst;
        if leading {
            led2.store(true, SeqCst);
        } else if led2.load(SeqCst) {
            lost2.fetch_add(1, SeqCst);
        }
    });
    let run_ctx = storm_ctx.clone();
    let storm_task =
        tokio::spawn(async move { storm.run(move || qubesec_operator::controllers::run(run_ctx.clone())).await });
    let create = |kind: &str, name: &str, spec: serde_json::Value| {
        let client = client.clone();
        let obj: DynamicObject = serde_json::from_value(manifest(kind, name, spec)).unwrap();
        let kind = kind.to_owned();
        async move { dynamic(&client, &kind).create(&PostParams::default(), &obj).await.unwrap() }
    };
    create("QuantumSignatureKeyPair", "storm-key", json!({"algorithm": "SLH-DSA-SHA2-256s"})).await;
    let messages = 3;
    for i in 0..messages {
        create(
            "QuantumSignMessage",
            &format!("storm-{i}"),
            json!({"keyPairRef": {"name": "storm-key"}, "message": format!("m{i}")}),
        )
        .await;
    }
    let renew_time = || async {
        leases.get_opt("storm").await.unwrap().and_then(|l| l.spec).and_then(|s| s.renew_time).map(|t| t.0)
    };
    let (mut last, mut last_change, mut longest) = (renew_time().await, Instant::now(), Duration::ZERO);
    let deadline = Instant::now() + TIMEOUT;
    let signs = dynamic(&client, "QuantumSignMessage");
    loop {
        let mut done = 0;
        for i in 0..messages {
            if ready_dyn(&signs.get(&format!("storm-{i}")).await.unwrap()) {
                done += 1;
            }
        }
        if done == messages {
            break;
        }
        let now = renew_time().await;
        if now != last {
            longest = longest.max(last_change.elapsed());
            (last, last_change) = (now, Instant::now());
        }
        assert!(Instant::now() < deadline, "the SLH-DSA-256s signatures were not all made");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    longest = longest.max(last_change.elapsed());
    let signed = storm_ctx.metrics.encode();
    eprintln!(
        "e2e leader election: {messages} SLH-DSA-256s signatures made while the Lease was renewed at most {:.1} s apart",
        longest.as_secs_f64()
    );
    assert!(signed.contains("operation=\"sign\",algorithm=\"SLH-DSA-SHA2-256s\""), "{signed}");
    assert_eq!(lost.load(std::sync::atomic::Ordering::SeqCst), 0, "the leader lost its Lease during the crypto work");
    assert!(longest < Duration::from_secs(6), "a renewal waited {longest:?}, past the 6 s lease");
    let spec = leases.get("storm").await.unwrap().spec.unwrap();
    assert_eq!((spec.holder_identity.as_deref(), spec.lease_transitions), (Some("replica-s"), Some(0)));
    storm_task.abort();
    eprintln!("e2e leader election: {:.1} s", started.elapsed().as_secs_f64());
}

fn ready<K: qubesec_operator::reconcile::Managed>(o: &K) -> bool {
    is_ready(o.common_status(), kube::Resource::meta(o).generation)
}

/// Rotation policies: a KEM key pair rotating every 10 s keeps its last two keys in status and
/// in the ConfigMap, an encapsulation follows it, a certificate follows its rotating signature
/// key pair, and a certificate with `rotation.every` and `rotationPolicy: Always` re-issues with
/// new keys; removing the schedule stops the rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_policies_rotate_keep_history_and_dependants_follow() {
    let started = Instant::now();
    let (cp, client, _) = cluster_with_operator_rbac().await;
    let (operator, ctx, _) = start_operator(&cp).await;
    let create = |kind: &str, name: &str, spec: serde_json::Value| {
        let client = client.clone();
        let obj: DynamicObject = serde_json::from_value(manifest(kind, name, spec)).unwrap();
        let kind = kind.to_owned();
        async move { dynamic(&client, &kind).create(&PostParams::default(), &obj).await.unwrap() }
    };
    create(
        "QuantumKEMKeyPair",
        "rotating",
        json!({"algorithm": "ML-KEM-512", "rotation": {"every": "10s"}, "revisionHistoryLimit": 2}),
    )
    .await;
    create(
        "QuantumEncapsulateSecret",
        "follower",
        json!({"publicKeyRef": {"kind": "QuantumKEMKeyPair", "name": "rotating"}}),
    )
    .await;
    create("QuantumSignatureKeyPair", "signer", json!({"algorithm": "ML-DSA-44", "rotation": {"every": "10s"}})).await;
    create("QuantumCertificate", "signer-cert", json!({"subject": "CN=signer", "keyPairRef": {"name": "signer"}}))
        .await;
    create(
        "QuantumCertificate",
        "weekly",
        json!({"subject": "CN=weekly", "rotation": {"every": "10s"}, "revisionHistoryLimit": 1,
               "privateKey": {"algorithm": "ML-DSA-44", "rotationPolicy": "Always"}}),
    )
    .await;

    // Watch the KEM key pair through four revisions, noting each revision's fingerprint.
    let kp: Api<QuantumKEMKeyPair> = Api::namespaced(client.clone(), NS);
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + TIMEOUT;
    let current = loop {
        let k = kp.get("rotating").await.unwrap();
        if let Some(s) = k.status.as_ref().filter(|_| ready(&k)) {
            seen.insert(s.revision.unwrap(), s.output.fingerprint.clone().unwrap());
            if s.revision.unwrap() >= 4 {
                break s.clone();
            }
        }
        assert!(Instant::now() < deadline, "no fourth revision; seen {seen:?}, last {k:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rev = current.revision.unwrap();
    assert_eq!(current.history.len(), 2, "revisionHistoryLimit 2: {:#?}", current.history);
    for (i, h) in current.history.iter().enumerate() {
        let want = rev - 1 - u32::try_from(i).unwrap();
        assert_eq!(h.revision, want);
        if let Some(fp) = seen.get(&want) {
            assert_eq!(&h.fingerprint, fp, "history of revision {want}");
        }
        assert_ne!(Some(&h.fingerprint), current.output.fingerprint.as_ref());
        assert!(unix(&h.retired_at) >= unix(h.created_at.as_deref().unwrap()));
    }
    assert_ne!(current.history[0].fingerprint, current.history[1].fingerprint);
    let distinct: std::collections::BTreeSet<_> = seen.values().collect();
    assert_eq!(distinct.len(), seen.len(), "a rotation reused a key: {seen:?}");
    let created = unix(current.created_at.as_deref().unwrap());
    assert_eq!(unix(current.next_rotation_time.as_deref().unwrap()) - created, 10.0);
    // The ConfigMap publishes the retired public keys; the Secret remembers the previous fingerprint.
    let cm = Api::<ConfigMap>::namespaced(client.clone(), NS).get("rotating").await.unwrap();
    let data = cm.data.unwrap();
    let history_pem = data.get("public_key_history.pem").expect("no public_key_history.pem");
    let published: Vec<String> = history_pem
        .split_inclusive("-----END PUBLIC KEY-----\n")
        .map(|b| {
            let key = qubesec_core::PublicKey::from_pem(b.as_bytes()).unwrap();
            qubesec_core::Fingerprint::of_public_key(&key).unwrap().to_string()
        })
        .collect();
    let latest = kp.get("rotating").await.unwrap().status.unwrap();
    let listed: Vec<String> = latest.history.iter().map(|h| h.fingerprint.clone()).collect();
    if latest.revision == Some(rev) {
        assert_eq!(published, listed, "ConfigMap history differs from status history");
        let secret = Api::<Secret>::namespaced(client.clone(), NS).get("rotating").await.unwrap();
        let meta: serde_json::Value = serde_json::from_slice(&secret_bytes(&secret, "metadata")).unwrap();
        assert_eq!(meta["previousFingerprint"].as_str(), Some(listed[0].as_str()));
    } else {
        assert_eq!(published.len(), 2, "{published:?}");
    }

    // The encapsulation follows the rotating key.
    let encap: Api<QuantumEncapsulateSecret> = Api::namespaced(client.clone(), NS);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let want = kp.get("rotating").await.unwrap().status.unwrap().output.fingerprint;
        let e = encap.get("follower").await.unwrap();
        if ready(&e)
            && e.status.as_ref().and_then(|s| s.public_key_fingerprint.clone()) == want
            && want != seen.get(&1).cloned()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the encapsulation never caught up with the rotated key");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The certificate on the rotating signature key pair is re-issued for each new key.
    let certs: Api<QuantumCertificate> = Api::namespaced(client.clone(), NS);
    let sig: Api<qubesec_operator::crd::QuantumSignatureKeyPair> = Api::namespaced(client.clone(), NS);
    let cert = wait_for(&certs, "signer-cert", "re-issued for a rotated key", |c| {
        c.status.as_ref().is_some_and(|s| !s.history.is_empty() && s.revision >= Some(2))
    })
    .await
    .status
    .unwrap();
    assert_ne!(cert.history[0].fingerprint, cert.output.fingerprint.clone().unwrap(), "re-issued with the old key");
    assert_ne!(cert.history[0].serial_number, cert.serial_number);
    let signer_revision = sig.get("signer").await.unwrap().status.unwrap().revision.unwrap();
    assert!(signer_revision >= 2, "the signer never rotated");
    // The scheduled certificate re-issues with a new key, keeping one retired certificate.
    let weekly =
        wait_for(&certs, "weekly", "rotated twice", |c| c.status.as_ref().is_some_and(|s| s.revision >= Some(3)))
            .await
            .status
            .unwrap();
    assert_eq!(weekly.history.len(), 1, "revisionHistoryLimit 1: {:#?}", weekly.history);
    assert_ne!(
        weekly.history[0].fingerprint,
        weekly.output.fingerprint.clone().unwrap(),
        "rotationPolicy Always kept the key"
    );
    assert_ne!(weekly.history[0].certificate_fingerprint, weekly.certificate_fingerprint);
    let renewal = unix(weekly.renewal_time.as_deref().unwrap());
    let not_before = unix(weekly.not_before.as_deref().unwrap());
    assert_eq!(renewal - not_before, 300.0 + 10.0, "renewal is not issue time + rotation.every");

    // Events and metrics record the rotations.
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let rotated = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("KeyRotated")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("rotating")
        })
        .count();
    assert!(rotated >= 1, "no KeyRotated event");
    let text = ctx.metrics.encode();
    let rotations = sample(&text, "qubesec_key_rotations_total", &[("kind", "kemkeypair")]).unwrap_or(0.0);
    assert!(rotations >= 3.0, "{rotations} rotations counted:\n{text}");

    // Removing the schedule stops the rotation.
    kp.patch("rotating", &PatchParams::default(), &Patch::Merge(json!({"spec": {"rotation": null}}))).await.unwrap();
    let stopped = wait_for(&kp, "rotating", "no next rotation", |k| {
        ready(k) && k.status.as_ref().is_some_and(|s| s.next_rotation_time.is_none())
    })
    .await
    .status
    .unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = kp.get("rotating").await.unwrap().status.unwrap();
    assert_eq!(after.revision, stopped.revision, "it kept rotating without a schedule");
    assert_eq!(after.output.fingerprint, stopped.output.fingerprint);
    operator.abort();
    eprintln!("e2e rotation: {:.1} s", started.elapsed().as_secs_f64());
}
