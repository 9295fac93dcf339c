//! End to end on a real etcd + kube-apiserver + kube-controller-manager: the
//! operator runs in-process on the test's runtime, the samples are applied,
//! and the flows, admission validation, ownership, idempotency across
//! restarts, regeneration and garbage collection are checked.
//!
//! Needs the control-plane binaries (`cargo xtask testenv build`, or
//! `QUBESEC_TESTENV_DIR`); without them the test fails, it never skips.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fmt::Debug;
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
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, ResourceExt};
use qubesec_core::x509::{Certificate, verify_chain};
use qubesec_operator::crd::{
    CommonStatus, QuantumCertificate, QuantumDecapsulateSecret, QuantumDerivedKey, QuantumEncapsulateSecret,
    QuantumKEMKeyPair, QuantumRandomNumber, QuantumSignMessage, QuantumVerifySignature, VerifyResult, is_ready,
};
use qubesec_operator::leader::{LeaderElector, LeaseConfig};
use qubesec_operator::{Config, Context};
use qubesec_testenv::ControlPlane;
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinHandle;

const NS: &str = "demo";
const TIMEOUT: Duration = Duration::from_secs(120);

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

/// Applies `deploy/operator/rbac.yaml` (the operator's ClusterRole and its binding).
async fn apply_rbac(client: &Client) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/operator/rbac.yaml");
    let text = std::fs::read_to_string(path).unwrap();
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
            other => panic!("unexpected kind {other} in rbac.yaml"),
        }
    }
}

/// A client that acts as the operator's ServiceAccount, so the operator runs with exactly the
/// permissions `deploy/operator/rbac.yaml` grants.
async fn operator_client(cp: &ControlPlane) -> Client {
    let kubeconfig = Kubeconfig::read_from(cp.kubeconfig_path()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    config.auth_info.impersonate = Some("system:serviceaccount:qubesec-system:qubesec-operator".to_owned());
    Client::try_from(config).unwrap()
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

fn start_operator(client: &Client) -> (JoinHandle<()>, Arc<Context>) {
    let ctx = Context::new(client.clone(), Config::default());
    (tokio::spawn(qubesec_operator::controllers::run(ctx.clone())), ctx)
}

async fn wait_for<K, F>(api: &Api<K>, name: &str, what: &str, f: F) -> K
where
    K: kube::Resource + Clone + Debug + serde::de::DeserializeOwned,
    F: Fn(&K) -> bool,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let got = api.get_opt(name).await.unwrap();
        if let Some(o) = got.as_ref().filter(|o| f(o)) {
            return o.clone();
        }
        assert!(Instant::now() < deadline, "timed out waiting for {name}: {what}; last: {got:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    let (operator, _ctx) = start_operator(&sa_client);
    let applied = apply_samples(&client).await;
    assert_eq!(applied.len(), 11, "{applied:?}");
    for (kind, name) in &applied {
        wait_for(&dynamic(&client, kind), name, "Ready", ready_dyn).await;
    }
    step(&mut t, "all 11 sample resources Ready");

    // 2. Key exchange: both sides hold the same AES-256 key.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let alice = secret_bytes(&secrets.get("alice-aes").await.unwrap(), "key");
    let bob = secret_bytes(&secrets.get("bob-aes").await.unwrap(), "key");
    assert_eq!(alice.len(), 32);
    assert_eq!(alice, bob, "the two derived AES-256 keys differ");
    let encap: Api<QuantumEncapsulateSecret> = Api::namespaced(client.clone(), NS);
    let decap: Api<QuantumDecapsulateSecret> = Api::namespaced(client.clone(), NS);
    let e_fp = encap.get("bob-encap").await.unwrap().status.unwrap().fingerprint.unwrap();
    let d_fp = decap.get("alice-decap").await.unwrap().status.unwrap().fingerprint.unwrap();
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
    assert_eq!(meta["fingerprint"], kp_status.fingerprint.clone().unwrap());
    assert_eq!(kp_status.short_fingerprint.unwrap().len(), 10);
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
    step(&mut t, "key exchange and certificate checks");

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
    assert_eq!(renewed.fingerprint, first.fingerprint, "rotationPolicy Never keeps the key across renewals");
    assert!(renewed.not_after > first.not_after);
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
    step(&mut t, "five invalid manifests rejected");

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
    let (operator, ctx) = start_operator(&sa_client);
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
            ctx.metrics.render()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(fingerprints(&client, &applied).await, before, "a fingerprint changed across the restart");
    assert_eq!(secrets.get("alice-kem").await.unwrap().metadata.resource_version, kem_rv, "key Secret rewritten");
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
    let old_fp = rand.get("session-nonce").await.unwrap().status.unwrap().fingerprint.unwrap();
    let old_uid = secrets.get("session-nonce").await.unwrap().metadata.uid;
    secrets.delete("session-nonce", &DeleteParams::default()).await.unwrap();
    let back = wait_for(&secrets, "session-nonce", "recreated", |s| s.metadata.uid != old_uid).await;
    let new_fp = qubesec_core::Fingerprint::of_bytes(&secret_bytes(&back, "random")).to_string();
    assert_ne!(new_fp, old_fp);
    wait_for(&rand, "session-nonce", "new fingerprint in status", |r| {
        r.status.as_ref().and_then(|s| s.fingerprint.as_deref()) == Some(new_fp.as_str())
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
    let old_kp_fp = kp.get("alice-kem").await.unwrap().status.unwrap().fingerprint.unwrap();
    secrets.delete("alice-kem", &DeleteParams::default()).await.unwrap();
    let new_kp_fp = wait_for(&kp, "alice-kem", "new key", |k| {
        k.status.as_ref().and_then(|s| s.fingerprint.as_ref()).is_some_and(|f| *f != old_kp_fp)
    })
    .await
    .status
    .unwrap()
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
            && e.fingerprint.is_some()
            && e.fingerprint == d.fingerprint
            && a.input_fingerprint == e.fingerprint
            && b.input_fingerprint == e.fingerprint
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

    operator.abort();
    eprintln!("e2e: total {:.1} s", total.elapsed().as_secs_f64());
}

/// Two replicas with leader election: only the Lease holder reconciles; when it dies without
/// releasing the Lease, the other takes over once the Lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_runs_one_replica_at_a_time() {
    let started = Instant::now();
    let cp = ControlPlane::builder().start().await.unwrap();
    let client = cp.client();
    install_crds(&client).await;
    create_namespaces(&client).await;
    apply_rbac(&client).await;
    let sa_client = operator_client(&cp).await;
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
    rand.create(&PostParams::default(), &create("second")).await.unwrap();
    wait_for(&rand, "second", "Ready after failover", ready).await;
    assert!(follower_ctx.metrics.count("randomnumber", "success") > 0, "the follower never took over");
    let spec = leases.get("qubesec-operator").await.unwrap().spec.unwrap();
    assert_ne!(spec.holder_identity.unwrap(), holder);
    assert_eq!(spec.lease_transitions, Some(1));
    follower.abort();
    eprintln!("e2e leader election: {:.1} s", started.elapsed().as_secs_f64());
}
