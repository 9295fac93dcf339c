//! `QuantumKEMKeyPair` and `QuantumSignatureKeyPair`: a key generated once, kept
//! in a Secret, its public key published in a ConfigMap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use crate::crd::{
    KeyPairStatus, QuantumKEMKeyPair, QuantumSignatureKeyPair, Revision, RotationSchedule, is_ready, push_revision,
};
use crate::duration;
use crate::error::{Error, Result};
use crate::outputs::{
    apply_config_map, apply_secret, config_map_data, created_of, metadata_json, now, owned_config_map, owned_secret,
    secret_data, secret_matches, short,
};
use crate::reconcile::{Managed, Outcome, State, error_policy, finish, fresh, managed, namespace};

managed!(QuantumKEMKeyPair, "kemkeypair");
managed!(QuantumSignatureKeyPair, "signaturekeypair");

/// The two key pair kinds, as their shared controller sees them.
pub(crate) trait KeyPair: Managed {
    /// What the spec asks for.
    fn inputs(&self) -> Result<KeyPairInputs<'_>>;
    /// The status written so far.
    fn key_pair_status(&self) -> Option<&KeyPairStatus>;
}

macro_rules! key_pair {
    ($ty:ty) => {
        impl KeyPair for $ty {
            fn inputs(&self) -> Result<KeyPairInputs<'_>> {
                let (alg, alias) = self.spec.algorithm.resolve().map_err(|e| Error::bug(e.to_string()))?;
                Ok(KeyPairInputs {
                    alg: alg.into(),
                    alias,
                    secret_name: self.spec.secret_name.as_deref(),
                    rotation: self.spec.rotation.as_ref(),
                    history_limit: self.spec.revision_history_limit,
                })
            }
            fn key_pair_status(&self) -> Option<&KeyPairStatus> {
                self.status.as_ref()
            }
        }
    };
}
key_pair!(QuantumKEMKeyPair);
key_pair!(QuantumSignatureKeyPair);

/// The controller of key pair kind `K`: its objects, and the Secrets and ConfigMaps it owns.
pub(crate) fn controller<K: KeyPair>(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    Controller::new(ctx.watch_api::<K>(), watcher::Config::default())
        .owns(ctx.watch_api::<Secret>(), owned_config::<K>())
        .owns(ctx.watch_api::<ConfigMap>(), owned_config::<K>())
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(log_result)
        .boxed()
}

async fn reconcile<K: KeyPair>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let Some(obj) = fresh(&*obj, &ctx).await? else { return Ok(Action::await_change()) };
    let result = async { reconcile_key_pair(&*obj, &ctx, obj.inputs()?, obj.key_pair_status()).await }.await;
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

/// What a key pair's spec asks for, common to both kinds.
#[derive(Debug)]
pub(crate) struct KeyPairInputs<'a> {
    /// The algorithm.
    pub(crate) alg: Algorithm,
    /// Set when the spec used a legacy algorithm name.
    pub(crate) alias: Option<DeprecatedAlias>,
    /// `spec.secretName`.
    pub(crate) secret_name: Option<&'a str>,
    /// `spec.rotation`.
    pub(crate) rotation: Option<&'a RotationSchedule>,
    /// `spec.revisionHistoryLimit`.
    pub(crate) history_limit: Option<u32>,
}

/// The shortest rotation period accepted: anything faster is a typo, not a policy.
const MIN_ROTATION: Duration = Duration::from_secs(10);

/// The longest rotation period accepted (100 years of 365 days): longer is a typo too, and
/// would overflow the timestamps it is added to.
const MAX_ROTATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Parses `spec.rotation.every` (also used by certificates).
pub(crate) fn rotation_period(rotation: Option<&RotationSchedule>) -> Result<Option<Duration>> {
    let Some(r) = rotation else { return Ok(None) };
    let every =
        duration::parse(&r.every).map_err(|e| Error::user("InvalidSpec", format!("spec.rotation.every: {e}")))?;
    if every < MIN_ROTATION {
        return Err(Error::user(
            "InvalidSpec",
            format!("spec.rotation.every: {:?} is shorter than the minimum of 10s", r.every),
        ));
    }
    if every > MAX_ROTATION {
        return Err(Error::user(
            "InvalidSpec",
            format!("spec.rotation.every: {:?} is longer than the maximum of 876000h (100 years)", r.every),
        ));
    }
    Ok(Some(every))
}

/// Parses an RFC 3339 time written by [`now`].
fn parse_time(text: &str) -> Option<jiff::Timestamp> {
    text.parse().ok()
}

/// `t + d`, RFC 3339.
fn time_after(t: jiff::Timestamp, d: Duration) -> Option<jiff::Timestamp> {
    jiff::SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok())
}

/// The PEM blocks of `text` by the fingerprint of the public key each holds (unparsable blocks are skipped).
fn public_keys_by_fingerprint(text: &[u8]) -> BTreeMap<String, String> {
    const END: &str = "-----END PUBLIC KEY-----";
    let text = String::from_utf8_lossy(text);
    text.split_inclusive(END)
        .filter_map(|block| {
            let block = block.trim();
            let key = PublicKey::from_pem(block.as_bytes()).ok()?;
            let fp = Fingerprint::of_public_key(&key).ok()?.to_string();
            Some((fp, format!("{block}\n")))
        })
        .collect()
}

pub(crate) async fn reconcile_key_pair<K: Managed>(
    obj: &K,
    ctx: &Context,
    inputs: KeyPairInputs<'_>,
    status: Option<&KeyPairStatus>,
) -> Result<Outcome<KeyPairStatus>> {
    let KeyPairInputs { alg, alias, secret_name, rotation, history_limit } = inputs;
    let kind = K::kind(&()).into_owned();
    let every = rotation_period(rotation)?;
    let name = secret_name.map_or_else(|| obj.name_any(), str::to_owned);
    let previous = status.cloned().unwrap_or_default();
    let recorded = previous.fingerprint.clone();
    let existing = owned_secret(ctx, obj, &name).await?;
    let existing_cm = owned_config_map(ctx, obj, &name, "spec.secretName").await?;

    let stored = existing.as_ref().and_then(|s| secret_data(s, "private_key.pem"));
    let stored_meta = existing.as_ref().and_then(|s| secret_data(s, "metadata"));
    let (mut key, mut created, mut generated) = match stored {
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
            (key, created_of(stored_meta).unwrap_or_else(now), false)
        }
        None => (
            ctx.metrics
                .crypto("keygen", alg.name(), || PrivateKey::generate(alg))
                .map_err(|e| Error::bug(format!("key generation: {e}")))?,
            now(),
            true,
        ),
    };
    let fp_of = |key: &PrivateKey| -> Result<String> {
        let public = key.public_key().map_err(|e| Error::bug(e.to_string()))?;
        Ok(Fingerprint::of_public_key(&public).map_err(|e| Error::bug(e.to_string()))?.to_string())
    };
    let mut fp = fp_of(&key)?;
    // The key this reconcile retires, if any: the recorded one when the Secret went missing or
    // when a rotation wrote the Secret but not the status; the current one when its time is up.
    let mut retired: Option<(String, Option<String>)> = None;
    let mut rotated = false;
    if let Some(old) = recorded.as_ref().filter(|r| **r != fp) {
        let our_rotation = previous_fingerprint_of(stored_meta).as_deref() == Some(old.as_str());
        if !generated && !our_rotation {
            return Err(Error::user(
                "FingerprintMismatch",
                format!(
                    "Secret {name} holds a key with fingerprint {fp}, but status records {old}; refusing to use or \
                     replace it (delete the Secret to generate a new key)"
                ),
            ));
        }
        retired = Some((old.clone(), previous.created_at.clone()));
        rotated = our_rotation && !generated;
    }
    let due = every.and_then(|e| parse_time(&created).and_then(|t| time_after(t, e)));
    if !generated && retired.is_none() && due.is_some_and(|t| t <= jiff::Timestamp::now()) {
        let old = std::mem::replace(
            &mut key,
            ctx.metrics
                .crypto("keygen", alg.name(), || PrivateKey::generate(alg))
                .map_err(|e| Error::bug(format!("key generation: {e}")))?,
        );
        drop(old);
        retired = Some((fp.clone(), Some(created.clone())));
        fp = fp_of(&key)?;
        created = now();
        generated = true;
        rotated = true;
    }
    let revision = previous.revision.unwrap_or(1).saturating_add(u32::from(retired.is_some()));
    let entry = retired.as_ref().map(|(old, old_created)| Revision {
        revision: revision.saturating_sub(1),
        fingerprint: old.clone(),
        created_at: old_created.clone(),
        retired_at: now(),
        ..Revision::default()
    });
    let history = push_revision(&previous.history, entry, history_limit);

    let public = key.public_key().map_err(|e| Error::bug(e.to_string()))?;
    let public_pem = public.to_spki_pem().map_err(|e| Error::bug(e.to_string()))?;
    let private_pem = key.to_pkcs8_pem().map_err(|e| Error::bug(e.to_string()))?;
    let mut metadata: serde_json::Value = serde_json::from_str(&metadata_json(&kind, alg.name(), &fp, &created))
        .map_err(|e| Error::bug(format!("metadata: {e}")))?;
    // Lets the next reconcile tell our own rotation (status write lost) from a foreign key.
    let previous_fp = retired.as_ref().map(|(old, _)| old.clone()).or_else(|| previous_fingerprint_of(stored_meta));
    if let (Some(prev), Some(m)) = (previous_fp, metadata.as_object_mut()) {
        m.insert("previousFingerprint".to_owned(), prev.into());
    }
    let metadata = metadata.to_string();
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
    // Retired public keys, from what the ConfigMap published so far (current and history).
    let mut known = BTreeMap::new();
    for k in ["public_key_history.pem", "public_key.pem"] {
        if let Some(text) = existing_cm.as_ref().and_then(|c| config_map_data(c, k)) {
            known.extend(public_keys_by_fingerprint(text));
        }
    }
    let history_pem: String = history.iter().filter_map(|r| known.get(&r.fingerprint).cloned()).collect();
    let mut cm_data = BTreeMap::from([("public_key.pem".to_owned(), public_pem), ("metadata".to_owned(), metadata)]);
    if !history_pem.is_empty() {
        cm_data.insert("public_key_history.pem".to_owned(), history_pem);
    }
    apply_config_map(ctx, obj, &name, cm_data, BTreeMap::from([("public_key".to_owned(), public.as_bytes().to_vec())]))
        .await?;
    let event = match (&retired, rotated) {
        (Some((old, _)), true) => {
            ctx.metrics.rotated(K::KIND);
            let note =
                format!("rotated the {} key: {} replaces {} (revision {revision})", alg.name(), short(&fp), short(old));
            Some((EventType::Normal, "KeyRotated", note))
        }
        (Some((old, _)), false) => {
            let note = format!("output Secret {name} was missing; generated a new {} key {fp} (was {old})", alg.name());
            Some((EventType::Warning, "SecretRegenerated", note))
        }
        (None, _) if generated => {
            Some((EventType::Normal, "KeyGenerated", format!("generated {} key {fp}", alg.name())))
        }
        (None, _) => None,
    };
    if let Some((type_, reason, note)) = event {
        ctx.event(obj, type_, reason, note).await;
        if let Some(a) = &alias {
            ctx.event(obj, EventType::Warning, "DeprecatedAlgorithmName", a.to_string()).await;
        }
    }
    let created_ts = parse_time(&created);
    if let Some(t) = created_ts {
        ctx.metrics.key(K::KIND, &namespace(obj)?, &obj.name_any(), alg.name(), t.as_second());
    }
    let next_rotation = every.and_then(|e| created_ts.and_then(|t| time_after(t, e)));
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
        revision: Some(revision),
        created_at: Some(created),
        next_rotation_time: next_rotation.map(|t| t.to_string()),
        history,
        ..KeyPairStatus::default()
    };
    let mut outcome = Outcome::new(status, State::ready("KeyReady", message));
    if let Some(t) = next_rotation {
        let wait = t.duration_since(jiff::Timestamp::now());
        outcome.requeue = Some(Duration::try_from(wait).unwrap_or_default().max(Duration::from_secs(1)));
    }
    Ok(outcome)
}

/// The `previousFingerprint` recorded in a key pair Secret's `metadata`.
fn previous_fingerprint_of(data: Option<&[u8]>) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(data?).ok()?;
    v.get("previousFingerprint")?.as_str().map(str::to_owned)
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
