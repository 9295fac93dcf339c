//! What the operator watches, and how a change reaches the resources it concerns.
//!
//! One watch per resource type, shared by every controller (not one per controller and
//! relation): the nine custom resources; Secrets and ConfigMaps labelled
//! `app.kubernetes.io/managed-by: qubesec` (the operator's outputs, with their data); and,
//! metadata only, Secrets and ConfigMaps labelled `qubesec.io/input: "true"` (inputs users opt
//! in). Unrelated Secrets and ConfigMaps never reach the operator, so its memory does not grow
//! with them. Each watch feeds a [`Store`] and routes every change to the resources it concerns:
//! an object to its own controller, an output to its owner, anything referenced to the resources
//! referencing it (through [`Triggers`], an index kept from the resources' specs).

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Resource;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::context::Context;
use crate::crd::{
    QuantumCertificate, QuantumDecapsulateSecret, QuantumDerivedKey, QuantumEncapsulateSecret, QuantumKEMKeyPair,
    QuantumRandomNumber, QuantumSignMessage, QuantumSignatureKeyPair, QuantumVerifySignature,
};
use crate::outputs::{INPUT_LABEL, MANAGED_BY, qubesec_owner};

/// An object some resource references: `(kind, namespace, name)`, e.g. `("Secret", "ns", "s")`.
pub(crate) type Target = (&'static str, String, String);

/// A resource that references others: `(kind, namespace, name)`.
type Referrer = (&'static str, String, String);

/// Each kind's queue of `(namespace, name)` to reconcile.
pub(crate) type Queues = HashMap<&'static str, UnboundedReceiver<(String, String)>>;

/// The caches every reconcile reads instead of asking the API server.
#[derive(Clone)]
pub struct Stores {
    pub(crate) kem_key_pairs: Store<QuantumKEMKeyPair>,
    pub(crate) signature_key_pairs: Store<QuantumSignatureKeyPair>,
    pub(crate) random_numbers: Store<QuantumRandomNumber>,
    pub(crate) encapsulations: Store<QuantumEncapsulateSecret>,
    pub(crate) decapsulations: Store<QuantumDecapsulateSecret>,
    pub(crate) derived_keys: Store<QuantumDerivedKey>,
    pub(crate) sign_messages: Store<QuantumSignMessage>,
    pub(crate) verify_signatures: Store<QuantumVerifySignature>,
    pub(crate) certificates: Store<QuantumCertificate>,
    /// Secrets labelled `app.kubernetes.io/managed-by: qubesec`, with data.
    pub(crate) secrets: Store<Secret>,
    /// ConfigMaps labelled `app.kubernetes.io/managed-by: qubesec`, with data.
    pub(crate) config_maps: Store<ConfigMap>,
    /// Secrets labelled `qubesec.io/input: "true"`, metadata only.
    pub(crate) input_secrets: Store<PartialObjectMeta<Secret>>,
    /// ConfigMaps labelled `qubesec.io/input: "true"`, metadata only.
    pub(crate) input_config_maps: Store<PartialObjectMeta<ConfigMap>>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}

/// A controller run: the shared context plus the caches of this run (a new leader term starts
/// new watches). Reconcilers get an `Arc<Run>`; it dereferences to the [`Context`].
#[derive(Debug)]
pub struct Run {
    /// The long-lived context.
    pub ctx: Arc<Context>,
    /// This run's caches.
    pub stores: Stores,
}

impl Deref for Run {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.ctx
    }
}

/// Routes changes to the resources they concern: one queue per kind, and an index from each
/// referenced object to the resources referencing it.
#[derive(Default)]
pub struct Triggers {
    queues: HashMap<&'static str, UnboundedSender<(String, String)>>,
    index: Mutex<Index>,
}

impl std::fmt::Debug for Triggers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Triggers").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Index {
    by_target: HashMap<Target, HashSet<Referrer>>,
    by_referrer: HashMap<Referrer, Vec<Target>>,
}

impl Triggers {
    /// Triggers with a queue per kind in `kinds`; returns the receivers by kind.
    pub(crate) fn new(kinds: &[&'static str]) -> (Self, Queues) {
        let mut queues = HashMap::new();
        let mut receivers = HashMap::new();
        for kind in kinds {
            let (tx, rx) = unbounded_channel();
            queues.insert(*kind, tx);
            receivers.insert(*kind, rx);
        }
        (Self { queues, index: Mutex::default() }, receivers)
    }

    /// Asks for a reconcile of `kind` `namespace/name` (ignored for kinds without a controller).
    pub(crate) fn reconcile(&self, kind: &str, namespace: &str, name: &str) {
        if let Some(q) = self.queues.get(kind) {
            let _ = q.send((namespace.to_owned(), name.to_owned()));
        }
    }

    /// Asks for a reconcile of every resource referencing `target`.
    pub(crate) fn referenced(&self, target: &Target) {
        let referrers: Vec<Referrer> = {
            let index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
            index.by_target.get(target).map(|r| r.iter().cloned().collect()).unwrap_or_default()
        };
        for (kind, ns, name) in referrers {
            self.reconcile(kind, &ns, &name);
        }
    }

    /// Records what `referrer` references now (replacing what it referenced before).
    pub(crate) fn set_references(&self, referrer: Referrer, targets: Vec<Target>) {
        let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        let Index { by_target, by_referrer } = &mut *index;
        for old in by_referrer.remove(&referrer).unwrap_or_default() {
            if let Some(set) = by_target.get_mut(&old) {
                set.remove(&referrer);
                if set.is_empty() {
                    by_target.remove(&old);
                }
            }
        }
        if !targets.is_empty() {
            for t in &targets {
                by_target.entry(t.clone()).or_default().insert(referrer.clone());
            }
            by_referrer.insert(referrer, targets);
        }
    }
}

/// A change a watch reports, after the store has taken it.
pub(crate) enum Change<'a, K> {
    /// Created or updated (or listed).
    Applied(&'a K),
    /// Deleted (or gone from a re-list).
    Deleted(&'a K),
    /// A re-list completed (events may have been skipped).
    Relisted,
}

/// A watch of `api` with `config` feeding a store, calling `on_change` for every change. The
/// future runs until dropped (the watch restarts with backoff). Objects gone from a re-list are
/// reported as [`Change::Deleted`], so nothing deleted while a watch was down goes unnoticed.
pub(crate) fn informer<K>(
    api: Api<K>,
    config: watcher::Config,
    mut on_change: impl FnMut(Change<'_, K>) + Send + 'static,
) -> (Store<K>, BoxFuture<'static, ()>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, mut writer) = reflector::store::<K>();
    let store = reader.clone();
    let mut listed: HashSet<reflector::ObjectRef<K>> = HashSet::new();
    let run = watcher(api, config)
        .default_backoff()
        .modify(slim)
        .for_each(move |event| {
            match event {
                Ok(Event::Apply(obj)) => {
                    writer.apply_watcher_event(&Event::Apply(obj.clone()));
                    on_change(Change::Applied(&obj));
                }
                Ok(Event::Delete(obj)) => {
                    writer.apply_watcher_event(&Event::Delete(obj.clone()));
                    on_change(Change::Deleted(&obj));
                }
                Ok(Event::Init) => {
                    listed.clear();
                    writer.apply_watcher_event(&Event::Init);
                }
                Ok(Event::InitApply(obj)) => {
                    listed.insert(reflector::ObjectRef::from_obj(&obj));
                    writer.apply_watcher_event(&Event::InitApply(obj));
                }
                Ok(Event::InitDone) => {
                    let before = reader.state();
                    writer.apply_watcher_event(&Event::InitDone);
                    for gone in before.iter().filter(|o| !listed.contains(&reflector::ObjectRef::from_obj(&***o))) {
                        on_change(Change::Deleted(gone));
                    }
                    on_change(Change::Relisted);
                    for obj in reader.state() {
                        on_change(Change::Applied(&obj));
                    }
                    listed.clear();
                }
                Err(e) => tracing::warn!(error = %e, kind = %K::kind(&()), "watch failed; retrying"),
            }
            futures::future::ready(())
        })
        .boxed();
    (store, run)
}

/// Drops what no reconcile reads from a cached object: `managedFields` and kubectl's
/// last-applied copy of the object (together often larger than the object itself).
fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

fn key_of<K: Resource>(obj: &K) -> (String, String) {
    (obj.meta().namespace.clone().unwrap_or_default(), obj.meta().name.clone().unwrap_or_default())
}

/// The watch API of `K` in the operator's scope.
fn api<K>(ctx: &Context) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + DeserializeOwned,
{
    ctx.watch_api::<K>()
}

/// The watch of a custom resource kind: keeps the reference index, queues the object for its
/// controller, wakes the resources referencing it, and drops metric series of deleted objects.
pub(crate) fn resource_informer<K>(
    ctx: &Arc<Context>,
    triggers: &Arc<Triggers>,
    references: fn(&K) -> Vec<Target>,
) -> (Store<K>, BoxFuture<'static, ()>)
where
    K: crate::reconcile::Managed,
{
    let (ctx2, triggers) = (ctx.clone(), triggers.clone());
    let kind: &'static str = kind_name::<K>();
    informer(api::<K>(ctx), watcher::Config::default(), move |change| match change {
        Change::Applied(obj) => {
            let (ns, name) = key_of(obj);
            ctx2.saw(&(kind, ns.clone(), name.clone()), obj.meta().resource_version.as_deref());
            triggers.set_references((kind, ns.clone(), name.clone()), references(obj));
            triggers.reconcile(kind, &ns, &name);
            triggers.referenced(&(kind, ns, name));
        }
        Change::Deleted(obj) => {
            let (ns, name) = key_of(obj);
            ctx2.saw(&(kind, ns.clone(), name.clone()), None);
            triggers.set_references((kind, ns.clone(), name.clone()), Vec::new());
            ctx2.metrics.forget(K::KIND, &ns, &name);
            triggers.referenced(&(kind, ns, name));
        }
        Change::Relisted => ctx2.saw_all(kind),
    })
}

/// The watch of the operator's outputs of type `K` (Secrets or ConfigMaps, by label): wakes the
/// owner, and the resources referencing the object.
fn output_informer<K>(ctx: &Arc<Context>, triggers: &Arc<Triggers>) -> (Store<K>, BoxFuture<'static, ()>)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (ctx2, triggers) = (ctx.clone(), triggers.clone());
    let kind: &'static str = kind_name::<K>();
    let config = watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    informer(api::<K>(ctx), config, move |change| {
        let (obj, applied) = match change {
            Change::Applied(o) => (o, true),
            Change::Deleted(o) => (o, false),
            Change::Relisted => return ctx2.saw_all(kind),
        };
        let (ns, name) = key_of(obj);
        let version = if applied { obj.meta().resource_version.as_deref() } else { None };
        ctx2.saw(&(kind, ns.clone(), name.clone()), version);
        if let Some(owner) = qubesec_owner(obj.meta()) {
            triggers.reconcile(&owner.kind, &ns, &owner.name);
            // Whoever uses the owner's outputs (an encapsulation its key pair's public key, a
            // leaf its CA's key) looks again too: the output may reach the cache after the owner.
            if let Some(kind) = static_kind(&owner.kind) {
                triggers.referenced(&(kind, ns.clone(), owner.name.clone()));
            }
        }
        triggers.referenced(&(kind, ns, name));
    })
}

/// The metadata-only watch of opted-in inputs of type `K`: wakes the resources referencing them.
fn input_informer<K>(
    ctx: &Arc<Context>,
    triggers: &Arc<Triggers>,
) -> (Store<PartialObjectMeta<K>>, BoxFuture<'static, ()>)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    PartialObjectMeta<K>: Resource<DynamicType = (), Scope = NamespaceResourceScope> + DeserializeOwned,
{
    let triggers = triggers.clone();
    let kind: &'static str = kind_name::<K>();
    let config = watcher::Config::default().labels(&format!("{}={}", INPUT_LABEL.0, INPUT_LABEL.1));
    informer(api::<PartialObjectMeta<K>>(ctx), config, move |change| match change {
        Change::Applied(obj) | Change::Deleted(obj) => {
            let (ns, name) = key_of(obj);
            triggers.referenced(&(kind, ns, name));
        }
        Change::Relisted => {}
    })
}

/// The kinds resources reference, as the static names [`Target`]s use.
fn static_kind(kind: &str) -> Option<&'static str> {
    ["QuantumKEMKeyPair", "QuantumSignatureKeyPair", "QuantumCertificate"].into_iter().find(|k| *k == kind)
}

/// The static kind name of `K` (`Secret`, `QuantumKEMKeyPair`, ...).
pub(crate) fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()) {
        std::borrow::Cow::Borrowed(k) => k,
        // Every type here has a static kind; an owned one is leaked once per type at most.
        std::borrow::Cow::Owned(k) => Box::leak(k.into_boxed_str()),
    }
}

/// The shared watches of a run: the caches, and the futures driving them.
pub(crate) struct Watches {
    pub(crate) stores: Stores,
    pub(crate) futures: Vec<BoxFuture<'static, ()>>,
}

/// Starts (lazily: the futures do the work) every shared watch, routing changes through `triggers`.
pub(crate) fn watches(ctx: &Arc<Context>, triggers: &Arc<Triggers>) -> Watches {
    use crate::reconcile::Reconcile;
    let mut futures = Vec::new();
    let stores = Stores {
        kem_key_pairs: take_store(&mut futures, resource_informer(ctx, triggers, QuantumKEMKeyPair::references)),
        signature_key_pairs: take_store(
            &mut futures,
            resource_informer(ctx, triggers, QuantumSignatureKeyPair::references),
        ),
        random_numbers: take_store(&mut futures, resource_informer(ctx, triggers, QuantumRandomNumber::references)),
        encapsulations: take_store(
            &mut futures,
            resource_informer(ctx, triggers, QuantumEncapsulateSecret::references),
        ),
        decapsulations: take_store(
            &mut futures,
            resource_informer(ctx, triggers, QuantumDecapsulateSecret::references),
        ),
        derived_keys: take_store(&mut futures, resource_informer(ctx, triggers, QuantumDerivedKey::references)),
        sign_messages: take_store(&mut futures, resource_informer(ctx, triggers, QuantumSignMessage::references)),
        verify_signatures: take_store(
            &mut futures,
            resource_informer(ctx, triggers, QuantumVerifySignature::references),
        ),
        certificates: take_store(&mut futures, resource_informer(ctx, triggers, QuantumCertificate::references)),
        secrets: take_store(&mut futures, output_informer(ctx, triggers)),
        config_maps: take_store(&mut futures, output_informer(ctx, triggers)),
        input_secrets: take_store(&mut futures, input_informer::<Secret>(ctx, triggers)),
        input_config_maps: take_store(&mut futures, input_informer::<ConfigMap>(ctx, triggers)),
    };
    Watches { stores, futures }
}

fn take_store<S>(futures: &mut Vec<BoxFuture<'static, ()>>, (store, fut): (S, BoxFuture<'static, ()>)) -> S {
    futures.push(fut);
    store
}

/// Waits until every cache holds its first complete list.
pub(crate) async fn synced(stores: &Stores) -> Result<(), reflector::store::WriterDropped> {
    stores.kem_key_pairs.wait_until_ready().await?;
    stores.signature_key_pairs.wait_until_ready().await?;
    stores.random_numbers.wait_until_ready().await?;
    stores.encapsulations.wait_until_ready().await?;
    stores.decapsulations.wait_until_ready().await?;
    stores.derived_keys.wait_until_ready().await?;
    stores.sign_messages.wait_until_ready().await?;
    stores.verify_signatures.wait_until_ready().await?;
    stores.certificates.wait_until_ready().await?;
    stores.secrets.wait_until_ready().await?;
    stores.config_maps.wait_until_ready().await?;
    stores.input_secrets.wait_until_ready().await?;
    stores.input_config_maps.wait_until_ready().await?;
    Ok(())
}

/// Caches filled by hand, for tests of reconcile logic against a mocked API server.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use kube::runtime::reflector::store::Writer;

    /// A writer per cache of [`Stores`].
    #[derive(Default)]
    pub(crate) struct Writers {
        pub(crate) kem_key_pairs: Writer<QuantumKEMKeyPair>,
        pub(crate) signature_key_pairs: Writer<QuantumSignatureKeyPair>,
        pub(crate) random_numbers: Writer<QuantumRandomNumber>,
        pub(crate) encapsulations: Writer<QuantumEncapsulateSecret>,
        pub(crate) decapsulations: Writer<QuantumDecapsulateSecret>,
        pub(crate) derived_keys: Writer<QuantumDerivedKey>,
        pub(crate) sign_messages: Writer<QuantumSignMessage>,
        pub(crate) verify_signatures: Writer<QuantumVerifySignature>,
        pub(crate) certificates: Writer<QuantumCertificate>,
        pub(crate) secrets: Writer<Secret>,
        pub(crate) config_maps: Writer<ConfigMap>,
        pub(crate) input_secrets: Writer<PartialObjectMeta<Secret>>,
        pub(crate) input_config_maps: Writer<PartialObjectMeta<ConfigMap>>,
    }

    impl Writers {
        /// The stores these writers fill.
        pub(crate) fn stores(&self) -> Stores {
            Stores {
                kem_key_pairs: self.kem_key_pairs.as_reader(),
                signature_key_pairs: self.signature_key_pairs.as_reader(),
                random_numbers: self.random_numbers.as_reader(),
                encapsulations: self.encapsulations.as_reader(),
                decapsulations: self.decapsulations.as_reader(),
                derived_keys: self.derived_keys.as_reader(),
                sign_messages: self.sign_messages.as_reader(),
                verify_signatures: self.verify_signatures.as_reader(),
                certificates: self.certificates.as_reader(),
                secrets: self.secrets.as_reader(),
                config_maps: self.config_maps.as_reader(),
                input_secrets: self.input_secrets.as_reader(),
                input_config_maps: self.input_config_maps.as_reader(),
            }
        }
    }

    /// Puts `obj` into the cache `writer` fills.
    pub(crate) fn put<K>(writer: &mut Writer<K>, obj: K)
    where
        K: Resource<DynamicType = ()> + Clone,
    {
        writer.apply_watcher_event(&Event::Apply(obj));
    }
}
