//! One controller per kind over the shared watches of [`crate::cache`]: each kind's queue is fed
//! by the changes routed to it, and kube's `applier` runs `reconcile::reconcile` on it
//! with at most `--max-concurrent-reconciles` objects at a time, per-object backoff and requeues.

mod certificate;
mod decapsulate;
mod derived_key;
mod encapsulate;
mod keypair;
mod random;
mod sign;
mod verify;

use std::convert::Infallible;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::runtime::applier;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::utils::CancelableJoinHandle;

use crate::cache::{Queues, Run, Triggers, Watches, kind_name, synced, watches};
use crate::context::Context;
use crate::crd::{
    QuantumCertificate, QuantumDecapsulateSecret, QuantumDerivedKey, QuantumEncapsulateSecret, QuantumKEMKeyPair,
    QuantumRandomNumber, QuantumSignMessage, QuantumSignatureKeyPair, QuantumVerifySignature,
};
use crate::reconcile::{Reconcile, error_policy, reconcile};

/// The kinds with a controller.
const KINDS: [&str; 9] = [
    "QuantumKEMKeyPair",
    "QuantumSignatureKeyPair",
    "QuantumRandomNumber",
    "QuantumEncapsulateSecret",
    "QuantumDecapsulateSecret",
    "QuantumDerivedKey",
    "QuantumSignMessage",
    "QuantumVerifySignature",
    "QuantumCertificate",
];

/// Runs the shared watches and all nine controllers until dropped (a lost Lease drops them).
/// The controllers start once every cache holds its first list, so no reconcile acts on a
/// half-filled cache.
pub async fn run(ctx: Arc<Context>) {
    let (triggers, mut queues) = Triggers::new(&KINDS);
    let triggers = Arc::new(triggers);
    let Watches { stores, futures: watch_futures } = watches(&ctx, &triggers);
    let run = Arc::new(Run { ctx, stores });
    let controllers = {
        let run = run.clone();
        async move {
            if synced(&run.stores).await.is_err() {
                tracing::warn!("a watch ended before its first list; the controllers do not start");
                return;
            }
            tracing::info!("caches synced; starting the controllers");
            let all = vec![
                controller::<QuantumKEMKeyPair>(&run, &mut queues),
                controller::<QuantumSignatureKeyPair>(&run, &mut queues),
                controller::<QuantumRandomNumber>(&run, &mut queues),
                controller::<QuantumEncapsulateSecret>(&run, &mut queues),
                controller::<QuantumDecapsulateSecret>(&run, &mut queues),
                controller::<QuantumDerivedKey>(&run, &mut queues),
                controller::<QuantumSignMessage>(&run, &mut queues),
                controller::<QuantumVerifySignature>(&run, &mut queues),
                controller::<QuantumCertificate>(&run, &mut queues),
            ];
            futures::future::join_all(all).await;
        }
    };
    tokio::select! {
        _ = futures::future::join_all(watch_futures) => tracing::warn!("the watches stopped"),
        () = controllers => tracing::warn!("the controllers stopped"),
    }
}

/// The controller of kind `K`: its queue through kube's `applier`.
fn controller<K: Reconcile>(run: &Arc<Run>, queues: &mut Queues) -> BoxFuture<'static, ()> {
    let Some(rx) = queues.remove(kind_name::<K>()) else {
        tracing::error!(kind = K::KIND, "no queue for this kind");
        return futures::future::ready(()).boxed();
    };
    let queue = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
        .map(|(ns, name)| Ok::<_, Infallible>(ObjectRef::<K>::new(&name).within(&ns)));
    let config = kube::runtime::controller::Config::default().concurrency(run.config.max_concurrent_reconciles);
    applier(
        |obj, run| CancelableJoinHandle::spawn(reconcile::<K>(obj, run), &tokio::runtime::Handle::current()),
        error_policy::<K>,
        run.clone(),
        K::store(&run.stores).clone(),
        queue,
        config,
    )
    .for_each(|r| {
        match r {
            Ok((o, _)) => tracing::debug!(kind = K::KIND, object = %o, "reconciled"),
            Err(e) => tracing::debug!(kind = K::KIND, error = %e, "reconcile error"),
        }
        futures::future::ready(())
    })
    .boxed()
}

#[cfg(test)]
mod tests;
