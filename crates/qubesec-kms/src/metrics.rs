//! Prometheus metrics (`prometheus-client`).
//!
//! - `qubesec_kms_requests_total{method,code}`: gRPC requests by method and code.
//! - `qubesec_kms_request_duration_seconds{method}`: latency histogram.
//! - `qubesec_kms_active_key_info{key_id}`: 1 for the key id Encrypt uses.
//! - `qubesec_kms_backend_errors_total{backend,operation}`: backend failures.
//! - `qubesec_kms_healthy`: 1 when the last health probe succeeded.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    key_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: &'static str,
    operation: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// The plugin's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<MethodLabels, Histogram, fn() -> Histogram>,
    active_key: Family<KeyLabels, Gauge>,
    active_key_id: Mutex<Option<String>>,
    backend_errors: Family<BackendLabels, Counter>,
    healthy: Gauge,
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
        let mut registry = Registry::with_prefix("qubesec_kms");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<MethodLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let active_key = Family::<KeyLabels, Gauge>::default();
        let backend_errors = Family::<BackendLabels, Counter>::default();
        let healthy = Gauge::default();
        registry.register("requests", "KMS v2 gRPC requests by method and status code", requests.clone());
        registry.register("request_duration_seconds", "KMS v2 gRPC request latency", latency.clone());
        registry.register("active_key", "The key id Encrypt uses (value 1)", active_key.clone());
        registry.register("backend_errors", "Key backend failures by operation", backend_errors.clone());
        registry.register("healthy", "1 when the last health round trip succeeded", healthy.clone());
        Self { registry, requests, latency, active_key, active_key_id: Mutex::new(None), backend_errors, healthy }
    }

    /// Records one finished request.
    pub fn observe(&self, method: &'static str, code: tonic::Code, seconds: f64) {
        self.requests.get_or_create(&RequestLabels { method, code: format!("{code:?}") }).inc();
        self.latency.get_or_create(&MethodLabels { method }).observe(seconds);
    }

    /// Records a backend failure.
    pub fn backend_error(&self, backend: &'static str, operation: &'static str) {
        self.backend_errors.get_or_create(&BackendLabels { backend, operation }).inc();
    }

    /// Sets the active key id (the previous one's series is removed).
    pub fn set_active_key(&self, key_id: &str) {
        let Ok(mut current) = self.active_key_id.lock() else { return };
        if current.as_deref() == Some(key_id) {
            return;
        }
        if let Some(old) = current.take() {
            self.active_key.remove(&KeyLabels { key_id: old });
        }
        self.active_key.get_or_create(&KeyLabels { key_id: key_id.to_owned() }).set(1);
        *current = Some(key_id.to_owned());
    }

    /// Sets the health gauge.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.set(i64::from(healthy));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_metric() {
        let m = Metrics::new();
        m.observe("Encrypt", tonic::Code::Ok, 0.001);
        m.observe("Decrypt", tonic::Code::NotFound, 0.002);
        m.backend_error("pkcs11", "encrypt");
        m.set_active_key("qubesec-kms/v1/0011223344556677");
        m.set_active_key("qubesec-kms/v2/8899aabbccddeeff");
        m.set_healthy(true);
        let text = m.encode();
        assert!(text.contains(r#"qubesec_kms_requests_total{method="Encrypt",code="Ok"} 1"#), "{text}");
        assert!(text.contains(r#"qubesec_kms_requests_total{method="Decrypt",code="NotFound"} 1"#), "{text}");
        assert!(text.contains(r#"qubesec_kms_request_duration_seconds_count{method="Encrypt"} 1"#), "{text}");
        assert!(text.contains(r#"qubesec_kms_backend_errors_total{backend="pkcs11",operation="encrypt"} 1"#));
        assert!(text.contains(r#"qubesec_kms_active_key{key_id="qubesec-kms/v2/8899aabbccddeeff"} 1"#), "{text}");
        assert!(!text.contains("qubesec-kms/v1/"), "old key id series removed");
        assert!(text.contains("qubesec_kms_healthy 1"));
    }
}
