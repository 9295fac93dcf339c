//! What every controller shares: the client, the operator's configuration, the event recorder,
//! metrics, the crypto pool, per-object backoff, and the writes still on their way to the caches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::crypto::CryptoPool;
use crate::error::{Category, Error, Result};
pub use crate::metrics::Metrics;

/// The field manager for every server-side apply, and the Event reporter.
pub const MANAGER: &str = "qubesec-operator";

/// How long a write may take to show up in the watch caches before the operator stops waiting
/// for it and trusts the cache again (a write overtaken by another one never shows up as such).
pub const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(15);

/// Operator settings (command-line flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// Allow `...Ref.namespace` to name another namespace (off: tenants stay isolated).
    pub allow_cross_namespace_refs: bool,
    /// Watch only this namespace (single-namespace mode); `None` watches all.
    pub namespace: Option<String>,
    /// How many objects of one kind are reconciled at the same time (`--max-concurrent-reconciles`).
    pub max_concurrent_reconciles: u16,
    /// Threads of the crypto pool (`--crypto-workers`).
    pub crypto_workers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            allow_cross_namespace_refs: false,
            namespace: None,
            max_concurrent_reconciles: 8,
            crypto_workers: crate::crypto::default_workers(),
        }
    }
}

/// Which object a write went to: `(kind, namespace, name)`.
pub(crate) type ObjectKey = (&'static str, String, String);

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
    /// Where key generation, signing, verification and issuance run.
    pub crypto: CryptoPool,
    failures: Mutex<HashMap<String, u32>>,
    /// Writes on their way to the caches.
    expected: Mutex<Expectations>,
}

/// The `resourceVersion` of each object this operator wrote, until its watch shows it; and the
/// last version each watch showed, since a watch event can arrive before the write's response.
#[derive(Default)]
struct Expectations {
    pending: HashMap<ObjectKey, (String, Instant)>,
    last_seen: HashMap<ObjectKey, String>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Context {
    /// A context over `client`.
    pub fn new(client: Client, config: Config) -> Arc<Self> {
        Self::with_metrics(client, config, Metrics::default())
    }

    /// A context over `client` recording into `metrics` (whose request counter the client may
    /// already carry, see [`Metrics::request_layer`]).
    pub fn with_metrics(client: Client, config: Config, metrics: Metrics) -> Arc<Self> {
        let reporter = Reporter { controller: MANAGER.to_owned(), instance: std::env::var("POD_NAME").ok() };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            crypto: CryptoPool::new(config.crypto_workers),
            client,
            config,
            metrics,
            failures: Mutex::default(),
            expected: Mutex::default(),
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

    /// Runs `op` on the crypto pool and records how long it took under `operation` and `algorithm`.
    ///
    /// # Errors
    /// [`Error::Bug`] if the crypto worker died.
    pub(crate) async fn crypto<T, F>(&self, operation: &'static str, algorithm: &str, op: F) -> Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (out, took) = self.crypto.run(op).await?;
        self.metrics.crypto_took(operation, algorithm, took);
        Ok(out)
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

    /// Remembers that this operator wrote `key` at `resource_version`: until the watch shows that
    /// version (or [`EXPECTATION_TIMEOUT`] passes), the cache is older than what we know.
    pub(crate) fn expect(&self, key: ObjectKey, resource_version: Option<String>) {
        let Some(rv) = resource_version else { return };
        let mut e = self.expected.lock().unwrap_or_else(PoisonError::into_inner);
        if e.last_seen.get(&key) != Some(&rv) {
            e.pending.insert(key, (rv, Instant::now()));
        }
    }

    /// A watch delivered `key` at `resource_version` (`None`: deleted).
    pub(crate) fn saw(&self, key: &ObjectKey, resource_version: Option<&str>) {
        let mut e = self.expected.lock().unwrap_or_else(PoisonError::into_inner);
        match resource_version {
            Some(rv) => {
                if e.pending.get(key).is_some_and(|(want, _)| want == rv) {
                    e.pending.remove(key);
                }
                e.last_seen.insert(key.clone(), rv.to_owned());
            }
            None => {
                e.last_seen.remove(key);
            }
        }
    }

    /// Forgets every expected write of `kind` (after a re-list, which may skip versions).
    pub(crate) fn saw_all(&self, kind: &str) {
        self.expected.lock().unwrap_or_else(PoisonError::into_inner).pending.retain(|(k, _, _), _| *k != kind);
    }

    /// Whether a write to `key` has not reached the cache yet.
    pub(crate) fn awaiting(&self, key: &ObjectKey) -> bool {
        let mut e = self.expected.lock().unwrap_or_else(PoisonError::into_inner);
        match e.pending.get(key) {
            Some((_, at)) if at.elapsed() < EXPECTATION_TIMEOUT => true,
            Some(_) => {
                tracing::debug!(object = ?key, "a write never showed up in the watch; trusting the cache");
                e.pending.remove(key);
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn expected_writes_wait_for_their_version() {
        let (svc, _handle) =
            tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
        let ctx = Context::new(Client::new(svc, "default"), Config { crypto_workers: 1, ..Config::default() });
        let key: ObjectKey = ("Secret", "ns".into(), "s".into());
        assert!(!ctx.awaiting(&key));
        ctx.expect(key.clone(), Some("7".into()));
        assert!(ctx.awaiting(&key));
        ctx.saw(&key, Some("6"));
        assert!(ctx.awaiting(&key), "an older version does not satisfy the expectation");
        ctx.saw(&key, Some("7"));
        assert!(!ctx.awaiting(&key));
        ctx.expect(key.clone(), Some("9".into()));
        ctx.saw_all("ConfigMap");
        assert!(ctx.awaiting(&key));
        ctx.saw_all("Secret");
        assert!(!ctx.awaiting(&key));
        // The watch can show a write before its response arrives: nothing to wait for then.
        ctx.saw(&key, Some("11"));
        ctx.expect(key.clone(), Some("11".into()));
        assert!(!ctx.awaiting(&key));
        ctx.saw(&key, None);
        ctx.expect(key.clone(), Some("11".into()));
        assert!(ctx.awaiting(&key), "a deleted object's old version is no longer known");
    }
}
