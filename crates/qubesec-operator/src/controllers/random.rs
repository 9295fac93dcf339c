//! `QuantumRandomNumber`: random bytes generated once into a Secret.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;

use super::{log_result, owned_config};
use crate::context::Context;
use crate::crd::{QuantumRandomNumber, RandomNumberStatus};
use crate::error::{Error, Result};
use crate::outputs::{apply_secret, created_of, fingerprint, metadata_json, now, owned_secret, secret_data, short};
use crate::reconcile::{Outcome, State, error_policy, finish, fresh, managed};

managed!(QuantumRandomNumber, "randomnumber");

pub(crate) fn controller(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    Controller::new(ctx.watch_api::<QuantumRandomNumber>(), watcher::Config::default())
        .owns(ctx.watch_api::<Secret>(), owned_config::<QuantumRandomNumber>())
        .run(reconcile, error_policy::<QuantumRandomNumber>, ctx)
        .for_each(log_result)
        .boxed()
}

async fn reconcile(obj: Arc<QuantumRandomNumber>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let Some(obj) = fresh(&*obj, &ctx).await? else { return Ok(Action::await_change()) };
    let result = reconcile_inner(&obj, &ctx).await;
    finish(&*obj, &ctx, started, result).await
}

pub(crate) async fn reconcile_inner(obj: &QuantumRandomNumber, ctx: &Context) -> Result<Outcome<RandomNumberStatus>> {
    let name = obj.spec.secret_name.clone().unwrap_or_else(|| obj.name_any());
    let len = usize::try_from(obj.spec.bytes).map_err(|e| Error::bug(e.to_string()))?;
    if !(1..=65536).contains(&len) {
        return Err(Error::user("InvalidSpec", "spec.bytes must be between 1 and 65536"));
    }
    let recorded = obj.status.as_ref().and_then(|s| s.fingerprint.clone());
    let existing = owned_secret(ctx, obj, &name).await?;
    let stored = existing.as_ref().and_then(|s| secret_data(s, "random"));
    let fp = match stored {
        Some(bytes) => {
            let fp = fingerprint(bytes);
            if recorded.as_ref().is_some_and(|r| *r != fp) {
                return Err(Error::user(
                    "FingerprintMismatch",
                    format!(
                        "Secret {name} was modified (fingerprint {fp}, status records {})",
                        recorded.unwrap_or_default()
                    ),
                ));
            }
            if bytes.len() != len {
                return Err(Error::user(
                    "SizeMismatch",
                    format!("Secret {name} holds {} bytes but spec.bytes is {len}", bytes.len()),
                ));
            }
            if existing.as_ref().and_then(|s| secret_data(s, "metadata")).is_none() {
                let data = BTreeMap::from([
                    ("random".to_owned(), bytes.to_vec()),
                    (
                        "metadata".to_owned(),
                        metadata_json("QuantumRandomNumber", "os-csprng", &fp, &now()).into_bytes(),
                    ),
                ]);
                apply_secret(ctx, obj, &name, None, data).await?;
            }
            fp
        }
        None => {
            let bytes = ctx
                .metrics
                .crypto("random", "os-csprng", || qubesec_core::rand::bytes(len))
                .map_err(|e| Error::Transient(format!("randomness: {e}")))?;
            let fp = fingerprint(&bytes);
            let created = created_of(None).unwrap_or_else(now);
            let data = BTreeMap::from([
                ("random".to_owned(), bytes.to_vec()),
                ("metadata".to_owned(), metadata_json("QuantumRandomNumber", "os-csprng", &fp, &created).into_bytes()),
            ]);
            apply_secret(ctx, obj, &name, None, data).await?;
            match &recorded {
                Some(old) => {
                    let note = format!("output Secret {name} was missing; generated new random bytes {fp} (was {old})");
                    ctx.event(obj, EventType::Warning, "SecretRegenerated", note).await;
                }
                None => ctx.event(obj, EventType::Normal, "Generated", format!("generated {len} random bytes")).await,
            }
            fp
        }
    };
    let status = RandomNumberStatus {
        bytes: Some(obj.spec.bytes),
        short_fingerprint: Some(short(&fp)),
        fingerprint: Some(fp),
        secret_name: Some(name.clone()),
        ..RandomNumberStatus::default()
    };
    Ok(Outcome::new(status, State::ready("Generated", format!("{len} random bytes in Secret {name}"))))
}
