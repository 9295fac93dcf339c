//! `QuantumDecapsulateSecret`: recovers the shared secret with a key pair's private key.
//! Decapsulation is deterministic, so the output follows the inputs exactly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use qubesec_core::{KemCiphertext, PrivateKey};

use super::keypair::ready_private_key;
use super::{log_result, owned_config, points_at, referrers};
use crate::context::Context;
use crate::crd::{DataKind, DataRef, DecapsulateStatus, QuantumDecapsulateSecret, QuantumKEMKeyPair};
use crate::error::{Error, Result};
use crate::outputs::{
    apply_secret, created_of, fingerprint, metadata_json, now, owned_secret, read_data_ref, secret_data,
    secret_matches, short,
};
use crate::reconcile::{Outcome, State, error_policy, finish, fresh, managed, namespace};

managed!(QuantumDecapsulateSecret, "decapsulatesecret");

pub(crate) fn controller(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let c = Controller::new(ctx.watch_api::<QuantumDecapsulateSecret>(), watcher::Config::default());
    let (s1, s2, s3) = (c.store(), c.store(), c.store());
    c.owns(ctx.watch_api::<Secret>(), owned_config::<QuantumDecapsulateSecret>())
        .watches(ctx.watch_api::<QuantumKEMKeyPair>(), watcher::Config::default(), move |kp| {
            referrers(&s1, |d: &QuantumDecapsulateSecret| {
                points_at(d, &d.spec.key_pair_ref.name, d.spec.key_pair_ref.namespace.as_deref(), &kp)
            })
        })
        .watches(ctx.watch_api::<ConfigMap>(), watcher::Config::default(), move |cm| {
            referrers(&s2, |d: &QuantumDecapsulateSecret| {
                d.spec.ciphertext_ref.as_ref().is_some_and(|r| {
                    r.kind == DataKind::ConfigMap && points_at(d, &r.name, r.namespace.as_deref(), &cm)
                })
            })
        })
        .watches(ctx.watch_api::<Secret>(), watcher::Config::default(), move |s| {
            referrers(&s3, |d: &QuantumDecapsulateSecret| {
                d.spec
                    .ciphertext_ref
                    .as_ref()
                    .is_some_and(|r| r.kind == DataKind::Secret && points_at(d, &r.name, r.namespace.as_deref(), &s))
            })
        })
        .run(reconcile, error_policy::<QuantumDecapsulateSecret>, ctx)
        .for_each(log_result)
        .boxed()
}

async fn reconcile(obj: Arc<QuantumDecapsulateSecret>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let Some(obj) = fresh(&*obj, &ctx).await? else { return Ok(Action::await_change()) };
    let result = reconcile_inner(&obj, &ctx).await;
    finish(&*obj, &ctx, started, result).await
}

async fn ciphertext(obj: &QuantumDecapsulateSecret, ctx: &Context) -> Result<Option<Vec<u8>>> {
    match (&obj.spec.ciphertext, &obj.spec.ciphertext_ref) {
        (Some(b64), None) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map(Some)
            .map_err(|e| Error::user("InvalidSpec", format!("spec.ciphertext is not valid base64: {e}"))),
        (None, Some(r)) => read_data_ref(ctx, obj, "spec.ciphertextRef", r, "ciphertext").await,
        _ => Err(Error::user("InvalidSpec", "exactly one of spec.ciphertext or spec.ciphertextRef must be set")),
    }
}

pub(crate) async fn reconcile_inner(
    obj: &QuantumDecapsulateSecret,
    ctx: &Context,
) -> Result<Outcome<DecapsulateStatus>> {
    let name = obj.spec.secret_name.clone().unwrap_or_else(|| obj.name_any());
    let previous = obj.status.clone().unwrap_or_default();
    let r = &obj.spec.key_pair_ref;
    let ns = ctx.ref_namespace(&namespace(obj)?, "spec.keyPairRef", r.namespace.as_deref())?;
    let Some((key, key_fp)) = ready_private_key::<QuantumKEMKeyPair>(ctx, &ns, &r.name).await? else {
        let msg = format!("waiting for QuantumKEMKeyPair {} to be Ready", r.name);
        return Ok(Outcome::new(previous, State::pending("WaitingForKeyPair", msg)));
    };
    let PrivateKey::Kem(key) = key else {
        return Err(Error::user("WrongKeyType", format!("spec.keyPairRef: {} does not hold a KEM key", r.name)));
    };
    let Some(ct) = ciphertext(obj, ctx).await? else {
        let msg = "waiting for the ciphertext referenced by spec.ciphertextRef";
        return Ok(Outcome::new(previous, State::pending("WaitingForCiphertext", msg)));
    };
    if let Some(r) = obj.spec.ciphertext_ref.as_ref().filter(|r| r.kind == DataKind::ConfigMap) {
        // An encapsulator's ConfigMap names the key it encapsulated to; while that is an
        // older key (the key pair was just regenerated), wait instead of decapsulating noise.
        let marker = DataRef { key: Some("public_key_fingerprint".to_owned()), ..r.clone() };
        let made_for = read_data_ref(ctx, obj, "spec.ciphertextRef", &marker, "").await?;
        if made_for.is_some_and(|f| f != key_fp.as_bytes()) {
            let msg = format!(
                "the ciphertext in ConfigMap {} was made for another public key; waiting for one for {}",
                r.name,
                short(&key_fp)
            );
            return Ok(Outcome::new(previous, State::pending("WaitingForCiphertext", msg)));
        }
    }
    let alg = key.algorithm();
    let ct = KemCiphertext::from_bytes(alg, &ct)
        .map_err(|e| Error::user("InvalidCiphertext", format!("ciphertext does not fit {alg}: {e}")))?;
    let ss = ctx
        .metrics
        .crypto("decapsulate", alg.name(), || key.decapsulate(&ct))
        .map_err(|_| Error::user("DecapsulationFailed", "decapsulation failed"))?;
    let ss_fp = fingerprint(ss.as_bytes());
    let ct_fp = fingerprint(ct.as_bytes());
    let existing = owned_secret(ctx, obj, &name).await?;
    let created = created_of(existing.as_ref().and_then(|s| secret_data(s, "metadata"))).unwrap_or_else(now);
    let data = BTreeMap::from([
        ("shared_secret".to_owned(), ss.as_bytes().to_vec()),
        ("metadata".to_owned(), metadata_json("QuantumDecapsulateSecret", alg.name(), &ss_fp, &created).into_bytes()),
    ]);
    if existing.as_ref().is_none_or(|s| !secret_matches(s, &data)) {
        apply_secret(ctx, obj, &name, None, data).await?;
        let (type_, reason, note) = match (&previous.fingerprint, existing.is_some()) {
            (Some(old), false) => (
                EventType::Warning,
                "SecretRegenerated",
                format!("output Secret {name} was missing; recovered shared secret {ss_fp} (was {old})"),
            ),
            _ => (EventType::Normal, "Decapsulated", format!("recovered shared secret {}", short(&ss_fp))),
        };
        ctx.event(obj, type_, reason, note).await;
    }
    let status = DecapsulateStatus {
        algorithm: Some(alg.name().to_owned()),
        short_fingerprint: Some(short(&ss_fp)),
        fingerprint: Some(ss_fp),
        ciphertext_fingerprint: Some(ct_fp),
        secret_name: Some(name.clone()),
        ..DecapsulateStatus::default()
    };
    Ok(Outcome::new(status, State::ready("Decapsulated", format!("shared secret in Secret {name}"))))
}
