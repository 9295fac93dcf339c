//! What every controller shares: the client, the operator's configuration, the event recorder and metrics.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::error::{Category, Error, Result};

/// The field manager for every server-side apply, and the Event reporter.
pub const MANAGER: &str = "qubesec-operator";

/// Operator settings (command-line flags).
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Allow `...Ref.namespace` to name another namespace (off: tenants stay isolated).
    pub allow_cross_namespace_refs: bool,
    /// Watch only this namespace (single-namespace mode); `None` watches all.
    pub namespace: Option<String>,
}

/// Counters and gauges, rendered in the Prometheus text format.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    durations: Mutex<BTreeMap<&'static str, (u64, f64)>>,
    cert_expiry: Mutex<BTreeMap<String, i64>>,
}

impl Metrics {
    /// Counts one reconcile of `kind` with `outcome` (`success`, `pending`, or an error category).
    pub fn reconciled(&self, kind: &'static str, outcome: &'static str, took: Duration) {
        *self.reconciles.lock().unwrap_or_else(PoisonError::into_inner).entry((kind, outcome)).or_default() += 1;
        let mut d = self.durations.lock().unwrap_or_else(PoisonError::into_inner);
        let e = d.entry(kind).or_default();
        e.0 += 1;
        e.1 += took.as_secs_f64();
    }

    /// Records a certificate's notAfter (Unix seconds).
    pub fn certificate_expiry(&self, namespace: &str, name: &str, not_after_unix: i64) {
        self.cert_expiry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(format!("{namespace}/{name}"), not_after_unix);
    }

    /// How many reconciles of `kind` ended with `outcome`.
    pub fn count(&self, kind: &'static str, outcome: &'static str) -> u64 {
        self.reconciles.lock().unwrap_or_else(PoisonError::into_inner).get(&(kind, outcome)).copied().unwrap_or(0)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP qubesec_reconciles_total Reconciles by kind and outcome.\n");
        out.push_str("# TYPE qubesec_reconciles_total counter\n");
        for ((kind, outcome), n) in self.reconciles.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let _ = writeln!(out, "qubesec_reconciles_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}");
        }
        out.push_str("# HELP qubesec_reconcile_duration_seconds Time spent reconciling, by kind.\n");
        out.push_str("# TYPE qubesec_reconcile_duration_seconds summary\n");
        for (kind, (n, sum)) in self.durations.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let _ = writeln!(out, "qubesec_reconcile_duration_seconds_count{{kind=\"{kind}\"}} {n}");
            let _ = writeln!(out, "qubesec_reconcile_duration_seconds_sum{{kind=\"{kind}\"}} {sum}");
        }
        out.push_str("# HELP qubesec_certificate_expiry_timestamp_seconds notAfter of each QuantumCertificate.\n");
        out.push_str("# TYPE qubesec_certificate_expiry_timestamp_seconds gauge\n");
        for (name, t) in self.cert_expiry.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let _ = writeln!(out, "qubesec_certificate_expiry_timestamp_seconds{{certificate=\"{name}\"}} {t}");
        }
        out
    }
}

/// Shared state of all controllers.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Operator settings.
    pub config: Config,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Metrics,
    failures: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Context {
    /// A context over `client`.
    pub fn new(client: Client, config: Config) -> Arc<Self> {
        let reporter = Reporter { controller: MANAGER.to_owned(), instance: std::env::var("POD_NAME").ok() };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics: Metrics::default(),
            failures: Mutex::default(),
        })
    }

    /// An API for `K` in `namespace`.
    pub(crate) fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The API the controllers watch: one namespace or all.
    pub(crate) fn watch_api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + DeserializeOwned,
    {
        match &self.config.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// The namespace a reference at `field` points into, refusing other namespaces unless allowed.
    pub(crate) fn ref_namespace(&self, own: &str, field: &str, requested: Option<&str>) -> Result<String> {
        match requested {
            Some(ns) if ns != own && !self.config.allow_cross_namespace_refs => Err(Error::user(
                "CrossNamespaceRefDenied",
                format!(
                    "{field}.namespace: references to namespace {ns:?} are not allowed \
                     (the operator runs without --allow-cross-namespace-refs)"
                ),
            )),
            Some(ns) => Ok(ns.to_owned()),
            None => Ok(own.to_owned()),
        }
    }

    /// Publishes an Event on `obj`; a failure is logged, never fatal.
    pub(crate) async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: impl Into<String>,
    ) {
        let note: String = note.into();
        let ev = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(object = %obj.name_any(), reason, error = %e, "could not publish event");
        }
    }

    /// Counts a consecutive transient failure of `key`; returns how many in a row.
    pub(crate) fn failed(&self, key: &str) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let n = f.entry(key.to_owned()).or_default();
        *n = n.saturating_add(1);
        *n
    }

    /// Forgets the failures of `key` after a success.
    pub(crate) fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    /// Metric label of an error category.
    pub(crate) fn outcome_label(c: Category) -> &'static str {
        c.label()
    }
}
