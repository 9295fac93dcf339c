//! Prometheus metrics (`prometheus-client`), served in the OpenMetrics text format.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `qubesec_reconciles_total` | counter | `kind`, `outcome` (`success`, `pending`, `user`, `transient`, `bug`) |
//! | `qubesec_reconcile_errors_total` | counter | `kind`, `category` (`user`, `transient`, `bug`) |
//! | `qubesec_reconcile_duration_seconds` | histogram | `kind` |
//! | `qubesec_crypto_operation_duration_seconds` | histogram | `operation`, `algorithm` |
//! | `qubesec_certificate_expiry_timestamp_seconds` | gauge | `namespace`, `name` |
//! | `qubesec_certificate_renewal_timestamp_seconds` | gauge | `namespace`, `name` |
//! | `qubesec_key_created_timestamp_seconds` | gauge | `kind`, `namespace`, `name`, `algorithm` |
//! | `qubesec_key_rotations_total` | counter | `kind` |
//! | `qubesec_leader` | gauge | (1 while this replica reconciles) |
//! | `qubesec_kube_requests_total` | counter | `verb` (`get`, `list`, `watch`, `create`, `update`, `patch`, ...), `resource` |
//!
//! Timestamps are Unix seconds, so a key's age is `time() - qubesec_key_created_timestamp_seconds`.
//! Series of a deleted certificate or key pair are removed ([`Metrics::forget`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: &'static str,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CryptoLabels {
    operation: &'static str,
    algorithm: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    kind: &'static str,
    namespace: String,
    name: String,
    algorithm: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn reconcile_buckets() -> Histogram {
    // 1 ms .. ~33 s: API round trips dominate a reconcile.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn crypto_buckets() -> Histogram {
    // 10 µs .. ~2.6 s: ML-KEM operations take tens of µs, SLH-DSA signing up to a second.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 19))
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The operator's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<OutcomeLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    reconcile_duration: Histograms<KindLabels>,
    crypto: Histograms<CryptoLabels>,
    cert_expiry: Family<ObjectLabels, Gauge>,
    cert_renewal: Family<ObjectLabels, Gauge>,
    key_created: Family<KeyLabels, Gauge>,
    /// The label set each key pair's `key_created` series has now, to replace it on a change.
    key_series: Mutex<HashMap<(&'static str, String, String), KeyLabels>>,
    /// The certificates that have expiry and renewal series, to drop those of vanished ones.
    cert_series: Mutex<HashSet<(String, String)>>,
    rotations: Family<KindLabels, Counter>,
    leader: Gauge,
    requests: Family<RequestLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("qubesec");
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration = Histograms::<KindLabels>::new_with_constructor(reconcile_buckets as fn() -> Histogram);
        let crypto = Histograms::<CryptoLabels>::new_with_constructor(crypto_buckets as fn() -> Histogram);
        let cert_expiry = Family::<ObjectLabels, Gauge>::default();
        let cert_renewal = Family::<ObjectLabels, Gauge>::default();
        let key_created = Family::<KeyLabels, Gauge>::default();
        let rotations = Family::<KindLabels, Counter>::default();
        let leader = Gauge::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("reconciles", "Reconciles by kind and outcome", reconciles.clone());
        registry.register("reconcile_errors", "Failed reconciles by kind and error category", errors.clone());
        registry.register("reconcile_duration_seconds", "Time spent in one reconcile", reconcile_duration.clone());
        registry.register(
            "crypto_operation_duration_seconds",
            "Time spent in one cryptographic operation, by operation and algorithm",
            crypto.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of each QuantumCertificate (Unix seconds)",
            cert_expiry.clone(),
        );
        registry.register(
            "certificate_renewal_timestamp_seconds",
            "When the operator renews each QuantumCertificate (Unix seconds)",
            cert_renewal.clone(),
        );
        registry.register(
            "key_created_timestamp_seconds",
            "When each key pair's current key was generated (Unix seconds)",
            key_created.clone(),
        );
        registry.register(
            "key_rotations",
            "Scheduled key pair rotations (spec.rotation.every) by kind",
            rotations.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease (or runs without election)",
            leader.clone(),
        );
        registry.register(
            "kube_requests",
            "Requests to the Kubernetes API by verb and resource (counted when the client carries request_layer)",
            requests.clone(),
        );
        Self {
            registry,
            requests,
            reconciles,
            errors,
            reconcile_duration,
            crypto,
            cert_expiry,
            cert_renewal,
            key_created,
            key_series: Mutex::default(),
            cert_series: Mutex::default(),
            rotations,
            leader,
        }
    }

    /// Counts one reconcile of `kind` ending with `outcome` (`success`, `pending`, or an error category).
    pub fn reconciled(&self, kind: &'static str, outcome: &'static str, took: Duration) {
        self.reconciles.get_or_create(&OutcomeLabels { kind, outcome }).inc();
        self.reconcile_duration.get_or_create(&KindLabels { kind }).observe(took.as_secs_f64());
    }

    /// Counts one failed reconcile of `kind` in error `category`.
    pub fn reconcile_error(&self, kind: &'static str, category: &'static str) {
        self.errors.get_or_create(&ErrorLabels { kind, category }).inc();
    }

    /// Runs `op` and records how long it took under `operation` and `algorithm`.
    pub fn crypto<T>(&self, operation: &'static str, algorithm: &str, op: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = op();
        let labels = CryptoLabels { operation, algorithm: algorithm.to_owned() };
        self.crypto.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        out
    }

    /// Records how long a cryptographic operation took (on the crypto pool).
    pub fn crypto_took(&self, operation: &'static str, algorithm: &str, took: Duration) {
        let labels = CryptoLabels { operation, algorithm: algorithm.to_owned() };
        self.crypto.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// A tower layer for the operator's Kubernetes client that counts every request into
    /// `qubesec_kube_requests_total`: how many API calls the operator makes, and which write.
    pub fn request_layer(
        &self,
    ) -> tower::util::MapRequestLayer<
        impl Fn(http::Request<kube::client::Body>) -> http::Request<kube::client::Body> + Clone + use<>,
    > {
        let requests = self.requests.clone();
        tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
            let (verb, resource) = classify(req.method(), req.uri());
            requests.get_or_create(&RequestLabels { verb, resource }).inc();
            req
        })
    }

    /// How many requests of `verb` the client made so far (all resources).
    pub fn requests(&self, verb: &str) -> u64 {
        let mut total = 0;
        let text = self.encode();
        for line in text.lines().filter(|l| l.starts_with("qubesec_kube_requests_total{")) {
            if line.contains(&format!("verb=\"{verb}\"")) {
                total += line.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
            }
        }
        total
    }

    /// Records a certificate's notAfter and renewal time.
    pub fn certificate(&self, namespace: &str, name: &str, not_after: SystemTime, renewal: SystemTime) {
        let labels = ObjectLabels { namespace: namespace.to_owned(), name: name.to_owned() };
        self.cert_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((labels.namespace.clone(), labels.name.clone()));
        self.cert_expiry.get_or_create(&labels).set(unix_seconds(not_after));
        self.cert_renewal.get_or_create(&labels).set(unix_seconds(renewal));
    }

    /// Records when a key pair's current key was created.
    pub fn key(&self, kind: &'static str, namespace: &str, name: &str, algorithm: &str, created_unix: i64) {
        let labels =
            KeyLabels { kind, namespace: namespace.to_owned(), name: name.to_owned(), algorithm: algorithm.to_owned() };
        let mut series = self.key_series.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = series.insert((kind, namespace.to_owned(), name.to_owned()), labels.clone())
            && old != labels
        {
            self.key_created.remove(&old);
        }
        self.key_created.get_or_create(&labels).set(created_unix);
    }

    /// Counts a scheduled rotation of a `kind`'s key.
    pub fn rotated(&self, kind: &'static str) {
        self.rotations.get_or_create(&KindLabels { kind }).inc();
    }

    /// Removes the series of a deleted object of `kind`.
    pub fn forget(&self, kind: &'static str, namespace: &str, name: &str) {
        let labels = ObjectLabels { namespace: namespace.to_owned(), name: name.to_owned() };
        if kind == "certificate" {
            self.cert_series
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&(labels.namespace.clone(), labels.name.clone()));
            self.cert_expiry.remove(&labels);
            self.cert_renewal.remove(&labels);
        }
        let key = (kind, labels.namespace, labels.name);
        if let Some(old) = self.key_series.lock().unwrap_or_else(PoisonError::into_inner).remove(&key) {
            self.key_created.remove(&old);
        }
    }

    /// Removes the series of every `kind` object not in `alive` (`(namespace, name)` pairs): after
    /// a watch re-list, objects deleted while it was down are gone from the list but not from here.
    pub fn retain(&self, kind: &'static str, alive: &HashSet<(String, String)>) {
        let mut gone: Vec<(String, String)> = self
            .key_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .filter(|(k, ns, name)| *k == kind && !alive.contains(&(ns.clone(), name.clone())))
            .map(|(_, ns, name)| (ns.clone(), name.clone()))
            .collect();
        if kind == "certificate" {
            let certs = self.cert_series.lock().unwrap_or_else(PoisonError::into_inner);
            gone.extend(certs.iter().filter(|o| !alive.contains(*o)).cloned());
        }
        for (namespace, name) in gone {
            self.forget(kind, &namespace, &name);
        }
    }

    /// Sets the leader gauge. Losing the lease also drops the per-object gauges (certificate
    /// expiry and renewal, key creation): the new leader owns them now, and this replica's copies
    /// would go stale while still looking current.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
        if !leading {
            self.cert_expiry.clear();
            self.cert_renewal.clear();
            self.key_created.clear();
            self.key_series.lock().unwrap_or_else(PoisonError::into_inner).clear();
            self.cert_series.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }

    /// How many reconciles of `kind` ended with `outcome`.
    pub fn count(&self, kind: &'static str, outcome: &'static str) -> u64 {
        self.reconciles.get(&OutcomeLabels { kind, outcome }).map_or(0, |c| c.get())
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The verb and resource of a Kubernetes API request (`/api/v1/namespaces/ns/secrets/name` is a
/// `get` of `secrets`; `?watch=true` makes a `watch`; subresources show as `plural/sub`).
pub fn classify(method: &http::Method, uri: &http::Uri) -> (&'static str, String) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // After `api/<version>` or `apis/<group>/<version>`, maybe `namespaces/<ns>`, then the resource.
    let rest: &[&str] = match segments.first() {
        Some(&"api") => segments.get(2..).unwrap_or_default(),
        Some(&"apis") => segments.get(3..).unwrap_or_default(),
        _ => &[],
    };
    let rest = match rest {
        ["namespaces", _, more @ ..] if !more.is_empty() => more,
        other => other,
    };
    let (resource, named) = match rest {
        [] => ("unknown".to_owned(), false),
        [plural] => ((*plural).to_owned(), false),
        [plural, _name] => ((*plural).to_owned(), true),
        [plural, _name, sub, ..] => (format!("{plural}/{sub}"), true),
    };
    let watching = uri.query().is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match *method {
        http::Method::GET if watching => "watch",
        http::Method::GET if named => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if named => "delete",
        http::Method::DELETE => "deletecollection",
        _ => "other",
    };
    (verb, resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_by_verb_and_resource() {
        let c = |m: http::Method, u: &str| {
            let (v, r) = classify(&m, &u.parse().unwrap());
            (v, r)
        };
        assert_eq!(c(http::Method::GET, "/api/v1/namespaces/ns/secrets/s"), ("get", "secrets".into()));
        assert_eq!(c(http::Method::GET, "/api/v1/secrets?labelSelector=a%3Db"), ("list", "secrets".into()));
        assert_eq!(c(http::Method::GET, "/api/v1/secrets?watch=true&resourceVersion=5"), ("watch", "secrets".into()));
        assert_eq!(
            c(http::Method::POST, "/api/v1/namespaces/ns/configmaps?fieldManager=x"),
            ("create", "configmaps".into())
        );
        assert_eq!(c(http::Method::PUT, "/api/v1/namespaces/ns/configmaps/c"), ("update", "configmaps".into()));
        assert_eq!(
            c(http::Method::PATCH, "/apis/qubesec.io/v1/namespaces/ns/quantumcertificates/c/status"),
            ("patch", "quantumcertificates/status".into())
        );
        assert_eq!(c(http::Method::GET, "/api/v1/namespaces/ns"), ("get", "namespaces".into()));
        assert_eq!(c(http::Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events"), ("create", "events".into()));
        assert_eq!(c(http::Method::GET, "/version"), ("list", "unknown".into()));
    }

    #[test]
    fn named_series_render_with_their_labels() {
        let m = Metrics::new();
        m.reconciled("certificate", "success", Duration::from_millis(3));
        m.reconcile_error("certificate", "user");
        let n = m.crypto("sign", "ML-DSA-65", || 7);
        assert_eq!(n, 7);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        m.certificate("ns", "web", t, t - Duration::from_secs(100));
        m.key("kemkeypair", "ns", "alice", "ML-KEM-768", 1_700_000_000);
        m.set_leader(true);
        let text = m.encode();
        for line in [
            "qubesec_reconciles_total{kind=\"certificate\",outcome=\"success\"} 1",
            "qubesec_reconcile_errors_total{kind=\"certificate\",category=\"user\"} 1",
            "qubesec_reconcile_duration_seconds_count{kind=\"certificate\"} 1",
            "qubesec_crypto_operation_duration_seconds_count{operation=\"sign\",algorithm=\"ML-DSA-65\"} 1",
            "qubesec_certificate_expiry_timestamp_seconds{namespace=\"ns\",name=\"web\"} 2000000000",
            "qubesec_certificate_renewal_timestamp_seconds{namespace=\"ns\",name=\"web\"} 1999999900",
            "qubesec_key_created_timestamp_seconds{kind=\"kemkeypair\",namespace=\"ns\",name=\"alice\",algorithm=\"ML-KEM-768\"} 1700000000",
            "qubesec_leader 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert_eq!(m.count("certificate", "success"), 1);
        assert_eq!(m.count("certificate", "pending"), 0);
    }

    #[test]
    fn forget_and_relabel_remove_stale_series() {
        let m = Metrics::new();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        m.certificate("ns", "web", t, t);
        m.key("certificate", "ns", "web", "ML-DSA-65", 5);
        m.key("certificate", "ns", "web", "ML-DSA-87", 6);
        let text = m.encode();
        assert!(!text.contains("ML-DSA-65"), "the replaced key series stays:\n{text}");
        assert!(text.contains("algorithm=\"ML-DSA-87\"} 6"));
        m.forget("certificate", "ns", "web");
        let text = m.encode();
        assert!(!text.contains("name=\"web\""), "series of a deleted certificate stay:\n{text}");
    }

    #[test]
    fn retain_drops_the_series_of_objects_missing_from_a_relist() {
        let m = Metrics::new();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        m.certificate("ns", "kept", t, t);
        m.certificate("ns", "gone", t, t);
        m.key("kem", "ns", "kept-key", "ML-KEM-768", 5);
        m.key("kem", "ns", "gone-key", "ML-KEM-768", 5);
        m.key("signature", "ns", "other-kind", "ML-DSA-65", 5);
        m.retain("certificate", &HashSet::from([("ns".to_owned(), "kept".to_owned())]));
        m.retain("kem", &HashSet::from([("ns".to_owned(), "kept-key".to_owned())]));
        let text = m.encode();
        assert!(text.contains("name=\"kept\"") && text.contains("name=\"kept-key\""), "{text}");
        assert!(!text.contains("name=\"gone\"") && !text.contains("name=\"gone-key\""), "{text}");
        assert!(text.contains("name=\"other-kind\""), "retain touched another kind:\n{text}");
    }

    #[test]
    fn losing_the_lease_drops_per_object_gauges_but_keeps_counters() {
        let m = Metrics::new();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        m.set_leader(true);
        m.certificate("ns", "web", t, t);
        m.key("kem", "ns", "alice", "ML-KEM-768", 5);
        m.rotated("kem");
        assert!(m.encode().contains("name=\"alice\""));
        m.set_leader(false);
        let text = m.encode();
        assert!(!text.contains("name=\"web\"") && !text.contains("name=\"alice\""), "stale gauges stay:\n{text}");
        assert!(text.contains("qubesec_leader 0"), "{text}");
        assert!(text.contains("qubesec_key_rotations_total{kind=\"kem\"} 1"), "{text}");
    }
}
