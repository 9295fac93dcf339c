//! `QuantumEncapsulateSecret`: encapsulates to a Ready key pair's public key,
//! once per public key; waits (`WaitingForKeyPair`) until the key pair is Ready.

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
use qubesec_core::{Fingerprint, KemPublicKey, PublicKey};

use super::{kem_public_key, log_result, owned_config, points_at, referrers};
use crate::context::Context;
use crate::crd::{EncapsulateStatus, PublicKeySource, QuantumEncapsulateSecret, QuantumKEMKeyPair};
use crate::error::{Error, Result};
use crate::outputs::{
    apply_config_map, apply_secret, config_map_data, created_of, fingerprint, metadata_json, now, owned_config_map,
    owned_secret, secret_data, short,
};
use crate::reconcile::{Outcome, State, error_policy, finish, fresh, managed, namespace};

managed!(QuantumEncapsulateSecret, "encapsulatesecret");

pub(crate) fn controller(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let c = Controller::new(ctx.watch_api::<QuantumEncapsulateSecret>(), watcher::Config::default());
    let (s1, s2) = (c.store(), c.store());
    c.owns(ctx.watch_api::<Secret>(), owned_config::<QuantumEncapsulateSecret>())
        .owns(ctx.watch_api::<ConfigMap>(), owned_config::<QuantumEncapsulateSecret>())
        .watches(ctx.watch_api::<QuantumKEMKeyPair>(), watcher::Config::default(), move |kp| {
            referrers(&s1, |e: &QuantumEncapsulateSecret| {
                let r = &e.spec.public_key_ref;
                r.kind == PublicKeySource::QuantumKEMKeyPair && points_at(e, &r.name, r.namespace.as_deref(), &kp)
            })
        })
        .watches(ctx.watch_api::<ConfigMap>(), watcher::Config::default(), move |cm| {
            referrers(&s2, |e: &QuantumEncapsulateSecret| {
                let r = &e.spec.public_key_ref;
                r.kind == PublicKeySource::ConfigMap && points_at(e, &r.name, r.namespace.as_deref(), &cm)
            })
        })
        .run(reconcile, error_policy::<QuantumEncapsulateSecret>, ctx)
        .for_each(log_result)
        .boxed()
}

async fn reconcile(obj: Arc<QuantumEncapsulateSecret>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let Some(obj) = fresh(&*obj, &ctx).await? else { return Ok(Action::await_change()) };
    let result = reconcile_inner(&obj, &ctx).await;
    finish(&*obj, &ctx, started, result).await
}

async fn public_key(obj: &QuantumEncapsulateSecret, ctx: &Context) -> Result<Option<KemPublicKey>> {
    let r = &obj.spec.public_key_ref;
    let ns = ctx.ref_namespace(&namespace(obj)?, "spec.publicKeyRef", r.namespace.as_deref())?;
    match r.kind {
        PublicKeySource::QuantumKEMKeyPair => kem_public_key(ctx, &ns, &r.name).await,
        PublicKeySource::ConfigMap => {
            let key = r.key.as_deref().unwrap_or("public_key.pem");
            let Some(cm) = ctx.api::<ConfigMap>(&ns).get_opt(&r.name).await? else { return Ok(None) };
            let Some(pem) = config_map_data(&cm, key) else { return Ok(None) };
            let public = PublicKey::from_pem(pem).map_err(|e| {
                Error::user("InvalidPublicKey", format!("spec.publicKeyRef: ConfigMap {} key {key}: {e}", r.name))
            })?;
            public.into_kem().map(Some).map_err(|e| Error::user("InvalidPublicKey", format!("spec.publicKeyRef: {e}")))
        }
    }
}

pub(crate) async fn reconcile_inner(
    obj: &QuantumEncapsulateSecret,
    ctx: &Context,
) -> Result<Outcome<EncapsulateStatus>> {
    let name = obj.spec.secret_name.clone().unwrap_or_else(|| obj.name_any());
    let previous = obj.status.clone().unwrap_or_default();
    let Some(pk) = public_key(obj, ctx).await? else {
        let r = &obj.spec.public_key_ref;
        return Ok(Outcome::new(
            previous,
            State::pending("WaitingForKeyPair", format!("waiting for {} {} to be Ready", r.kind, r.name)),
        ));
    };
    let alg = pk.algorithm();
    let pk_fp =
        Fingerprint::of_public_key(&PublicKey::from(pk.clone())).map_err(|e| Error::bug(e.to_string()))?.to_string();
    let existing = owned_secret(ctx, obj, &name).await?;
    owned_config_map(ctx, obj, &name, "spec.secretName").await?;
    let stored =
        existing.as_ref().and_then(|s| Some((secret_data(s, "shared_secret")?, secret_data(s, "ciphertext")?)));
    let reusable = stored.filter(|(ss, _)| {
        previous.public_key_fingerprint.as_deref() == Some(pk_fp.as_str())
            && previous.fingerprint.as_deref() == Some(fingerprint(ss).as_str())
    });
    let (ss_fp, ct) = match reusable {
        Some((ss, ct)) => (fingerprint(ss), ct.to_vec()),
        None => {
            let (ct, ss) = ctx
                .metrics
                .crypto("encapsulate", alg.name(), || pk.encapsulate())
                .map_err(|e| Error::bug(format!("encapsulation: {e}")))?;
            let ss_fp = fingerprint(ss.as_bytes());
            let created = created_of(existing.as_ref().and_then(|s| secret_data(s, "metadata"))).unwrap_or_else(now);
            let data = BTreeMap::from([
                ("shared_secret".to_owned(), ss.as_bytes().to_vec()),
                ("ciphertext".to_owned(), ct.as_bytes().to_vec()),
                (
                    "metadata".to_owned(),
                    metadata_json("QuantumEncapsulateSecret", alg.name(), &ss_fp, &created).into_bytes(),
                ),
            ]);
            apply_secret(ctx, obj, &name, None, data).await?;
            let (reason, type_, note) = match (&previous.fingerprint, existing.is_some()) {
                (None, _) => {
                    ("Encapsulated", EventType::Normal, format!("encapsulated to {alg} key {}", short(&pk_fp)))
                }
                (Some(_), false) => (
                    "SecretRegenerated",
                    EventType::Warning,
                    format!("output Secret {name} was missing; encapsulated a new shared secret {ss_fp}"),
                ),
                (Some(_), true) => (
                    "Reencapsulated",
                    EventType::Normal,
                    format!("public key is now {}; encapsulated a new shared secret", short(&pk_fp)),
                ),
            };
            ctx.event(obj, type_, reason, note).await;
            (ss_fp, ct.as_bytes().to_vec())
        }
    };
    let ct_fp = fingerprint(&ct);
    apply_config_map(
        ctx,
        obj,
        &name,
        BTreeMap::from([
            (
                "metadata".to_owned(),
                metadata_json("QuantumEncapsulateSecret", alg.name(), &ct_fp, &now_or_created(obj)),
            ),
            // Lets a decapsulator tell a ciphertext for its current key from a stale one.
            ("public_key_fingerprint".to_owned(), pk_fp.clone()),
        ]),
        BTreeMap::from([("ciphertext".to_owned(), ct)]),
    )
    .await?;
    let status = EncapsulateStatus {
        algorithm: Some(alg.name().to_owned()),
        public_key_fingerprint: Some(pk_fp),
        short_fingerprint: Some(short(&ss_fp)),
        fingerprint: Some(ss_fp),
        ciphertext_fingerprint: Some(ct_fp),
        secret_name: Some(name.clone()),
        ciphertext_config_map: Some(name.clone()),
        ..EncapsulateStatus::default()
    };
    Ok(Outcome::new(
        status,
        State::ready("Encapsulated", format!("shared secret in Secret {name}, ciphertext in ConfigMap {name}")),
    ))
}

/// A stable `created` time for the ciphertext ConfigMap: the resource's creation time.
fn now_or_created(obj: &QuantumEncapsulateSecret) -> String {
    obj.metadata.creation_timestamp.as_ref().map_or_else(now, |t| t.0.to_string())
}
