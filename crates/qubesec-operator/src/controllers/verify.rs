//! `QuantumVerifySignature`: verifies, and verifies again whenever an input changes.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use qubesec_core::x509::Certificate;
use qubesec_core::{Fingerprint, PublicKey, VerifyingKey};

use super::sign::{data_ref_points_at, message};
use super::{log_result, points_at, referrers};
use crate::context::Context;
use crate::crd::{
    DataKind, QuantumCertificate, QuantumSignatureKeyPair, QuantumVerifySignature, VerifyKeySource, VerifyResult,
    VerifySignatureStatus, is_ready,
};
use crate::error::{Error, Result};
use crate::outputs::{config_map_data, fingerprint, now, read_data_ref, secret_data, short};
use crate::reconcile::{Outcome, State, error_policy, finish, fresh, managed, namespace};

managed!(QuantumVerifySignature, "verifysignature");

/// `sha256:` over the length-prefixed concatenation of the inputs, so a change to any one re-verifies.
fn digest_inputs(parts: &[&[u8]]) -> String {
    let mut buf = Vec::new();
    for p in parts {
        buf.extend_from_slice(&(p.len() as u64).to_be_bytes());
        buf.extend_from_slice(p);
    }
    fingerprint(&buf)
}

pub(crate) fn controller(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let c = Controller::new(ctx.watch_api::<QuantumVerifySignature>(), watcher::Config::default());
    let (s1, s2, s3, s4) = (c.store(), c.store(), c.store(), c.store());
    c.watches(ctx.watch_api::<QuantumSignatureKeyPair>(), watcher::Config::default(), move |kp| {
        referrers(&s1, |v: &QuantumVerifySignature| {
            let r = &v.spec.public_key_ref;
            r.kind == VerifyKeySource::QuantumSignatureKeyPair && points_at(v, &r.name, r.namespace.as_deref(), &kp)
        })
    })
    .watches(ctx.watch_api::<QuantumCertificate>(), watcher::Config::default(), move |cert| {
        referrers(&s2, |v: &QuantumVerifySignature| {
            let r = &v.spec.public_key_ref;
            r.kind == VerifyKeySource::QuantumCertificate && points_at(v, &r.name, r.namespace.as_deref(), &cert)
        })
    })
    .watches(ctx.watch_api::<ConfigMap>(), watcher::Config::default(), move |cm| {
        referrers(&s3, |v: &QuantumVerifySignature| {
            let r = &v.spec.public_key_ref;
            (r.kind != VerifyKeySource::QuantumCertificate && points_at(v, &r.name, r.namespace.as_deref(), &cm))
                || data_ref_points_at(
                    v,
                    &[v.spec.message_ref.as_ref(), v.spec.signature_ref.as_ref()],
                    DataKind::ConfigMap,
                    &cm,
                )
        })
    })
    .watches(ctx.watch_api::<Secret>(), watcher::Config::default(), move |s| {
        referrers(&s4, |v: &QuantumVerifySignature| {
            data_ref_points_at(v, &[v.spec.message_ref.as_ref(), v.spec.signature_ref.as_ref()], DataKind::Secret, &s)
        })
    })
    .run(reconcile, error_policy::<QuantumVerifySignature>, ctx)
    .for_each(log_result)
    .boxed()
}

async fn reconcile(obj: Arc<QuantumVerifySignature>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let Some(obj) = fresh(&*obj, &ctx).await? else { return Ok(Action::await_change()) };
    let result = reconcile_inner(&obj, &ctx).await;
    finish(&*obj, &ctx, started, result).await
}

/// The verifying key; `Ok(None)` while the referenced object is not Ready or missing.
async fn verifying_key(obj: &QuantumVerifySignature, ctx: &Context) -> Result<Option<VerifyingKey>> {
    let r = &obj.spec.public_key_ref;
    let ns = ctx.ref_namespace(&namespace(obj)?, "spec.publicKeyRef", r.namespace.as_deref())?;
    let pem: Vec<u8> = match r.kind {
        VerifyKeySource::QuantumSignatureKeyPair => {
            let Some(kp) = ctx.api::<QuantumSignatureKeyPair>(&ns).get_opt(&r.name).await? else { return Ok(None) };
            if !is_ready(kp.status.as_ref().map(|s| &s.common), kp.metadata.generation) {
                return Ok(None);
            }
            let cm_name =
                kp.status.as_ref().and_then(|s| s.public_key_config_map.clone()).unwrap_or_else(|| kp.name_any());
            let Some(cm) = ctx.api::<ConfigMap>(&ns).get_opt(&cm_name).await? else { return Ok(None) };
            let Some(pem) = config_map_data(&cm, "public_key.pem") else { return Ok(None) };
            pem.to_vec()
        }
        VerifyKeySource::ConfigMap => {
            let key = r.key.as_deref().unwrap_or("public_key.pem");
            let Some(cm) = ctx.api::<ConfigMap>(&ns).get_opt(&r.name).await? else { return Ok(None) };
            let Some(pem) = config_map_data(&cm, key) else { return Ok(None) };
            pem.to_vec()
        }
        VerifyKeySource::QuantumCertificate => {
            let Some(cert) = ctx.api::<QuantumCertificate>(&ns).get_opt(&r.name).await? else { return Ok(None) };
            if !is_ready(cert.status.as_ref().map(|s| &s.common), cert.metadata.generation) {
                return Ok(None);
            }
            let secret_name =
                cert.status.as_ref().and_then(|s| s.secret_name.clone()).unwrap_or_else(|| cert.name_any());
            let Some(secret) = ctx.api::<Secret>(&ns).get_opt(&secret_name).await? else { return Ok(None) };
            let Some(pem) = secret_data(&secret, "tls.crt") else { return Ok(None) };
            let cert = Certificate::from_pem(pem)
                .map_err(|e| Error::user("InvalidCertificate", format!("Secret {secret_name}: tls.crt: {e}")))?;
            let key = cert.public_key().map_err(|e| Error::user("InvalidPublicKey", format!("certificate: {e}")))?;
            return key.into_signature().map(Some).map_err(|e| Error::user("InvalidPublicKey", e.to_string()));
        }
    };
    let key =
        PublicKey::from_pem(&pem).map_err(|e| Error::user("InvalidPublicKey", format!("spec.publicKeyRef: {e}")))?;
    key.into_signature()
        .map(Some)
        .map_err(|e| Error::user("InvalidPublicKey", format!("spec.publicKeyRef: not a signature key: {e}")))
}

async fn signature(obj: &QuantumVerifySignature, ctx: &Context) -> Result<Option<Vec<u8>>> {
    match (&obj.spec.signature, &obj.spec.signature_ref) {
        (Some(b64), None) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map(Some)
            .map_err(|e| Error::user("InvalidSpec", format!("spec.signature is not valid base64: {e}"))),
        (None, Some(r)) => read_data_ref(ctx, obj, "spec.signatureRef", r, "signature").await,
        _ => Err(Error::user("InvalidSpec", "exactly one of spec.signature or spec.signatureRef must be set")),
    }
}

pub(crate) async fn reconcile_inner(
    obj: &QuantumVerifySignature,
    ctx: &Context,
) -> Result<Outcome<VerifySignatureStatus>> {
    let spec = &obj.spec;
    let previous = obj.status.clone().unwrap_or_default();
    let Some(key) = verifying_key(obj, ctx).await? else {
        let msg = format!("waiting for {} {} to be Ready", spec.public_key_ref.kind, spec.public_key_ref.name);
        return Ok(Outcome::new(previous, State::pending("WaitingForPublicKey", msg)));
    };
    let Some(msg) = message(ctx, obj, spec.message.as_ref(), spec.message_ref.as_ref()).await? else {
        return Ok(Outcome::new(previous, State::pending("WaitingForMessage", "waiting for spec.messageRef")));
    };
    let Some(sig) = signature(obj, ctx).await? else {
        return Ok(Outcome::new(previous, State::pending("WaitingForSignature", "waiting for spec.signatureRef")));
    };
    let context = spec.context.as_deref().unwrap_or_default().as_bytes();
    let key_fp =
        Fingerprint::of_public_key(&PublicKey::from(key.clone())).map_err(|e| Error::bug(e.to_string()))?.to_string();
    let inputs = digest_inputs(&[key_fp.as_bytes(), &msg, &sig, context]);
    let valid = ctx.metrics.crypto("verify", key.algorithm().name(), || key.verify_bytes(&msg, context, &sig)).is_ok();
    let verified_at = match (&previous.inputs_fingerprint, &previous.verified_at) {
        (Some(i), Some(t)) if *i == inputs && previous.valid == Some(valid) => t.clone(),
        _ => now(),
    };
    let result = if valid { VerifyResult::Valid } else { VerifyResult::Invalid };
    let status = VerifySignatureStatus {
        algorithm: Some(key.algorithm().name().to_owned()),
        valid: Some(valid),
        result: Some(result),
        verified_at: Some(verified_at),
        short_fingerprint: Some(short(&key_fp)),
        key_fingerprint: Some(key_fp),
        inputs_fingerprint: Some(inputs),
        ..VerifySignatureStatus::default()
    };
    let state = if valid {
        State::ready("Valid", "the signature is valid")
    } else {
        State::done_not_ready("Invalid", "the signature does not verify for this key, message and context")
    };
    Ok(Outcome::new(status, state))
}
