//! Reconcile branches against a mocked API server (`tower-test`): every request
//! the operator makes is checked, and anything unexpected fails the test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use tower_test::mock;

use crate::context::{Config, Context};
use crate::crd::{
    EncapsulateStatus, KeyPairStatus, Phase, QuantumEncapsulateSecret, QuantumKEMKeyPair, QuantumRandomNumber,
    RandomNumberStatus,
};
use crate::error::{Category, Error};
use crate::outputs::fingerprint;
use crate::reconcile::{Outcome, State, finish};

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn mock_ctx() -> (Arc<Context>, Handle) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Context::new(Client::new(svc, "default"), Config::default()), handle)
}

fn respond(send: mock::SendResponse<Response<Body>>, status: u16, body: &Value) {
    send.send_response(Response::builder().status(status).body(Body::from(serde_json::to_vec(body).unwrap())).unwrap());
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

async fn body(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.unwrap();
    if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() }
}

/// Serves one request: checks method and path, returns the request body.
async fn serve(handle: &mut Handle, method: Method, path: &str, status: u16, reply: &Value) -> (Value, String) {
    let (req, send) = handle.next_request().await.expect("the operator made no further request");
    assert_eq!((req.method(), req.uri().path()), (&method, path), "unexpected request {} {}", req.method(), req.uri());
    let query = req.uri().query().unwrap_or_default().to_owned();
    respond(send, status, reply);
    (body(req).await, query)
}

const UID: &str = "0b7c3a52-1111-4222-8333-944455556666";

fn random(status: Option<RandomNumberStatus>) -> QuantumRandomNumber {
    let mut r: QuantumRandomNumber = serde_json::from_value(json!({
        "apiVersion": "qubesec.io/v1", "kind": "QuantumRandomNumber",
        "metadata": {"name": "nonce", "namespace": "ns", "uid": UID, "generation": 1},
        "spec": {"bytes": 16}
    }))
    .unwrap();
    r.status = status;
    r
}

fn owned_secret(data: &Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "nonce", "namespace": "ns", "ownerReferences": [{
            "apiVersion": "qubesec.io/v1", "kind": "QuantumRandomNumber", "name": "nonce", "uid": UID, "controller": true
        }]},
        "data": data
    })
}

#[tokio::test]
async fn refuses_a_secret_it_does_not_own_without_writing() {
    let (ctx, mut handle) = mock_ctx();
    let obj = random(None);
    let server = tokio::spawn(async move {
        let foreign = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "nonce", "namespace": "ns"}, "data": {"random": "AAAA"}});
        serve(&mut handle, Method::GET, "/api/v1/namespaces/ns/secrets/nonce", 200, &foreign).await;
        handle
    });
    let err = super::random::reconcile_inner(&obj, &ctx).await.unwrap_err();
    assert_eq!(err.category(), Category::User);
    assert_eq!(err.reason(), "OutputNotOwned");
    assert!(err.to_string().contains("Secret nonce already exists and is not owned by QuantumRandomNumber nonce"));
    let mut handle = server.await.unwrap();
    // No write followed the refusal.
    assert!(tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await.is_err());
}

#[tokio::test]
async fn keeps_existing_random_bytes_that_match_the_recorded_fingerprint() {
    let (ctx, mut handle) = mock_ctx();
    let bytes = [7u8; 16];
    let fp = fingerprint(&bytes);
    let obj = random(Some(RandomNumberStatus { fingerprint: Some(fp.clone()), ..RandomNumberStatus::default() }));
    let secret = owned_secret(&json!({"random": "BwcHBwcHBwcHBwcHBwcHBw==", "metadata": "e30="}));
    let server = tokio::spawn(async move {
        serve(&mut handle, Method::GET, "/api/v1/namespaces/ns/secrets/nonce", 200, &secret).await;
        handle
    });
    let outcome = super::random::reconcile_inner(&obj, &ctx).await.unwrap();
    assert_eq!(outcome.status.fingerprint.as_deref(), Some(fp.as_str()));
    assert!(outcome.state.ready);
    let mut handle = server.await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await.is_err(),
        "it wrote something"
    );
}

#[tokio::test]
async fn regenerates_a_deleted_secret_with_a_warning_event() {
    let (ctx, mut handle) = mock_ctx();
    let old = fingerprint(b"old bytes");
    let obj = random(Some(RandomNumberStatus { fingerprint: Some(old.clone()), ..RandomNumberStatus::default() }));
    let server = tokio::spawn(async move {
        serve(&mut handle, Method::GET, "/api/v1/namespaces/ns/secrets/nonce", 404, &not_found()).await;
        let (applied, query) =
            serve(&mut handle, Method::PATCH, "/api/v1/namespaces/ns/secrets/nonce", 200, &json!({})).await;
        assert!(query.contains("fieldManager=qubesec-operator") && query.contains("force=true"), "{query}");
        let (event, _) =
            serve(&mut handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events", 201, &json!({})).await;
        (applied, event)
    });
    let outcome = super::random::reconcile_inner(&obj, &ctx).await.unwrap();
    let (applied, event) = server.await.unwrap();
    let labels = &applied["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "qubesec");
    assert_eq!(labels["qubesec.io/owner-kind"], "QuantumRandomNumber");
    let owner = &applied["metadata"]["ownerReferences"][0];
    assert_eq!((owner["uid"].as_str(), owner["controller"].as_bool()), (Some(UID), Some(true)));
    let new_fp = outcome.status.fingerprint.unwrap();
    assert_ne!(new_fp, old);
    let meta: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            applied["data"]["metadata"].as_str().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(meta["fingerprint"], new_fp.as_str());
    assert_eq!((event["type"].as_str(), event["reason"].as_str()), (Some("Warning"), Some("SecretRegenerated")));
    let note = event["note"].as_str().unwrap();
    assert!(note.contains(&old) && note.contains(&new_fp), "{note}");
}

#[tokio::test]
async fn encapsulation_waits_for_its_key_pair() {
    let (ctx, mut handle) = mock_ctx();
    let obj: QuantumEncapsulateSecret = serde_json::from_value(json!({
        "apiVersion": "qubesec.io/v1", "kind": "QuantumEncapsulateSecret",
        "metadata": {"name": "bob", "namespace": "ns", "uid": UID, "generation": 1},
        "spec": {"publicKeyRef": {"name": "alice"}}
    }))
    .unwrap();
    let pending_kp = json!({
        "apiVersion": "qubesec.io/v1", "kind": "QuantumKEMKeyPair",
        "metadata": {"name": "alice", "namespace": "ns", "generation": 1},
        "spec": {"algorithm": "ML-KEM-768"},
        "status": {"status": "Pending"}
    });
    let server = tokio::spawn(async move {
        serve(&mut handle, Method::GET, "/apis/qubesec.io/v1/namespaces/ns/quantumkemkeypairs/alice", 200, &pending_kp)
            .await;
        handle
    });
    let outcome = super::encapsulate::reconcile_inner(&obj, &ctx).await.unwrap();
    assert_eq!(outcome.state, State::pending("WaitingForKeyPair", "waiting for QuantumKEMKeyPair alice to be Ready"));
    assert_eq!(outcome.status, EncapsulateStatus::default());
    let mut handle = server.await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await.is_err());
}

#[tokio::test]
async fn cross_namespace_references_are_refused_by_default() {
    let (ctx, _handle) = mock_ctx();
    let obj: QuantumEncapsulateSecret = serde_json::from_value(json!({
        "apiVersion": "qubesec.io/v1", "kind": "QuantumEncapsulateSecret",
        "metadata": {"name": "bob", "namespace": "ns", "uid": UID, "generation": 1},
        "spec": {"publicKeyRef": {"name": "alice", "namespace": "other"}}
    }))
    .unwrap();
    let err = super::encapsulate::reconcile_inner(&obj, &ctx).await.unwrap_err();
    assert_eq!(err.reason(), "CrossNamespaceRefDenied");
    assert!(err.to_string().contains("spec.publicKeyRef.namespace"));
}

#[tokio::test]
async fn user_errors_become_failed_status_without_requeue() {
    let (ctx, mut handle) = mock_ctx();
    let obj =
        random(Some(RandomNumberStatus { fingerprint: Some("sha256:kept".into()), ..RandomNumberStatus::default() }));
    let reply = serde_json::to_value(&obj).unwrap();
    let server = tokio::spawn(async move {
        let (status, query) = serve(
            &mut handle,
            Method::PATCH,
            "/apis/qubesec.io/v1/namespaces/ns/quantumrandomnumbers/nonce/status",
            200,
            &reply,
        )
        .await;
        assert!(query.contains("fieldManager=qubesec-operator"), "{query}");
        let (event, _) =
            serve(&mut handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events", 201, &json!({})).await;
        (status, event)
    });
    let result: crate::error::Result<Outcome<RandomNumberStatus>> =
        Err(Error::user("OutputNotOwned", "Secret x is not ours"));
    let action = finish(&obj, &ctx, Instant::now(), result).await.unwrap();
    assert_eq!(action, Action::await_change());
    let (patch, event) = server.await.unwrap();
    let status = &patch["status"];
    assert_eq!(status["status"], "Failed");
    assert_eq!(status["error"], "Secret x is not ours");
    assert_eq!(status["fingerprint"], "sha256:kept", "the recorded fingerprint survives a failure");
    let ready = &status["conditions"][0];
    assert_eq!((ready["type"].as_str(), ready["status"].as_str()), (Some("Ready"), Some("False")));
    assert_eq!((ready["reason"].as_str(), ready["observedGeneration"].as_i64()), (Some("OutputNotOwned"), Some(1)));
    assert_eq!(event["type"], "Warning");
    assert_eq!(ctx.metrics.count("randomnumber", "user"), 1);
}

#[tokio::test]
async fn transient_errors_are_returned_for_backoff() {
    let (ctx, mut handle) = mock_ctx();
    let obj = random(None);
    let reply = serde_json::to_value(&obj).unwrap();
    let server = tokio::spawn(async move {
        let (patch, _) = serve(
            &mut handle,
            Method::PATCH,
            "/apis/qubesec.io/v1/namespaces/ns/quantumrandomnumbers/nonce/status",
            200,
            &reply,
        )
        .await;
        serve(&mut handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events", 201, &json!({})).await;
        patch
    });
    let result: crate::error::Result<Outcome<RandomNumberStatus>> = Err(Error::Transient("apiserver busy".into()));
    assert!(finish(&obj, &ctx, Instant::now(), result).await.is_err());
    assert_eq!(server.await.unwrap()["status"]["status"], "Pending");
    let a1 = crate::reconcile::error_policy(Arc::new(obj.clone()), &Error::Transient(String::new()), ctx.clone());
    let a2 = crate::reconcile::error_policy(Arc::new(obj), &Error::Transient(String::new()), ctx);
    assert_eq!((a1, a2), (Action::requeue(Duration::from_secs(5)), Action::requeue(Duration::from_secs(10))));
}

#[tokio::test]
async fn an_unchanged_status_is_not_written_again() {
    let (ctx, mut handle) = mock_ctx();
    let status = RandomNumberStatus { fingerprint: Some("sha256:x".into()), ..RandomNumberStatus::default() };
    let mut obj = random(None);
    let reply = serde_json::to_value(&obj).unwrap();
    // First write: computes the common part; then feed it back as the object's status.
    let server = tokio::spawn(async move {
        let (patch, _) = serve(
            &mut handle,
            Method::PATCH,
            "/apis/qubesec.io/v1/namespaces/ns/quantumrandomnumbers/nonce/status",
            200,
            &reply,
        )
        .await;
        serve(&mut handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events", 201, &json!({})).await;
        (patch, handle)
    });
    let ok = Outcome::new(status.clone(), State::ready("Generated", "ok"));
    finish(&obj, &ctx, Instant::now(), Ok(ok)).await.unwrap();
    let (patch, mut handle) = server.await.unwrap();
    obj.status = Some(serde_json::from_value(patch["status"].clone()).unwrap());
    assert_eq!(obj.status.as_ref().map(|s| s.common.status), Some(Some(Phase::Success)));
    let again = Outcome::new(status, State::ready("Generated", "ok"));
    finish(&obj, &ctx, Instant::now(), Ok(again)).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await.is_err(), "status rewritten");
}

fn kem_pair(status: Option<KeyPairStatus>) -> QuantumKEMKeyPair {
    let mut k: QuantumKEMKeyPair = serde_json::from_value(json!({
        "apiVersion": "qubesec.io/v1", "kind": "QuantumKEMKeyPair",
        "metadata": {"name": "alice", "namespace": "ns", "uid": UID, "generation": 1},
        "spec": {"algorithm": "Kyber768"}
    }))
    .unwrap();
    k.status = status;
    k
}

fn owned_by_alice(kind: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": kind,
        "metadata": {"name": "alice", "namespace": "ns", "ownerReferences": [{
            "apiVersion": "qubesec.io/v1", "kind": "QuantumKEMKeyPair", "name": "alice", "uid": UID, "controller": true
        }]},
        "data": data
    })
}

#[tokio::test]
async fn key_pair_refuses_a_stored_key_that_does_not_match_the_recorded_fingerprint() {
    let (ctx, mut handle) = mock_ctx();
    let key = qubesec_core::PrivateKey::generate(qubesec_core::KemAlgorithm::MlKem768.into()).unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem.as_bytes());
    let obj = kem_pair(Some(KeyPairStatus { fingerprint: Some("sha256:recorded".into()), ..KeyPairStatus::default() }));
    let secret = owned_by_alice("Secret", json!({"private_key.pem": b64}));
    let cm = owned_by_alice("ConfigMap", json!({}));
    let server = tokio::spawn(async move {
        serve(&mut handle, Method::GET, "/api/v1/namespaces/ns/secrets/alice", 200, &secret).await;
        serve(&mut handle, Method::GET, "/api/v1/namespaces/ns/configmaps/alice", 200, &cm).await;
        handle
    });
    let inputs = super::keypair::KeyPairInputs {
        alg: qubesec_core::KemAlgorithm::MlKem768.into(),
        alias: None,
        secret_name: None,
        rotation: None,
        history_limit: None,
    };
    let err = super::keypair::reconcile_key_pair(&obj, &ctx, inputs, obj.status.as_ref()).await.unwrap_err();
    assert_eq!(err.reason(), "FingerprintMismatch");
    assert!(err.to_string().contains("sha256:recorded") && err.to_string().contains("delete the Secret"), "{err}");
    let mut handle = server.await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await.is_err(),
        "it wrote something"
    );
}

#[tokio::test]
async fn key_pair_generates_once_and_publishes_the_public_key() {
    let (ctx, mut handle) = mock_ctx();
    let obj = kem_pair(None);
    let server = tokio::spawn(async move {
        serve(&mut handle, Method::GET, "/api/v1/namespaces/ns/secrets/alice", 404, &not_found()).await;
        serve(&mut handle, Method::GET, "/api/v1/namespaces/ns/configmaps/alice", 404, &not_found()).await;
        let (secret, _) =
            serve(&mut handle, Method::PATCH, "/api/v1/namespaces/ns/secrets/alice", 200, &json!({})).await;
        let (cm, _) =
            serve(&mut handle, Method::PATCH, "/api/v1/namespaces/ns/configmaps/alice", 200, &json!({})).await;
        let (generated, _) =
            serve(&mut handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events", 201, &json!({})).await;
        let (deprecated, _) =
            serve(&mut handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events", 201, &json!({})).await;
        (secret, cm, generated, deprecated)
    });
    let (alg, alias) = obj.spec.algorithm.resolve().unwrap();
    let inputs = super::keypair::KeyPairInputs {
        alg: alg.into(),
        alias,
        secret_name: None,
        rotation: None,
        history_limit: None,
    };
    let outcome = super::keypair::reconcile_key_pair(&obj, &ctx, inputs, None).await.unwrap();
    let (secret, cm, generated, deprecated) = server.await.unwrap();
    let keys: Vec<&str> = secret["data"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["metadata", "private_key", "private_key.pem", "public_key", "public_key.pem"]);
    assert!(cm["data"]["public_key.pem"].as_str().unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));
    assert!(cm["data"].get("private_key.pem").is_none() && cm["binaryData"]["public_key"].is_string());
    let fp = outcome.status.fingerprint.unwrap();
    assert_eq!(outcome.status.algorithm.as_deref(), Some("ML-KEM-768"));
    assert_eq!(generated["reason"], "KeyGenerated");
    assert!(generated["note"].as_str().unwrap().contains(&fp));
    assert_eq!(
        (deprecated["type"].as_str(), deprecated["reason"].as_str()),
        (Some("Warning"), Some("DeprecatedAlgorithmName"))
    );
    assert!(outcome.state.message.contains("Kyber768"), "{}", outcome.state.message);
}

#[test]
fn rotation_periods_are_bounded_and_errors_name_the_field() {
    use super::keypair::rotation_period;
    use crate::crd::RotationSchedule;
    let period = |every: &str| rotation_period(Some(&RotationSchedule { every: every.to_owned() }));
    assert_eq!(period("720h").unwrap(), Some(Duration::from_secs(720 * 3600)));
    assert_eq!(period("10s").unwrap(), Some(Duration::from_secs(10)));
    assert_eq!(rotation_period(None).unwrap(), None);
    for bad in ["5s", "9999999h9999999h", "soon"] {
        let err = period(bad).unwrap_err();
        assert_eq!(err.category(), Category::User, "{bad}");
        assert!(err.to_string().contains("spec.rotation.every"), "{bad}: {err}");
    }
}
