//! Reconcile branches against a mocked API server (`tower-test`) and hand-filled caches: every
//! request the operator makes is checked, and anything unexpected fails the test. A reconcile
//! that changes nothing must make no request at all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use tower_test::mock;

use crate::cache::Run;
use crate::cache::fake::{Writers, put};
use crate::context::{Config, Context};
use crate::crd::{
    EncapsulateStatus, KeyPairStatus, Phase, QuantumCertificate, QuantumDerivedKey, QuantumEncapsulateSecret,
    QuantumKEMKeyPair, QuantumRandomNumber, QuantumSignMessage, QuantumSignatureKeyPair, RandomNumberStatus,
};
use crate::error::{Category, Error};
use crate::outputs::fingerprint;
use crate::reconcile::{Outcome, State, finish};

type Handle = mock::Handle<Request<Body>, Response<Body>>;

struct Fixture {
    run: Arc<Run>,
    handle: Handle,
    writers: Writers,
}

impl Fixture {
    fn new() -> Self {
        let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let ctx = Context::new(Client::new(svc, "default"), Config { crypto_workers: 1, ..Config::default() });
        let writers = Writers::default();
        let run = Arc::new(Run { ctx, stores: writers.stores() });
        Self { run, handle, writers }
    }

    /// Asserts the operator makes no further request.
    async fn no_more_requests(&mut self) {
        let next = tokio::time::timeout(Duration::from_millis(50), self.handle.next_request()).await;
        assert!(next.is_err(), "unexpected request: {:?}", next.ok().flatten().map(|(r, _)| r.uri().clone()));
    }
}

fn respond(send: mock::SendResponse<Response<Body>>, status: u16, body: &Value) {
    send.send_response(Response::builder().status(status).body(Body::from(serde_json::to_vec(body).unwrap())).unwrap());
}

fn status_body(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": reason, "code": code, "message": reason})
}

async fn body(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.unwrap();
    if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() }
}

/// One request seen by the mock.
struct Seen {
    body: Value,
    query: String,
    accept: String,
}

/// Serves one request: checks method and path, returns what was sent.
async fn serve(handle: &mut Handle, method: Method, path: &str, status: u16, reply: &Value) -> Seen {
    let (req, send) = handle.next_request().await.expect("the operator made no further request");
    assert_eq!((req.method(), req.uri().path()), (&method, path), "unexpected request {} {}", req.method(), req.uri());
    let query = req.uri().query().unwrap_or_default().to_owned();
    let accept = req.headers().get("accept").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    respond(send, status, reply);
    Seen { body: body(req).await, query, accept }
}

const UID: &str = "0b7c3a52-1111-4222-8333-944455556666";

fn object<K: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
    serde_json::from_value(json!({
        "apiVersion": "qubesec.io/v1", "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "uid": UID, "generation": 1, "resourceVersion": "10"},
        "spec": spec
    }))
    .unwrap()
}

fn random(status: Option<RandomNumberStatus>) -> QuantumRandomNumber {
    let mut r: QuantumRandomNumber = object("QuantumRandomNumber", "nonce", json!({"bytes": 16}));
    r.status = status;
    r
}

fn labels(kind: &str, owner: &str) -> Value {
    json!({"app.kubernetes.io/managed-by": "qubesec", "qubesec.io/owner-kind": kind, "qubesec.io/owner-name": owner})
}

/// A Secret or ConfigMap `name` controlled by `owner_kind` `owner` (uid [`UID`]).
fn owned<T: serde::de::DeserializeOwned>(what: &str, name: &str, owner_kind: &str, owner: &str, data: Value) -> T {
    let key = if what == "Secret" { "data" } else { "binaryData" };
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": what,
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": "7", "labels": labels(owner_kind, owner),
            "ownerReferences": [{"apiVersion": "qubesec.io/v1", "kind": owner_kind, "name": owner, "uid": UID, "controller": true}]},
        key: data
    }))
    .unwrap()
}

fn ready(generation: i64) -> Value {
    json!([{"type": "Ready", "status": "True", "reason": "KeyReady", "message": "", "observedGeneration": generation,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}])
}

fn b64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

#[tokio::test]
async fn a_name_taken_between_observe_and_create_is_never_overwritten() {
    // The race: the cache shows no Secret, so the operator creates one; meanwhile someone else
    // created it. The create fails, a metadata-only read shows it is foreign, and nothing else is written.
    let mut f = Fixture::new();
    let obj = random(None);
    let run = f.run.clone();
    let reconcile = tokio::spawn(async move { super::random::reconcile_inner(&obj, &run).await });
    let create =
        serve(&mut f.handle, Method::POST, "/api/v1/namespaces/ns/secrets", 409, &status_body(409, "AlreadyExists"))
            .await;
    assert_eq!(create.body["metadata"]["ownerReferences"][0]["uid"], UID);
    let foreign = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": "nonce", "namespace": "ns"}});
    let read = serve(&mut f.handle, Method::GET, "/api/v1/namespaces/ns/secrets/nonce", 200, &foreign).await;
    assert!(read.accept.contains("PartialObjectMetadata"), "the foreign Secret's data was requested: {}", read.accept);
    let err = reconcile.await.unwrap().unwrap_err();
    assert_eq!(err.category(), Category::User);
    assert_eq!(err.reason(), "OutputNotOwned");
    assert!(err.to_string().contains("Secret nonce already exists and is not owned by QuantumRandomNumber nonce"));
    f.no_more_requests().await;
}

#[tokio::test]
async fn a_foreign_object_in_the_cache_is_refused_without_a_request() {
    let mut f = Fixture::new();
    let mut foreign: Secret =
        owned("Secret", "nonce", "QuantumRandomNumber", "someone-else", json!({"random": "AAAA"}));
    foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "another-uid".into();
    put(&mut f.writers.secrets, foreign);
    let err = super::random::reconcile_inner(&random(None), &f.run).await.unwrap_err();
    assert_eq!(err.reason(), "OutputNotOwned");
    f.no_more_requests().await;
}

#[tokio::test]
async fn a_later_write_is_a_replace_at_the_seen_version_and_a_lost_race_writes_nothing_else() {
    let mut f = Fixture::new();
    // Our Secret with the bytes but without its metadata key: the reconcile adds it.
    let bytes = [7u8; 16];
    put(
        &mut f.writers.secrets,
        owned::<Secret>("Secret", "nonce", "QuantumRandomNumber", "nonce", json!({"random": b64(&bytes)})),
    );
    let obj = random(Some(RandomNumberStatus::default()));
    let run = f.run.clone();
    let reconcile = tokio::spawn(async move { super::random::reconcile_inner(&obj, &run).await });
    let put_req =
        serve(&mut f.handle, Method::PUT, "/api/v1/namespaces/ns/secrets/nonce", 409, &status_body(409, "Conflict"))
            .await;
    assert_eq!(put_req.body["metadata"]["resourceVersion"], "7", "the replace must carry the version seen");
    assert!(put_req.query.contains("fieldManager=qubesec-operator"), "{}", put_req.query);
    let err = reconcile.await.unwrap().unwrap_err();
    assert!(err.is_stale(), "{err}");
    f.no_more_requests().await;
}

#[tokio::test]
async fn unchanged_outputs_mean_no_request_at_all() {
    let mut f = Fixture::new();
    let bytes = [7u8; 16];
    let fp = fingerprint(&bytes);
    let meta = b64(br#"{"kind":"QuantumRandomNumber"}"#);
    put(
        &mut f.writers.secrets,
        owned::<Secret>(
            "Secret",
            "nonce",
            "QuantumRandomNumber",
            "nonce",
            json!({"random": b64(&bytes), "metadata": meta}),
        ),
    );
    let mut status = RandomNumberStatus::default();
    status.output.fingerprint = Some(fp.clone());
    let outcome = super::random::reconcile_inner(&random(Some(status)), &f.run).await.unwrap();
    assert_eq!(outcome.status.output.fingerprint.as_deref(), Some(fp.as_str()));
    assert!(outcome.state.ready);
    f.no_more_requests().await;
}

#[tokio::test]
async fn a_write_not_yet_in_the_cache_makes_the_reconcile_wait() {
    let mut f = Fixture::new();
    f.run.expect(("Secret", "ns".into(), "nonce".into()), Some("8".into()));
    let err = super::random::reconcile_inner(&random(None), &f.run).await.unwrap_err();
    assert!(err.is_stale(), "{err}");
    f.no_more_requests().await;
}

#[tokio::test]
async fn regenerates_a_deleted_secret_with_a_warning_event() {
    let mut f = Fixture::new();
    let old = fingerprint(b"old bytes");
    let mut status = RandomNumberStatus::default();
    status.output.fingerprint = Some(old.clone());
    let obj = random(Some(status));
    let run = f.run.clone();
    let reconcile = tokio::spawn(async move { super::random::reconcile_inner(&obj, &run).await });
    let created = serve(
        &mut f.handle,
        Method::POST,
        "/api/v1/namespaces/ns/secrets",
        201,
        &json!({"metadata": {"resourceVersion": "11"}}),
    )
    .await;
    let event =
        serve(&mut f.handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events", 201, &json!({})).await;
    let outcome = reconcile.await.unwrap().unwrap();
    let labels = &created.body["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "qubesec");
    assert_eq!(labels["qubesec.io/owner-kind"], "QuantumRandomNumber");
    let owner = &created.body["metadata"]["ownerReferences"][0];
    assert_eq!((owner["uid"].as_str(), owner["controller"].as_bool()), (Some(UID), Some(true)));
    let new_fp = outcome.status.output.fingerprint.unwrap();
    assert_ne!(new_fp, old);
    let meta: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            created.body["data"]["metadata"].as_str().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(meta["fingerprint"], new_fp.as_str());
    assert_eq!(
        (event.body["type"].as_str(), event.body["reason"].as_str()),
        (Some("Warning"), Some("SecretRegenerated"))
    );
    let note = event.body["note"].as_str().unwrap();
    assert!(note.contains(&old) && note.contains(&new_fp), "{note}");
    // The write is expected in the cache now: until the watch shows version 11, the next reconcile waits.
    assert!(f.run.awaiting(&("Secret", "ns".into(), "nonce".into())));
    f.no_more_requests().await;
}

#[tokio::test]
async fn encapsulation_waits_for_its_key_pair() {
    let mut f = Fixture::new();
    let obj: QuantumEncapsulateSecret =
        object("QuantumEncapsulateSecret", "bob", json!({"publicKeyRef": {"name": "alice"}}));
    let mut pending: QuantumKEMKeyPair = object("QuantumKEMKeyPair", "alice", json!({"algorithm": "ML-KEM-768"}));
    pending.status = Some(serde_json::from_value(json!({"status": "Pending"})).unwrap());
    put(&mut f.writers.kem_key_pairs, pending);
    let outcome = super::encapsulate::reconcile_inner(&obj, &f.run).await.unwrap();
    assert_eq!(outcome.state, State::pending("WaitingForKeyPair", "waiting for QuantumKEMKeyPair alice to be Ready"));
    assert_eq!(outcome.status, EncapsulateStatus::default());
    f.no_more_requests().await;
}

#[tokio::test]
async fn cross_namespace_references_are_refused_by_default() {
    let mut f = Fixture::new();
    let obj: QuantumEncapsulateSecret =
        object("QuantumEncapsulateSecret", "bob", json!({"publicKeyRef": {"name": "alice", "namespace": "other"}}));
    let err = super::encapsulate::reconcile_inner(&obj, &f.run).await.unwrap_err();
    assert_eq!(err.reason(), "CrossNamespaceRefDenied");
    assert!(err.to_string().contains("spec.publicKeyRef.namespace"));
    f.no_more_requests().await;
}

fn derived(secret: &str, key: Option<&str>) -> QuantumDerivedKey {
    let mut r = json!({"name": secret});
    if let Some(k) = key {
        r["key"] = k.into();
    }
    object("QuantumDerivedKey", "aes", json!({"sharedSecretRef": r}))
}

#[tokio::test]
async fn a_secret_without_the_opt_in_label_is_never_read() {
    let mut f = Fixture::new();
    let run = f.run.clone();
    let reconcile = tokio::spawn(async move {
        super::derived_key::reconcile_inner(&derived("db-password", Some("password")), &run).await
    });
    let meta = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": "db-password", "namespace": "ns"}});
    let read = serve(&mut f.handle, Method::GET, "/api/v1/namespaces/ns/secrets/db-password", 200, &meta).await;
    assert!(read.accept.contains("PartialObjectMetadata"), "asked for the data: {}", read.accept);
    let err = reconcile.await.unwrap().unwrap_err();
    assert_eq!(err.reason(), "InputNotOptedIn");
    assert!(
        err.to_string().contains("qubesec.io/input=true") && err.to_string().contains("spec.sharedSecretRef"),
        "{err}"
    );
    f.no_more_requests().await;
}

#[tokio::test]
async fn an_opted_in_secret_is_read_and_its_value_is_never_fingerprinted_in_status() {
    let mut f = Fixture::new();
    let meta: kube::core::PartialObjectMeta<Secret> = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-password", "namespace": "ns", "labels": {"qubesec.io/input": "true"}}
    }))
    .unwrap();
    put(&mut f.writers.input_secrets, meta);
    let run = f.run.clone();
    let reconcile = tokio::spawn(async move {
        super::derived_key::reconcile_inner(&derived("db-password", Some("password")), &run).await
    });
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db-password", "namespace": "ns", "uid": "u1", "resourceVersion": "3", "labels": {"qubesec.io/input": "true"}},
        "data": {"password": b64(b"hunter2")}});
    let read = serve(&mut f.handle, Method::GET, "/api/v1/namespaces/ns/secrets/db-password", 200, &secret).await;
    assert!(!read.accept.contains("PartialObjectMetadata"));
    let created = serve(
        &mut f.handle,
        Method::POST,
        "/api/v1/namespaces/ns/secrets",
        201,
        &json!({"metadata": {"resourceVersion": "12"}}),
    )
    .await;
    serve(&mut f.handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events", 201, &json!({})).await;
    let outcome = reconcile.await.unwrap().unwrap();
    assert!(created.body["data"]["key"].is_string());
    // A key derived from a guessable value: neither it nor the input is fingerprinted in status.
    assert_eq!(outcome.status.output.fingerprint, None);
    assert_eq!(outcome.status.input_fingerprint, None);
    let text = serde_json::to_string(&outcome.status).unwrap();
    assert!(!text.contains("sha256:"), "{text}");
    f.no_more_requests().await;
}

#[tokio::test]
async fn private_keys_are_never_inputs() {
    let mut f = Fixture::new();
    put(
        &mut f.writers.secrets,
        owned::<Secret>("Secret", "alice-kem", "QuantumKEMKeyPair", "alice-kem", json!({"private_key": "AAAA"})),
    );
    let err =
        super::derived_key::reconcile_inner(&derived("alice-kem", Some("private_key")), &f.run).await.unwrap_err();
    assert_eq!(err.reason(), "InputNotAllowed");
    assert!(err.to_string().contains("never private keys"), "{err}");
    f.no_more_requests().await;
}

fn signature_key_pair(purpose: &str) -> QuantumSignatureKeyPair {
    let mut kp: QuantumSignatureKeyPair =
        object("QuantumSignatureKeyPair", "ca-key", json!({"algorithm": "ML-DSA-44", "purpose": purpose}));
    kp.status = Some(serde_json::from_value(json!({"conditions": ready(1), "fingerprint": "sha256:k"})).unwrap());
    kp
}

#[tokio::test]
async fn a_ca_key_never_signs_chosen_messages() {
    let mut f = Fixture::new();
    put(&mut f.writers.signature_key_pairs, signature_key_pair("CertificateAuthority"));
    let sign: QuantumSignMessage = object(
        "QuantumSignMessage",
        "forge",
        json!({"keyPairRef": {"name": "ca-key"}, "message": "TBS bytes of my choosing"}),
    );
    let err = super::sign::reconcile_inner(&sign, &f.run).await.unwrap_err();
    assert_eq!(err.reason(), "KeyPurposeMismatch");
    assert!(err.to_string().contains("CertificateAuthority"), "{err}");
    f.no_more_requests().await;
}

#[tokio::test]
async fn a_message_signing_key_never_backs_a_ca_and_a_ca_key_no_leaf() {
    let mut f = Fixture::new();
    put(&mut f.writers.signature_key_pairs, signature_key_pair("Signing"));
    let ca: QuantumCertificate =
        object("QuantumCertificate", "ca", json!({"subject": "CN=CA", "isCA": true, "keyPairRef": {"name": "ca-key"}}));
    let err = super::certificate::reconcile_inner(&ca, &f.run).await.unwrap_err();
    assert_eq!(err.reason(), "KeyPurposeMismatch");
    f.no_more_requests().await;

    let mut f = Fixture::new();
    put(&mut f.writers.signature_key_pairs, signature_key_pair("CertificateAuthority"));
    let leaf: QuantumCertificate =
        object("QuantumCertificate", "leaf", json!({"subject": "CN=leaf", "keyPairRef": {"name": "ca-key"}}));
    let err = super::certificate::reconcile_inner(&leaf, &f.run).await.unwrap_err();
    assert_eq!(err.reason(), "KeyPurposeMismatch");
    f.no_more_requests().await;
}

#[tokio::test]
async fn user_errors_become_failed_status_without_requeue() {
    let mut f = Fixture::new();
    let mut status = RandomNumberStatus::default();
    status.output.fingerprint = Some("sha256:kept".into());
    let obj = random(Some(status));
    let reply = serde_json::to_value(&obj).unwrap();
    let ctx = f.run.ctx.clone();
    let task = tokio::spawn(async move {
        let result: crate::error::Result<Outcome<RandomNumberStatus>> =
            Err(Error::user("OutputNotOwned", "Secret x is not ours"));
        finish(&obj, &ctx, Instant::now(), result).await
    });
    let patch = serve(
        &mut f.handle,
        Method::PATCH,
        "/apis/qubesec.io/v1/namespaces/ns/quantumrandomnumbers/nonce/status",
        200,
        &reply,
    )
    .await;
    assert!(patch.query.contains("fieldManager=qubesec-operator"), "{}", patch.query);
    let event =
        serve(&mut f.handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events", 201, &json!({})).await;
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    let status = &patch.body["status"];
    assert_eq!(
        patch.body["metadata"]["resourceVersion"], "10",
        "the status write carries the version it was computed from"
    );
    assert_eq!(status["status"], "Failed");
    assert_eq!(status["error"], "Secret x is not ours");
    assert_eq!(status["fingerprint"], "sha256:kept", "the recorded fingerprint survives a failure");
    let ready = &status["conditions"][0];
    assert_eq!((ready["type"].as_str(), ready["status"].as_str()), (Some("Ready"), Some("False")));
    assert_eq!((ready["reason"].as_str(), ready["observedGeneration"].as_i64()), (Some("OutputNotOwned"), Some(1)));
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(f.run.metrics.count("randomnumber", "user"), 1);
}

#[tokio::test]
async fn transient_errors_are_returned_for_backoff_and_stale_views_only_requeue() {
    let mut f = Fixture::new();
    let obj = random(None);
    let reply = serde_json::to_value(&obj).unwrap();
    let (ctx, o) = (f.run.ctx.clone(), obj.clone());
    let task = tokio::spawn(async move {
        let result: crate::error::Result<Outcome<RandomNumberStatus>> = Err(Error::Transient("apiserver busy".into()));
        finish(&o, &ctx, Instant::now(), result).await
    });
    let patch = serve(
        &mut f.handle,
        Method::PATCH,
        "/apis/qubesec.io/v1/namespaces/ns/quantumrandomnumbers/nonce/status",
        200,
        &reply,
    )
    .await;
    serve(&mut f.handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events", 201, &json!({})).await;
    assert!(task.await.unwrap().is_err());
    assert_eq!(patch.body["status"]["status"], "Pending");
    let a1 = crate::reconcile::error_policy(Arc::new(obj.clone()), &Error::Transient(String::new()), f.run.clone());
    let a2 = crate::reconcile::error_policy(Arc::new(obj.clone()), &Error::Transient(String::new()), f.run.clone());
    assert_eq!((a1, a2), (Action::requeue(Duration::from_secs(5)), Action::requeue(Duration::from_secs(10))));
    // A stale view: no status, no event, a quick look again.
    let stale: crate::error::Result<Outcome<RandomNumberStatus>> = Err(Error::Stale("cache".into()));
    assert_eq!(
        finish(&obj, &f.run, Instant::now(), stale).await.unwrap(),
        Action::requeue(crate::reconcile::STALE_RETRY)
    );
    f.no_more_requests().await;
}

#[tokio::test]
async fn an_unchanged_status_is_not_written_again() {
    let mut f = Fixture::new();
    let mut status = RandomNumberStatus::default();
    status.output.fingerprint = Some("sha256:x".into());
    let mut obj = random(None);
    let reply = serde_json::to_value(&obj).unwrap();
    let (ctx, o, st) = (f.run.ctx.clone(), obj.clone(), status.clone());
    let task = tokio::spawn(async move {
        finish(&o, &ctx, Instant::now(), Ok(Outcome::new(st, State::ready("Generated", "ok")))).await
    });
    let patch = serve(
        &mut f.handle,
        Method::PATCH,
        "/apis/qubesec.io/v1/namespaces/ns/quantumrandomnumbers/nonce/status",
        200,
        &reply,
    )
    .await;
    serve(&mut f.handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events", 201, &json!({})).await;
    task.await.unwrap().unwrap();
    obj.status = Some(serde_json::from_value(patch.body["status"].clone()).unwrap());
    assert_eq!(obj.status.as_ref().map(|s| s.common.status), Some(Some(Phase::Success)));
    finish(&obj, &f.run, Instant::now(), Ok(Outcome::new(status, State::ready("Generated", "ok")))).await.unwrap();
    f.no_more_requests().await;
}

fn kem_pair(status: Option<KeyPairStatus>) -> QuantumKEMKeyPair {
    let mut k: QuantumKEMKeyPair = object("QuantumKEMKeyPair", "alice", json!({"algorithm": "Kyber768"}));
    k.status = status;
    k
}

#[tokio::test]
async fn key_pair_refuses_a_stored_key_that_does_not_match_the_recorded_fingerprint() {
    let mut f = Fixture::new();
    let key = qubesec_core::PrivateKey::generate(qubesec_core::KemAlgorithm::MlKem768.into()).unwrap();
    let public_pem = key.public_key().unwrap().to_spki_pem().unwrap();
    let mut status = KeyPairStatus::default();
    status.output.fingerprint = Some("sha256:recorded".into());
    put(
        &mut f.writers.secrets,
        owned::<Secret>(
            "Secret",
            "alice",
            "QuantumKEMKeyPair",
            "alice",
            json!({"public_key.pem": b64(public_pem.as_bytes())}),
        ),
    );
    put(&mut f.writers.config_maps, owned::<ConfigMap>("ConfigMap", "alice", "QuantumKEMKeyPair", "alice", json!({})));
    let err = super::keypair::reconcile_key_pair(&kem_pair(Some(status)), &f.run).await.unwrap_err();
    assert_eq!(err.reason(), "FingerprintMismatch");
    assert!(err.to_string().contains("sha256:recorded") && err.to_string().contains("delete the Secret"), "{err}");
    f.no_more_requests().await;
}

#[tokio::test]
async fn key_pair_generates_once_and_publishes_the_public_key() {
    let mut f = Fixture::new();
    let run = f.run.clone();
    let task = tokio::spawn(async move { super::keypair::reconcile_key_pair(&kem_pair(None), &run).await });
    let secret = serve(
        &mut f.handle,
        Method::POST,
        "/api/v1/namespaces/ns/secrets",
        201,
        &json!({"metadata": {"resourceVersion": "11"}}),
    )
    .await;
    let generated =
        serve(&mut f.handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events", 201, &json!({})).await;
    let deprecated =
        serve(&mut f.handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events", 201, &json!({})).await;
    let cm = serve(
        &mut f.handle,
        Method::POST,
        "/api/v1/namespaces/ns/configmaps",
        201,
        &json!({"metadata": {"resourceVersion": "12"}}),
    )
    .await;
    let outcome = task.await.unwrap().unwrap();
    let keys: Vec<&str> = secret.body["data"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["metadata", "private_key", "private_key.pem", "public_key", "public_key.pem"]);
    assert!(cm.body["data"]["public_key.pem"].as_str().unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));
    assert!(cm.body["data"].get("private_key.pem").is_none() && cm.body["binaryData"]["public_key"].is_string());
    let fp = outcome.status.output.fingerprint.unwrap();
    assert_eq!(outcome.status.output.algorithm.as_deref(), Some("ML-KEM-768"));
    assert_eq!(generated.body["reason"], "KeyGenerated");
    assert!(generated.body["note"].as_str().unwrap().contains(&fp));
    assert_eq!(
        (deprecated.body["type"].as_str(), deprecated.body["reason"].as_str()),
        (Some("Warning"), Some("DeprecatedAlgorithmName"))
    );
    assert!(outcome.state.message.contains("Kyber768"), "{}", outcome.state.message);
    f.no_more_requests().await;
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
