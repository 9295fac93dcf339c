//! One controller per kind, all sharing a [`Context`]. Each watches its own
//! kind, the Secrets and ConfigMaps it owns, and the objects it references
//! (mapped back through the controller's store), never polling.

mod certificate;
mod decapsulate;
mod derived_key;
mod encapsulate;
mod keypair;
mod random;
mod sign;
mod verify;

use std::fmt::Display;
use std::sync::Arc;

use futures::future::BoxFuture;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};

use crate::context::Context;
use crate::outputs::{MANAGED_BY, OWNER_KIND};
use crate::reconcile::Managed;

pub use keypair::{kem_public_key, signing_key};

/// All nine controllers as futures; each runs until its watches end (in practice, forever).
pub fn all(ctx: &Arc<Context>) -> Vec<BoxFuture<'static, ()>> {
    vec![
        keypair::controller::<crate::crd::QuantumKEMKeyPair>(ctx.clone()),
        keypair::controller::<crate::crd::QuantumSignatureKeyPair>(ctx.clone()),
        random::controller(ctx.clone()),
        encapsulate::controller(ctx.clone()),
        decapsulate::controller(ctx.clone()),
        derived_key::controller(ctx.clone()),
        sign::controller(ctx.clone()),
        verify::controller(ctx.clone()),
        certificate::controller(ctx.clone()),
        forget_deleted::<crate::crd::QuantumCertificate>(ctx.clone()),
        forget_deleted::<crate::crd::QuantumKEMKeyPair>(ctx.clone()),
        forget_deleted::<crate::crd::QuantumSignatureKeyPair>(ctx.clone()),
    ]
}

/// Removes the metric series of deleted `K` objects (certificate expiry, key age), so alerts
/// never fire for something that no longer exists. A metadata-only watch with kube's backoff;
/// after each (re-)list, objects deleted while the watch was down are dropped too.
fn forget_deleted<K: Managed>(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    use futures::{FutureExt, StreamExt};
    use kube::runtime::WatchStreamExt;
    let mut listed = std::collections::HashSet::new();
    // kube 5: an `Api<PartialObjectMeta<K>>` lists and watches metadata only.
    watcher(ctx.watch_api::<kube::core::PartialObjectMeta<K>>(), watcher::Config::default())
        .default_backoff()
        .for_each(move |event| {
            let key = |o: &kube::core::PartialObjectMeta<K>| (o.namespace().unwrap_or_default(), o.name_any());
            match event {
                Ok(watcher::Event::Delete(obj)) => {
                    ctx.metrics.forget(K::KIND, &obj.namespace().unwrap_or_default(), &obj.name_any())
                }
                Ok(watcher::Event::Init) => listed.clear(),
                Ok(watcher::Event::InitApply(obj)) => {
                    listed.insert(key(&obj));
                }
                Ok(watcher::Event::InitDone) => ctx.metrics.retain(K::KIND, &std::mem::take(&mut listed)),
                Ok(watcher::Event::Apply(_)) | Err(_) => {}
            }
            futures::future::ready(())
        })
        .boxed()
}

/// Runs all nine controllers until they end.
pub async fn run(ctx: Arc<Context>) {
    futures::future::join_all(all(&ctx)).await;
}

/// Watch config for the objects a kind owns: only ours, only that kind's.
pub(crate) fn owned_config<K: Managed>() -> watcher::Config {
    watcher::Config::default().labels(&format!("{}={},{}={}", MANAGED_BY.0, MANAGED_BY.1, OWNER_KIND, K::kind(&())))
}

/// Logs a controller stream item.
pub(crate) async fn log_result<K: Managed, E: Display>(r: Result<(ObjectRef<K>, Action), E>) {
    match r {
        Ok((o, _)) => tracing::debug!(kind = K::KIND, object = %o, "reconciled"),
        Err(e) => tracing::debug!(kind = K::KIND, error = %e, "reconcile error"),
    }
}

/// The objects in `store` for which `refers(obj)` holds, as requests.
pub(crate) fn referrers<K: Managed>(store: &Store<K>, refers: impl Fn(&K) -> bool) -> Vec<ObjectRef<K>> {
    store.state().iter().filter(|o| refers(o)).map(|o| ObjectRef::from_obj(&**o)).collect()
}

/// Whether a reference `(name, namespace?)` from `from` points at `target`.
pub(crate) fn points_at<A: ResourceExt, B: ResourceExt>(from: &A, name: &str, ns: Option<&str>, target: &B) -> bool {
    let from_ns = from.namespace();
    name == target.name_any() && ns.map(str::to_owned).or(from_ns) == target.namespace()
}

#[cfg(test)]
mod tests;
