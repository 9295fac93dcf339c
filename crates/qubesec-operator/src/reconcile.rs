//! The reconcile every kind shares. A kind implements `Reconcile` as observe → plan → apply:
//! `observe` reads the object, its references and its outputs from the caches (inputs that
//! opted in with a GET), `plan` decides purely what to do and why, `apply` writes only what
//! differs. This module wraps that once for all kinds: it skips an object whose own status write
//! has not reached the cache, turns the outcome or error into a status (written only when it
//! changed, with the object's `resourceVersion` as precondition), an Event on a state change,
//! metrics and a requeue decision.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::cache::{Run, Stores, Target, kind_name};
use crate::context::{Context, MANAGER};
use crate::crd::{CommonStatus, Condition, Phase};
use crate::error::{Category, Error, Result, backoff};

/// How often a healthy resource is looked at again even without a change (resync).
pub const RESYNC: Duration = Duration::from_secs(3600);

/// How soon a reconcile that saw a stale cache (or lost a write race) looks again.
pub const STALE_RETRY: Duration = Duration::from_secs(1);

/// A QubeSec custom resource, as the shared code sees it.
pub trait Managed:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Short kind label for metrics and logs.
    const KIND: &'static str;
    /// The kind's status.
    type Status: Clone + Debug + Default + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The current status.
    fn status(&self) -> Option<&Self::Status>;
    /// The common part of the current status.
    fn common_status(&self) -> Option<&CommonStatus>;
    /// The current status as JSON (`{}` when there is none).
    fn status_value(&self) -> Value {
        self.status()
            .and_then(|s| serde_json::to_value(s).ok())
            .unwrap_or_else(|| Value::Object(serde_json::Map::new()))
    }
}

/// A kind's controller logic.
pub(crate) trait Reconcile: Managed {
    /// The objects this one references (for routing their changes here).
    fn references(&self) -> Vec<Target>;
    /// This kind's cache.
    fn store(stores: &Stores) -> &Store<Self>;
    /// Observe, plan, apply: the outcome, or a categorised error.
    fn reconcile(obj: Arc<Self>, run: Arc<Run>) -> impl Future<Output = Result<Outcome<Self::Status>>> + Send;
}

macro_rules! managed {
    ($ty:ty, $kind:literal, $status:ty) => {
        impl $crate::reconcile::Managed for $ty {
            const KIND: &'static str = $kind;
            type Status = $status;
            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
            fn common_status(&self) -> Option<&$crate::crd::CommonStatus> {
                self.status.as_ref().map(|s| &s.common)
            }
        }
    };
}
pub(crate) use managed;

/// Where a resource stands after a successful reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// `status.status`.
    pub phase: Phase,
    /// The `Ready` condition's status.
    pub ready: bool,
    /// The `Ready` condition's reason.
    pub reason: &'static str,
    /// The `Ready` condition's message.
    pub message: String,
}

impl State {
    /// Ready, output in place.
    pub fn ready(reason: &'static str, message: impl Into<String>) -> Self {
        Self { phase: Phase::Success, ready: true, reason, message: message.into() }
    }

    /// Waiting for an input (e.g. `WaitingForKeyPair`).
    pub fn pending(reason: &'static str, message: impl Into<String>) -> Self {
        Self { phase: Phase::Pending, ready: false, reason, message: message.into() }
    }

    /// The operation ran but its answer is negative (an invalid signature).
    pub fn done_not_ready(reason: &'static str, message: impl Into<String>) -> Self {
        Self { phase: Phase::Success, ready: false, reason, message: message.into() }
    }
}

/// What a kind's reconcile computed.
#[derive(Debug)]
pub struct Outcome<S> {
    /// The kind-specific status (its `common` part is filled in by the skeleton).
    pub status: S,
    /// Phase and Ready condition.
    pub state: State,
    /// When to look again without a change (renewals); `None` means the default resync.
    pub requeue: Option<Duration>,
}

impl<S> Outcome<S> {
    /// An outcome with the default resync.
    pub fn new(status: S, state: State) -> Self {
        Self { status, state, requeue: None }
    }

    /// Waiting for something that exists only without the operator's watches noticing (e.g. an
    /// input without the opt-in label): look again after `after`.
    #[must_use]
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.requeue = Some(after);
        self
    }
}

/// Namespace of a namespaced object (always set on objects read from the API).
pub fn namespace<K: Resource>(obj: &K) -> Result<String> {
    obj.meta().namespace.clone().ok_or_else(|| Error::bug("namespaced object without a namespace"))
}

fn object_key<K: Managed>(obj: &K) -> String {
    format!("{}/{}/{}", K::KIND, obj.namespace().unwrap_or_default(), obj.name_any())
}

/// The reconcile of every kind: skips an object whose status write is not in the cache yet,
/// runs the kind's [`Reconcile::reconcile`] and [`finish`]es.
pub(crate) async fn reconcile<K: Reconcile>(obj: Arc<K>, run: Arc<Run>) -> Result<Action> {
    let started = Instant::now();
    let own = (kind_name::<K>(), obj.namespace().unwrap_or_default(), obj.name_any());
    if run.awaiting(&own) {
        run.metrics.reconciled(K::KIND, "stale", started.elapsed());
        return Ok(Action::requeue(STALE_RETRY));
    }
    let result = K::reconcile(obj.clone(), run.clone()).await;
    finish(&*obj, &run, started, result).await
}

/// Finishes a reconcile: writes the status, emits an Event on a state change, counts, and decides the requeue.
///
/// User errors and bugs become `Failed` and return `Ok` (no fast retry); transient errors are
/// recorded and returned, so [`error_policy`] backs off; a stale view writes nothing and looks
/// again after [`STALE_RETRY`].
pub async fn finish<K: Managed>(
    obj: &K,
    ctx: &Context,
    started: Instant,
    result: Result<Outcome<K::Status>>,
) -> Result<Action> {
    let key = object_key(obj);
    match result {
        Ok(outcome) => {
            let status = serde_json::to_value(&outcome.status).map_err(|e| Error::bug(format!("status: {e}")))?;
            match write_status(obj, ctx, status, &outcome.state, None).await {
                Err(e) if e.is_stale() => return Ok(stale::<K>(ctx, &key, started, &e)),
                other => other?,
            }
            ctx.succeeded(&key);
            let label = if outcome.state.phase == Phase::Pending { "pending" } else { "success" };
            ctx.metrics.reconciled(K::KIND, label, started.elapsed());
            let after = outcome.requeue.map_or(RESYNC, |r| r.min(RESYNC));
            Ok(Action::requeue(after))
        }
        Err(err) if err.is_stale() => Ok(stale::<K>(ctx, &key, started, &err)),
        Err(err) => {
            let category = err.category();
            ctx.metrics.reconciled(K::KIND, Context::outcome_label(category), started.elapsed());
            ctx.metrics.reconcile_error(K::KIND, category.label());
            tracing::warn!(kind = K::KIND, object = %key, category = category.label(), error = %err, "reconcile failed");
            let phase = if category == Category::Transient { Phase::Pending } else { Phase::Failed };
            let state = State { phase, ready: false, reason: err.reason(), message: err.to_string() };
            if let Err(e) = write_status(obj, ctx, obj.status_value(), &state, Some(err.to_string())).await {
                tracing::warn!(object = %key, error = %e, "could not record the failure in status");
            }
            match category {
                Category::User => Ok(Action::await_change()),
                Category::Bug => Ok(Action::requeue(Duration::from_secs(300))),
                Category::Transient => Err(err),
            }
        }
    }
}

fn stale<K: Managed>(ctx: &Context, key: &str, started: Instant, why: &Error) -> Action {
    tracing::debug!(kind = K::KIND, object = %key, reason = %why, "stale view; looking again shortly");
    ctx.metrics.reconciled(K::KIND, "stale", started.elapsed());
    Action::requeue(STALE_RETRY)
}

/// The controller's error policy: exponential backoff per object (only transient errors get here).
pub fn error_policy<K: Managed>(obj: Arc<K>, _err: &Error, ctx: Arc<Run>) -> Action {
    Action::requeue(backoff(ctx.failed(&object_key(&*obj))))
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now()).to_string()
}

/// Merges the common fields into `status` and applies it if it differs from what the object has,
/// at the object's `resourceVersion` (a newer object makes it fail as stale).
async fn write_status<K: Managed>(
    obj: &K,
    ctx: &Context,
    mut status: Value,
    state: &State,
    error: Option<String>,
) -> Result<()> {
    let generation = obj.meta().generation;
    let previous = obj.common_status().and_then(CommonStatus::ready);
    let cond_status = if state.ready { "True" } else { "False" };
    let last_transition_time = match previous {
        Some(c) if c.status == cond_status => c.last_transition_time.clone(),
        _ => now_rfc3339(),
    };
    let changed = previous.is_none_or(|c| c.status != cond_status || c.reason != state.reason);
    let common = CommonStatus {
        conditions: vec![Condition {
            type_: "Ready".to_owned(),
            status: cond_status.to_owned(),
            reason: state.reason.to_owned(),
            message: state.message.clone(),
            observed_generation: generation,
            last_transition_time,
        }],
        observed_generation: generation,
        status: Some(state.phase),
        error,
    };
    let Value::Object(map) = &mut status else {
        return Err(Error::bug("status is not a JSON object"));
    };
    for k in ["conditions", "observedGeneration", "status", "error"] {
        map.remove(k);
    }
    if let Value::Object(c) = serde_json::to_value(&common).map_err(|e| Error::bug(format!("status: {e}")))? {
        map.extend(c);
    }
    if status != obj.status_value() {
        let ns = namespace(obj)?;
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": { "resourceVersion": obj.meta().resource_version },
            "status": status,
        });
        let written = ctx
            .api::<K>(&ns)
            .patch_status(&obj.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
            .await?;
        ctx.expect((kind_name::<K>(), ns, obj.name_any()), written.meta().resource_version.clone());
    }
    if changed {
        let type_ =
            if state.phase == Phase::Failed || (state.phase == Phase::Pending && state.reason == "TransientError") {
                EventType::Warning
            } else {
                EventType::Normal
            };
        ctx.event(obj, type_, state.reason, state.message.clone()).await;
    }
    Ok(())
}
