//! What every controller shares: the client, the operator's configuration, the event recorder and metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::NamespaceResourceScope;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::error::{Category, Error, Result};
pub use crate::metrics::Metrics;

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
