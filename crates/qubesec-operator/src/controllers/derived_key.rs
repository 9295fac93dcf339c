//! `QuantumDerivedKey`: HKDF over a shared secret; follows the secret when it changes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;

use super::{log_result, owned_config, points_at, referrers};
use crate::context::Context;
use crate::crd::{DerivedKeyStatus, QuantumDerivedKey};
use crate::error::{Error, Result};
use crate::outputs::{
    apply_secret, created_of, fingerprint, metadata_json, now, owned_secret, secret_data, secret_matches, short,
};
use crate::reconcile::{Outcome, State, error_policy, finish, fresh, managed, namespace};

managed!(QuantumDerivedKey, "derivedkey");

pub(crate) fn controller(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let c = Controller::new(ctx.watch_api::<QuantumDerivedKey>(), watcher::Config::default());
    let store = c.store();
    c.owns(ctx.watch_api::<Secret>(), owned_config::<QuantumDerivedKey>())
        .watches(ctx.watch_api::<Secret>(), watcher::Config::default(), move |s| {
            referrers(&store, |d: &QuantumDerivedKey| {
                let r = &d.spec.shared_secret_ref;
                points_at(d, &r.name, r.namespace.as_deref(), &s)
            })
        })
        .run(reconcile, error_policy::<QuantumDerivedKey>, ctx)
        .for_each(log_result)
        .boxed()
}

async fn reconcile(obj: Arc<QuantumDerivedKey>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let Some(obj) = fresh(&*obj, &ctx).await? else { return Ok(Action::await_change()) };
    let result = reconcile_inner(&obj, &ctx).await;
    finish(&*obj, &ctx, started, result).await
}

pub(crate) async fn reconcile_inner(obj: &QuantumDerivedKey, ctx: &Context) -> Result<Outcome<DerivedKeyStatus>> {
    let spec = &obj.spec;
    let name = spec.secret_name.clone().unwrap_or_else(|| obj.name_any());
    let previous = obj.status.clone().unwrap_or_default();
    let r = &spec.shared_secret_ref;
    let ns = ctx.ref_namespace(&namespace(obj)?, "spec.sharedSecretRef", r.namespace.as_deref())?;
    let key_name = r.key.as_deref().unwrap_or("shared_secret");
    let ikm =
        ctx.api::<Secret>(&ns).get_opt(&r.name).await?.and_then(|s| secret_data(&s, key_name).map(<[u8]>::to_vec));
    let Some(ikm) = ikm.map(zeroize::Zeroizing::new) else {
        let msg = format!("waiting for Secret {} (key {key_name})", r.name);
        return Ok(Outcome::new(previous, State::pending("WaitingForSharedSecret", msg)));
    };
    let hash = spec.hash.core();
    let len = match (spec.key_type.fixed_len(), spec.length) {
        (Some(n), _) => n,
        (None, Some(n)) => usize::try_from(n).map_err(|e| Error::bug(e.to_string()))?,
        (None, None) => return Err(Error::user("InvalidSpec", "spec.length is required when spec.keyType is Raw")),
    };
    if len > qubesec_core::kdf::max_output_len(hash) {
        return Err(Error::user(
            "InvalidSpec",
            format!(
                "spec.length: {len} bytes exceeds HKDF's limit of {} for {}",
                qubesec_core::kdf::max_output_len(hash),
                spec.hash
            ),
        ));
    }
    let salt = kdf_input("salt", spec.salt.as_deref(), spec.salt_base64.as_deref())?;
    let info = kdf_input("info", spec.info.as_deref(), spec.info_base64.as_deref())?;
    let (salt, info) = (salt.as_slice(), info.as_slice());
    let algorithm = format!("HKDF-{}/{}", spec.hash, spec.key_type);
    let okm = ctx
        .metrics
        .crypto("derive", &format!("HKDF-{}", spec.hash), || qubesec_core::kdf::derive(hash, &ikm, salt, info, len))
        .map_err(|e| Error::user("InvalidSpec", e.to_string()))?;
    let fp = fingerprint(&okm);
    let existing = owned_secret(ctx, obj, &name).await?;
    let created = created_of(existing.as_ref().and_then(|s| secret_data(s, "metadata"))).unwrap_or_else(now);
    let data = BTreeMap::from([
        ("key".to_owned(), okm.to_vec()),
        ("metadata".to_owned(), metadata_json("QuantumDerivedKey", &algorithm, &fp, &created).into_bytes()),
    ]);
    if existing.as_ref().is_none_or(|s| !secret_matches(s, &data)) {
        apply_secret(ctx, obj, &name, None, data).await?;
        let (type_, reason, note) = match (&previous.fingerprint, existing.is_some()) {
            (Some(old), false) => (
                EventType::Warning,
                "SecretRegenerated",
                format!("output Secret {name} was missing; derived key {fp} again (was {old})"),
            ),
            _ => (EventType::Normal, "Derived", format!("derived {len}-byte {} key {}", spec.key_type, short(&fp))),
        };
        ctx.event(obj, type_, reason, note).await;
    }
    let status = DerivedKeyStatus {
        algorithm: Some(algorithm),
        length: u32::try_from(len).ok(),
        short_fingerprint: Some(short(&fp)),
        fingerprint: Some(fp),
        input_fingerprint: Some(fingerprint(&ikm)),
        secret_name: Some(name.clone()),
        ..DerivedKeyStatus::default()
    };
    Ok(Outcome::new(status, State::ready("Derived", format!("{len}-byte key in Secret {name}"))))
}

/// The bytes of HKDF `salt` or `info`: the UTF-8 text of `spec.<field>`, or the decoded
/// `spec.<field>Base64` (admission allows at most one; both absent is empty).
fn kdf_input(field: &str, text: Option<&str>, b64: Option<&str>) -> Result<Vec<u8>> {
    match (text, b64) {
        (Some(_), Some(_)) => {
            Err(Error::user("InvalidSpec", format!("at most one of spec.{field} and spec.{field}Base64 may be set")))
        }
        (Some(t), None) => Ok(t.as_bytes().to_vec()),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| Error::user("InvalidSpec", format!("spec.{field}Base64 is not valid base64: {e}"))),
        (None, None) => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdf_inputs_come_from_text_or_base64_and_errors_name_the_field() {
        assert_eq!(kdf_input("salt", Some("abc"), None).unwrap(), b"abc");
        assert_eq!(kdf_input("salt", None, Some("AP8=")).unwrap(), [0x00, 0xff]);
        assert!(kdf_input("info", None, None).unwrap().is_empty());
        let both = kdf_input("salt", Some("a"), Some("YQ==")).unwrap_err().to_string();
        assert!(both.contains("spec.salt and spec.saltBase64"), "{both}");
        let bad = kdf_input("info", None, Some("not base64!")).unwrap_err().to_string();
        assert!(bad.contains("spec.infoBase64"), "{bad}");
    }
}
