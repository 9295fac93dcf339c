//! `QuantumKEMKeyPair` and `QuantumSignatureKeyPair`: a key generated once, kept
//! in a Secret, its public key published in a ConfigMap.

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
use qubesec_core::{Algorithm, DeprecatedAlias, Fingerprint, KemPublicKey, PrivateKey, PublicKey, SigningKey};

use super::{log_result, owned_config};
use crate::context::Context;
use crate::crd::{KeyPairStatus, QuantumKEMKeyPair, QuantumSignatureKeyPair, is_ready};
use crate::error::{Error, Result};
use crate::outputs::{
    apply_config_map, apply_secret, config_map_data, created_of, metadata_json, now, owned_config_map, owned_secret,
    secret_data, secret_matches, short,
};
use crate::reconcile::{Managed, Outcome, State, error_policy, finish, fresh, managed};

managed!(QuantumKEMKeyPair, "kemkeypair");
managed!(QuantumSignatureKeyPair, "signaturekeypair");

pub(crate) fn kem_controller(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    Controller::new(ctx.watch_api::<QuantumKEMKeyPair>(), watcher::Config::default())
        .owns(ctx.watch_api::<Secret>(), owned_config::<QuantumKEMKeyPair>())
        .owns(ctx.watch_api::<ConfigMap>(), owned_config::<QuantumKEMKeyPair>())
        .run(reconcile_kem, error_policy::<QuantumKEMKeyPair>, ctx)
        .for_each(log_result)
        .boxed()
}

pub(crate) fn sig_controller(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    Controller::new(ctx.watch_api::<QuantumSignatureKeyPair>(), watcher::Config::default())
        .owns(ctx.watch_api::<Secret>(), owned_config::<QuantumSignatureKeyPair>())
        .owns(ctx.watch_api::<ConfigMap>(), owned_config::<QuantumSignatureKeyPair>())
        .run(reconcile_sig, error_policy::<QuantumSignatureKeyPair>, ctx)
        .for_each(log_result)
        .boxed()
}

async fn reconcile_kem(obj: Arc<QuantumKEMKeyPair>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let Some(obj) = fresh(&*obj, &ctx).await? else { return Ok(Action::await_change()) };
    let result = async {
        let (alg, alias) = obj.spec.algorithm.resolve().map_err(|e| Error::bug(e.to_string()))?;
        reconcile_key_pair(&*obj, &ctx, alg.into(), alias, obj.spec.secret_name.as_deref(), obj.status.as_ref()).await
    }
    .await;
    finish(&*obj, &ctx, started, result).await
}

async fn reconcile_sig(obj: Arc<QuantumSignatureKeyPair>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let Some(obj) = fresh(&*obj, &ctx).await? else { return Ok(Action::await_change()) };
    let result = async {
        let (alg, alias) = obj.spec.algorithm.resolve().map_err(|e| Error::bug(e.to_string()))?;
        reconcile_key_pair(&*obj, &ctx, alg.into(), alias, obj.spec.secret_name.as_deref(), obj.status.as_ref()).await
    }
    .await;
    finish(&*obj, &ctx, started, result).await
}

/// The raw private key octets: the seed where the algorithm has one, else the expanded key.
fn raw_private(key: &PrivateKey) -> Result<Vec<u8>> {
    match key {
        PrivateKey::Kem(k) => Ok(k.seed().unwrap_or_else(|| k.expanded_key()).to_vec()),
        PrivateKey::Signature(k) => Ok(k.seed().unwrap_or_else(|| k.expanded_key()).to_vec()),
        _ => Err(Error::bug("unknown private key type")),
    }
}

pub(crate) async fn reconcile_key_pair<K: Managed>(
    obj: &K,
    ctx: &Context,
    alg: Algorithm,
    alias: Option<DeprecatedAlias>,
    secret_name: Option<&str>,
    status: Option<&KeyPairStatus>,
) -> Result<Outcome<KeyPairStatus>> {
    let kind = K::kind(&()).into_owned();
    let name = secret_name.map_or_else(|| obj.name_any(), str::to_owned);
    let recorded = status.and_then(|s| s.fingerprint.clone());
    let existing = owned_secret(ctx, obj, &name).await?;
    owned_config_map(ctx, obj, &name, "spec.secretName").await?;

    let stored = existing.as_ref().and_then(|s| secret_data(s, "private_key.pem"));
    let (key, created, generated) = match stored {
        Some(pem) => {
            let key = PrivateKey::from_pem(pem).map_err(|e| {
                Error::user("CorruptSecret", format!("Secret {name}: private_key.pem is not a usable private key: {e}"))
            })?;
            if key.algorithm() != alg {
                return Err(Error::user(
                    "AlgorithmMismatch",
                    format!(
                        "Secret {name} holds a {} key, but spec.algorithm is {}",
                        key.algorithm().name(),
                        alg.name()
                    ),
                ));
            }
            let created = created_of(existing.as_ref().and_then(|s| secret_data(s, "metadata"))).unwrap_or_else(now);
            (key, created, false)
        }
        None => (PrivateKey::generate(alg).map_err(|e| Error::bug(format!("key generation: {e}")))?, now(), true),
    };
    let public = key.public_key().map_err(|e| Error::bug(e.to_string()))?;
    let fp = Fingerprint::of_public_key(&public).map_err(|e| Error::bug(e.to_string()))?.to_string();
    if !generated && recorded.as_ref().is_some_and(|r| *r != fp) {
        return Err(Error::user(
            "FingerprintMismatch",
            format!(
                "Secret {name} holds a key with fingerprint {fp}, but status records {}; refusing to use or \
                 replace it (delete the Secret to generate a new key)",
                recorded.unwrap_or_default()
            ),
        ));
    }
    let public_pem = public.to_spki_pem().map_err(|e| Error::bug(e.to_string()))?;
    let private_pem = key.to_pkcs8_pem().map_err(|e| Error::bug(e.to_string()))?;
    let metadata = metadata_json(&kind, alg.name(), &fp, &created);
    let data = BTreeMap::from([
        ("public_key".to_owned(), public.as_bytes().to_vec()),
        ("private_key".to_owned(), raw_private(&key)?),
        ("public_key.pem".to_owned(), public_pem.clone().into_bytes()),
        ("private_key.pem".to_owned(), private_pem.as_bytes().to_vec()),
        ("metadata".to_owned(), metadata.clone().into_bytes()),
    ]);
    if existing.as_ref().is_none_or(|s| !secret_matches(s, &data)) {
        apply_secret(ctx, obj, &name, None, data).await?;
    }
    apply_config_map(
        ctx,
        obj,
        &name,
        BTreeMap::from([("public_key.pem".to_owned(), public_pem), ("metadata".to_owned(), metadata)]),
        BTreeMap::from([("public_key".to_owned(), public.as_bytes().to_vec())]),
    )
    .await?;
    if generated {
        match &recorded {
            Some(old) => {
                let note =
                    format!("output Secret {name} was missing; generated a new {} key {fp} (was {old})", alg.name());
                ctx.event(obj, EventType::Warning, "SecretRegenerated", note).await;
            }
            None => {
                ctx.event(obj, EventType::Normal, "KeyGenerated", format!("generated {} key {fp}", alg.name())).await
            }
        }
        if let Some(a) = &alias {
            ctx.event(obj, EventType::Warning, "DeprecatedAlgorithmName", a.to_string()).await;
        }
    }
    let message = match &alias {
        Some(a) => format!("{} key {} in Secret {name} ({a})", alg.name(), short(&fp)),
        None => format!("{} key {} in Secret {name}", alg.name(), short(&fp)),
    };
    let status = KeyPairStatus {
        algorithm: Some(alg.name().to_owned()),
        short_fingerprint: Some(short(&fp)),
        fingerprint: Some(fp),
        secret_name: Some(name.clone()),
        public_key_config_map: Some(name),
        ..KeyPairStatus::default()
    };
    Ok(Outcome::new(status, State::ready("KeyReady", message)))
}

/// The public key of a Ready `QuantumKEMKeyPair`, read from its ConfigMap; `Ok(None)` while it is not Ready.
///
/// # Errors
/// A user error if the published key is unusable, API errors otherwise.
pub async fn kem_public_key(ctx: &Context, ns: &str, name: &str) -> Result<Option<KemPublicKey>> {
    let Some(kp) = ctx.api::<QuantumKEMKeyPair>(ns).get_opt(name).await? else { return Ok(None) };
    if !is_ready(kp.status.as_ref().map(|s| &s.common), kp.metadata.generation) {
        return Ok(None);
    }
    let status = kp.status.as_ref();
    let cm_name = status.and_then(|s| s.public_key_config_map.clone()).unwrap_or_else(|| kp.name_any());
    let Some(cm) = ctx.api::<ConfigMap>(ns).get_opt(&cm_name).await? else { return Ok(None) };
    let Some(pem) = config_map_data(&cm, "public_key.pem") else { return Ok(None) };
    let public = PublicKey::from_pem(pem)
        .map_err(|e| Error::user("InvalidPublicKey", format!("ConfigMap {cm_name}: public_key.pem: {e}")))?;
    let fp = Fingerprint::of_public_key(&public).map_err(|e| Error::bug(e.to_string()))?.to_string();
    if status.and_then(|s| s.fingerprint.as_deref()) != Some(fp.as_str()) {
        // The ConfigMap is being rewritten; the watch brings us back.
        return Ok(None);
    }
    public.into_kem().map(Some).map_err(|e| Error::user("InvalidPublicKey", format!("key pair {name}: {e}")))
}

/// The private key of a Ready key pair of kind `K`, read from its Secret; `Ok(None)` while not Ready.
pub(crate) async fn ready_private_key<K>(ctx: &Context, ns: &str, name: &str) -> Result<Option<(PrivateKey, String)>>
where
    K: Managed + KeyPairLike,
{
    let Some(kp) = ctx.api::<K>(ns).get_opt(name).await? else { return Ok(None) };
    if !is_ready(kp.common_status(), kp.meta().generation) {
        return Ok(None);
    }
    let secret_name = kp.key_status().and_then(|s| s.secret_name.clone()).unwrap_or_else(|| kp.name_any());
    let Some(secret) = ctx.api::<Secret>(ns).get_opt(&secret_name).await? else { return Ok(None) };
    let Some(pem) = secret_data(&secret, "private_key.pem") else { return Ok(None) };
    let key = PrivateKey::from_pem(pem)
        .map_err(|e| Error::user("InvalidPrivateKey", format!("Secret {secret_name}: private_key.pem: {e}")))?;
    let fp = key
        .public_key()
        .and_then(|p| Fingerprint::of_public_key(&p))
        .map_err(|e| Error::bug(e.to_string()))?
        .to_string();
    if kp.key_status().and_then(|s| s.fingerprint.as_deref()) != Some(fp.as_str()) {
        return Ok(None);
    }
    Ok(Some((key, fp)))
}

/// The signing key of a Ready `QuantumSignatureKeyPair`, with its fingerprint; `Ok(None)` while not Ready.
///
/// # Errors
/// A user error if the stored key is unusable, API errors otherwise.
pub async fn signing_key(ctx: &Context, ns: &str, name: &str) -> Result<Option<(SigningKey, String)>> {
    match ready_private_key::<QuantumSignatureKeyPair>(ctx, ns, name).await? {
        Some((PrivateKey::Signature(k), fp)) => Ok(Some((k, fp))),
        Some(_) => Err(Error::user("WrongKeyType", format!("key pair {name} does not hold a signing key"))),
        None => Ok(None),
    }
}

/// Access to a key pair's status.
pub(crate) trait KeyPairLike {
    fn key_status(&self) -> Option<&KeyPairStatus>;
}

impl KeyPairLike for QuantumKEMKeyPair {
    fn key_status(&self) -> Option<&KeyPairStatus> {
        self.status.as_ref()
    }
}

impl KeyPairLike for QuantumSignatureKeyPair {
    fn key_status(&self) -> Option<&KeyPairStatus> {
        self.status.as_ref()
    }
}
