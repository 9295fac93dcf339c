//! The reconcile skeleton every controller shares: run the kind's logic, turn
//! its outcome or error into a status (server-side applied to the status
//! subresource), an Event on a state change, metrics and a requeue decision.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::context::{Context, MANAGER};
use crate::crd::{CommonStatus, Condition, Phase};
use crate::error::{Category, Error, Result, backoff};

/// How often a healthy resource is looked at again even without a change (resync).
pub const RESYNC: Duration = Duration::from_secs(3600);

/// A QubeSec custom resource, as the shared skeleton sees it.
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
    /// The common part of the current status.
    fn common_status(&self) -> Option<&CommonStatus>;
    /// The current status as JSON (`{}` when there is none).
    fn status_value(&self) -> Value;
}

macro_rules! managed {
    ($ty:ty, $kind:literal) => {
        impl $crate::reconcile::Managed for $ty {
            const KIND: &'static str = $kind;
            fn common_status(&self) -> Option<&$crate::crd::CommonStatus> {
                self.status.as_ref().map(|s| &s.common)
            }
            fn status_value(&self) -> serde_json::Value {
                self.status
                    .as_ref()
                    .and_then(|s| serde_json::to_value(s).ok())
                    .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()))
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
}

/// Namespace of a namespaced object (always set on objects read from the API).
pub fn namespace<K: Resource>(obj: &K) -> Result<String> {
    obj.meta().namespace.clone().ok_or_else(|| Error::bug("namespaced object without a namespace"))
}

/// The object as the API server has it now, not as the (possibly stale) watch cache does:
/// a status we wrote a moment ago may not have reached the cache yet, and acting on the old
/// one would, for instance, take our own fresh Secret for a foreign change. `None` once deleted.
pub async fn fresh<K: Managed>(obj: &K, ctx: &Context) -> Result<Option<Arc<K>>> {
    let ns = namespace(obj)?;
    Ok(ctx.api::<K>(&ns).get_opt(&obj.name_any()).await?.map(Arc::new))
}

fn object_key<K: Managed>(obj: &K) -> String {
    format!("{}/{}/{}", K::KIND, obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Finishes a reconcile: writes the status, emits an Event on a state change, counts, and decides the requeue.
///
/// User errors and bugs become `Failed` and return `Ok` (no fast retry); transient errors are
/// recorded and returned, so [`error_policy`] backs off.
pub async fn finish<K: Managed, S: Serialize>(
    obj: &K,
    ctx: &Context,
    started: Instant,
    result: Result<Outcome<S>>,
) -> Result<Action> {
    let key = object_key(obj);
    match result {
        Ok(outcome) => {
            let status = serde_json::to_value(&outcome.status).map_err(|e| Error::bug(format!("status: {e}")))?;
            write_status(obj, ctx, status, &outcome.state, None).await?;
            ctx.succeeded(&key);
            let label = if outcome.state.phase == Phase::Pending { "pending" } else { "success" };
            ctx.metrics.reconciled(K::KIND, label, started.elapsed());
            let after = outcome.requeue.map_or(RESYNC, |r| r.min(RESYNC));
            Ok(Action::requeue(after))
        }
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

/// The controller's error policy: exponential backoff per object (only transient errors get here).
pub fn error_policy<K: Managed>(obj: Arc<K>, _err: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(backoff(ctx.failed(&object_key(&*obj))))
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now()).to_string()
}

/// Merges the common fields into `status` and applies it if it differs from what the object has.
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
            "status": status,
        });
        ctx.api::<K>(&ns)
            .patch_status(&obj.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
            .await?;
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
