//! `QuantumSignMessage`: signs once per (message, key); the signature goes to a ConfigMap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use qubesec_core::PublicKey;

use super::{log_result, owned_config, points_at, referrers, signing_key};
use crate::context::Context;
use crate::crd::{DataKind, DataRef, QuantumSignMessage, QuantumSignatureKeyPair, SignMessageStatus};
use crate::error::{Error, Result};
use crate::outputs::{
    apply_config_map, config_map_data, fingerprint, metadata_json, owned_config_map, read_data_ref, short,
};
use crate::reconcile::{Managed, Outcome, State, error_policy, finish, fresh, managed, namespace};

managed!(QuantumSignMessage, "signmessage");

/// Requests for the objects in a store whose `DataRef`s point at `target`.
pub(crate) fn data_ref_points_at<K: Managed, T: ResourceExt>(
    obj: &K,
    refs: &[Option<&DataRef>],
    kind: DataKind,
    target: &T,
) -> bool {
    refs.iter().flatten().any(|r| r.kind == kind && points_at(obj, &r.name, r.namespace.as_deref(), target))
}

pub(crate) fn controller(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let c = Controller::new(ctx.watch_api::<QuantumSignMessage>(), watcher::Config::default());
    let (s1, s2, s3) = (c.store(), c.store(), c.store());
    c.owns(ctx.watch_api::<ConfigMap>(), owned_config::<QuantumSignMessage>())
        .watches(ctx.watch_api::<QuantumSignatureKeyPair>(), watcher::Config::default(), move |kp| {
            referrers(&s1, |m: &QuantumSignMessage| {
                points_at(m, &m.spec.key_pair_ref.name, m.spec.key_pair_ref.namespace.as_deref(), &kp)
            })
        })
        .watches(ctx.watch_api::<ConfigMap>(), watcher::Config::default(), move |cm| {
            referrers(&s2, |m: &QuantumSignMessage| {
                data_ref_points_at(m, &[m.spec.message_ref.as_ref()], DataKind::ConfigMap, &cm)
            })
        })
        .watches(ctx.watch_api::<Secret>(), watcher::Config::default(), move |s| {
            referrers(&s3, |m: &QuantumSignMessage| {
                data_ref_points_at(m, &[m.spec.message_ref.as_ref()], DataKind::Secret, &s)
            })
        })
        .run(reconcile, error_policy::<QuantumSignMessage>, ctx)
        .for_each(log_result)
        .boxed()
}

async fn reconcile(obj: Arc<QuantumSignMessage>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let Some(obj) = fresh(&*obj, &ctx).await? else { return Ok(Action::await_change()) };
    let result = reconcile_inner(&obj, &ctx).await;
    finish(&*obj, &ctx, started, result).await
}

/// The message of a sign or verify spec: inline text or a referenced key.
pub(crate) async fn message<K: Managed>(
    ctx: &Context,
    obj: &K,
    inline: Option<&String>,
    r: Option<&DataRef>,
) -> Result<Option<Vec<u8>>> {
    match (inline, r) {
        (Some(m), None) => Ok(Some(m.as_bytes().to_vec())),
        (None, Some(r)) => read_data_ref(ctx, obj, "spec.messageRef", r, "message").await,
        _ => Err(Error::user("InvalidSpec", "exactly one of spec.message or spec.messageRef must be set")),
    }
}

pub(crate) async fn reconcile_inner(obj: &QuantumSignMessage, ctx: &Context) -> Result<Outcome<SignMessageStatus>> {
    let spec = &obj.spec;
    let name = spec.config_map_name.clone().unwrap_or_else(|| obj.name_any());
    let previous = obj.status.clone().unwrap_or_default();
    let r = &spec.key_pair_ref;
    let ns = ctx.ref_namespace(&namespace(obj)?, "spec.keyPairRef", r.namespace.as_deref())?;
    let Some((key, key_fp)) = signing_key(ctx, &ns, &r.name).await? else {
        let msg = format!("waiting for QuantumSignatureKeyPair {} to be Ready", r.name);
        return Ok(Outcome::new(previous, State::pending("WaitingForKeyPair", msg)));
    };
    let Some(msg) = message(ctx, obj, spec.message.as_ref(), spec.message_ref.as_ref()).await? else {
        return Ok(Outcome::new(previous, State::pending("WaitingForMessage", "waiting for spec.messageRef")));
    };
    let context = spec.context.as_deref().unwrap_or_default().as_bytes();
    if context.len() > 255 {
        return Err(Error::user("InvalidSpec", "spec.context must be at most 255 bytes"));
    }
    let msg_fp = fingerprint(&msg);
    let alg = key.algorithm();
    let existing = owned_config_map(ctx, obj, &name, "spec.configMapName").await?;
    let stored = existing.as_ref().and_then(|cm| config_map_data(cm, "signature"));
    let same_inputs = previous.message_fingerprint.as_deref() == Some(msg_fp.as_str())
        && previous.key_fingerprint.as_deref() == Some(key_fp.as_str());
    let reusable =
        stored.filter(|sig| same_inputs && previous.fingerprint.as_deref() == Some(fingerprint(sig).as_str()));
    let signature = match reusable {
        Some(sig) => sig.to_vec(),
        None => {
            let sig = ctx
                .metrics
                .crypto("sign", alg.name(), || key.sign(&msg, context))
                .map_err(|e| Error::bug(format!("signing: {e}")))?
                .into_bytes();
            let (type_, reason, note) = if existing.is_none() && previous.fingerprint.is_some() {
                (
                    EventType::Warning,
                    "ConfigMapRegenerated",
                    format!("output ConfigMap {name} was missing; signed again"),
                )
            } else {
                (EventType::Normal, "Signed", format!("signed message {} with {alg}", short(&msg_fp)))
            };
            ctx.event(obj, type_, reason, note).await;
            sig
        }
    };
    let sig_fp = fingerprint(&signature);
    let public = key.verifying_key().map_err(|e| Error::bug(e.to_string()))?.clone();
    let public_pem = PublicKey::from(public).to_spki_pem().map_err(|e| Error::bug(e.to_string()))?;
    let created = obj.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
    apply_config_map(
        ctx,
        obj,
        &name,
        BTreeMap::from([
            ("public_key.pem".to_owned(), public_pem),
            ("metadata".to_owned(), metadata_json("QuantumSignMessage", alg.name(), &sig_fp, &created)),
        ]),
        BTreeMap::from([("signature".to_owned(), signature)]),
    )
    .await?;
    let status = SignMessageStatus {
        algorithm: Some(alg.name().to_owned()),
        short_fingerprint: Some(short(&sig_fp)),
        fingerprint: Some(sig_fp),
        message_fingerprint: Some(msg_fp),
        key_fingerprint: Some(key_fp),
        signature_config_map: Some(name.clone()),
        ..SignMessageStatus::default()
    };
    Ok(Outcome::new(status, State::ready("Signed", format!("signature in ConfigMap {name}"))))
}
