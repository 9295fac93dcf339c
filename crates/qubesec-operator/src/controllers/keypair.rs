//! `QuantumKEMKeyPair` and `QuantumSignatureKeyPair`: a key generated once, kept in a Secret,
//! its public key published in a ConfigMap, replaced on schedule (`spec.rotation.every`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use qubesec_core::{Algorithm, DeprecatedAlias, Fingerprint, KemPublicKey, PrivateKey, PublicKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::cache::{Run, Stores, Target};
use crate::crd::{
    KeyPairStatus, KeyPurpose, OutputStatus, QuantumKEMKeyPair, QuantumSignatureKeyPair, Revision, RotationSchedule,
    is_ready, push_revision,
};
use crate::duration;
use crate::error::{Error, Result};
use crate::outputs::{
    ConfigMapData, OutputMetadata, SecretData, config_map_data, found, now, secret_data, short, write,
};
use crate::reconcile::{Managed, Outcome, Reconcile, State, managed, namespace};

managed!(QuantumKEMKeyPair, "kemkeypair", KeyPairStatus);
managed!(QuantumSignatureKeyPair, "signaturekeypair", KeyPairStatus);

/// What a key pair's spec asks for, common to both kinds.
#[derive(Debug)]
pub(crate) struct KeyPairSpec<'a> {
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

/// The two key pair kinds, as their shared reconcile sees them.
pub(crate) trait KeyPair: Managed<Status = KeyPairStatus> {
    /// What the spec asks for.
    fn spec(&self) -> Result<KeyPairSpec<'_>>;
}

macro_rules! key_pair {
    ($ty:ty, $store:ident) => {
        impl KeyPair for $ty {
            fn spec(&self) -> Result<KeyPairSpec<'_>> {
                let (alg, alias) = self.spec.algorithm.resolve().map_err(|e| Error::bug(e.to_string()))?;
                Ok(KeyPairSpec {
                    alg: alg.into(),
                    alias,
                    secret_name: self.spec.keys.secret_name.as_deref(),
                    rotation: self.spec.keys.rotation.as_ref(),
                    history_limit: self.spec.keys.revision_history_limit,
                })
            }
        }

        impl Reconcile for $ty {
            fn references(&self) -> Vec<Target> {
                Vec::new()
            }

            fn store(stores: &Stores) -> &Store<Self> {
                &stores.$store
            }

            async fn reconcile(obj: Arc<Self>, run: Arc<Run>) -> Result<Outcome<KeyPairStatus>> {
                reconcile_key_pair(&*obj, &run).await
            }
        }
    };
}
key_pair!(QuantumKEMKeyPair, kem_key_pairs);
key_pair!(QuantumSignatureKeyPair, signature_key_pairs);

/// The shortest rotation period accepted: anything faster is a typo, not a policy.
const MIN_ROTATION: Duration = Duration::from_secs(10);

/// The longest rotation period accepted (100 years of 365 days): longer is a typo too, and
/// would overflow the timestamps it is added to.
const MAX_ROTATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Parses `spec.rotation.every` (also used by certificates). Admission checks the same bounds.
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

/// `t + d`.
pub(crate) fn time_after(t: jiff::Timestamp, d: Duration) -> Option<jiff::Timestamp> {
    jiff::SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok())
}

/// The key a key pair's Secret holds, read without touching the private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredKey {
    /// Fingerprint of `public_key.pem`.
    pub(crate) fingerprint: String,
    /// Its algorithm.
    pub(crate) alg: Algorithm,
    /// When it was made (from `metadata`, else the Secret's creation).
    pub(crate) created: String,
    /// `metadata.previousFingerprint`: the key this one replaced.
    pub(crate) previous: Option<String>,
    /// Whether every key of the layout is there (else the Secret is rewritten from the private key).
    pub(crate) complete: bool,
}

/// The data keys of a key pair Secret.
const SECRET_KEYS: [&str; 5] = ["public_key", "private_key", "public_key.pem", "private_key.pem", "metadata"];

/// Everything a key pair's plan looks at.
#[derive(Clone, Debug)]
pub(crate) struct Observed {
    /// The spec's algorithm.
    pub(crate) alg: Algorithm,
    /// The rotation period.
    pub(crate) every: Option<Duration>,
    /// The status written so far.
    pub(crate) previous: KeyPairStatus,
    /// The key in the Secret, if there is one.
    pub(crate) stored: Option<StoredKey>,
}

/// What a key pair reconcile does, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The stored key stays (it is the recorded one, or none is recorded yet).
    Keep,
    /// Make a key: there is none, or the Secret lost it (then it `replaces` the recorded one).
    Generate {
        /// The recorded fingerprint of the key that went missing.
        replaces: Option<String>,
    },
    /// The schedule says the stored key is due: replace it.
    Rotate,
    /// The Secret holds a rotation of ours whose status write was lost: record it.
    RecordRotation {
        /// The key it replaced (the recorded one).
        retired: String,
    },
}

/// Decides what to do with a key pair (pure).
///
/// # Errors
/// `AlgorithmMismatch` when the stored key is of another algorithm; `FingerprintMismatch` when
/// the Secret holds a key that is neither the recorded one nor our rotation of it.
pub(crate) fn plan(o: &Observed, name: &str, now: jiff::Timestamp) -> Result<Plan> {
    let recorded = o.previous.output.fingerprint.as_ref();
    let Some(stored) = &o.stored else {
        return Ok(Plan::Generate { replaces: recorded.cloned() });
    };
    if stored.alg != o.alg {
        return Err(Error::user(
            "AlgorithmMismatch",
            format!("Secret {name} holds a {} key, but spec.algorithm is {}", stored.alg.name(), o.alg.name()),
        ));
    }
    if let Some(rec) = recorded.filter(|r| **r != stored.fingerprint) {
        if stored.previous.as_ref() == Some(rec) {
            return Ok(Plan::RecordRotation { retired: rec.clone() });
        }
        return Err(Error::user(
            "FingerprintMismatch",
            format!(
                "Secret {name} holds a key with fingerprint {}, but status records {rec}; refusing to use or \
                 replace it (delete the Secret to generate a new key)",
                stored.fingerprint
            ),
        ));
    }
    let due = o.every.and_then(|e| stored.created.parse().ok().and_then(|t| time_after(t, e)));
    Ok(if due.is_some_and(|t| t <= now) { Plan::Rotate } else { Plan::Keep })
}

/// Reads the key a Secret holds from its public part (`Ok(None)` if it holds none).
fn stored_key(secret: &Secret, name: &str) -> Result<Option<StoredKey>> {
    let Some(pem) = secret_data(secret, "public_key.pem") else { return Ok(None) };
    let public = PublicKey::from_pem(pem).map_err(|e| {
        Error::user("CorruptSecret", format!("Secret {name}: public_key.pem is not a usable public key: {e}"))
    })?;
    let fingerprint = Fingerprint::of_public_key(&public).map_err(|e| Error::bug(e.to_string()))?.to_string();
    let meta = OutputMetadata::parse(secret_data(secret, "metadata"));
    let created = meta
        .as_ref()
        .map(|m| m.created.clone())
        .or_else(|| secret.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()))
        .unwrap_or_else(now);
    let complete = SECRET_KEYS.iter().all(|k| secret_data(secret, k).is_some());
    Ok(Some(StoredKey {
        fingerprint,
        alg: public.algorithm(),
        created,
        previous: meta.and_then(|m| m.previous_fingerprint),
        complete,
    }))
}

/// A key with every encoding the Secret holds, made on the crypto pool.
struct KeyMaterial {
    public: PublicKey,
    public_pem: String,
    private_pem: Zeroizing<String>,
    raw_private: Zeroizing<Vec<u8>>,
    fingerprint: String,
}

fn material(key: &PrivateKey) -> qubesec_core::Result<KeyMaterial> {
    let public = key.public_key()?;
    let raw = match key {
        PrivateKey::Kem(k) => k.seed().unwrap_or_else(|| k.expanded_key()).to_vec(),
        PrivateKey::Signature(k) => k.seed().unwrap_or_else(|| k.expanded_key()).to_vec(),
        _ => Vec::new(),
    };
    Ok(KeyMaterial {
        public_pem: public.to_spki_pem()?,
        private_pem: key.to_pkcs8_pem()?,
        raw_private: Zeroizing::new(raw),
        fingerprint: Fingerprint::of_public_key(&public)?.to_string(),
        public,
    })
}

async fn generate(run: &Run, alg: Algorithm) -> Result<KeyMaterial> {
    run.crypto("keygen", alg.name(), move || PrivateKey::generate(alg).and_then(|k| material(&k)))
        .await?
        .map_err(|e| Error::bug(format!("key generation: {e}")))
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

pub(crate) async fn reconcile_key_pair<K: KeyPair>(obj: &K, run: &Run) -> Result<Outcome<KeyPairStatus>> {
    // Observe.
    let KeyPairSpec { alg, alias, secret_name, rotation, history_limit } = obj.spec()?;
    let kind = K::kind(&()).into_owned();
    let name = secret_name.map_or_else(|| obj.name_any(), str::to_owned);
    let secret = found::<Secret, K>(run, obj, &name)?;
    let config_map = found::<ConfigMap, K>(run, obj, &name)?;
    secret.refuse_foreign(obj, &name, "spec.secretName")?;
    config_map.refuse_foreign(obj, &name, "spec.secretName")?;
    let observed = Observed {
        alg,
        every: rotation_period(rotation)?,
        previous: obj.status().cloned().unwrap_or_default(),
        stored: secret.ours().map(|s| stored_key(s, &name)).transpose()?.flatten(),
    };
    // Plan.
    let plan = plan(&observed, &name, jiff::Timestamp::now())?;
    // Apply.
    let Observed { every, previous, stored, .. } = observed;
    let (retired, rotated): (Option<(String, Option<String>)>, bool) = match &plan {
        Plan::Keep => (None, false),
        Plan::Generate { replaces } => (replaces.clone().map(|r| (r, previous.created_at.clone())), false),
        Plan::Rotate => (stored.as_ref().map(|s| (s.fingerprint.clone(), Some(s.created.clone()))), true),
        Plan::RecordRotation { retired } => (Some((retired.clone(), previous.created_at.clone())), true),
    };
    let (public, fp, created) = match (&plan, &stored) {
        (Plan::Keep | Plan::RecordRotation { .. }, Some(s)) if s.complete => {
            let pem = secret.ours().and_then(|s| secret_data(s, "public_key.pem")).unwrap_or_default();
            let public = PublicKey::from_pem(pem).map_err(|e| Error::bug(e.to_string()))?;
            (public, s.fingerprint.clone(), s.created.clone())
        }
        (Plan::Keep | Plan::RecordRotation { .. }, Some(s)) => {
            // Ours but incomplete (an older layout, or a key removed): rewrite it from the private key.
            let pem = secret.ours().and_then(|s| secret_data(s, "private_key.pem")).map(<[u8]>::to_vec);
            let Some(pem) = pem.map(Zeroizing::new) else {
                return Err(Error::user("CorruptSecret", format!("Secret {name} has no private_key.pem")));
            };
            let m = run
                .crypto("load", alg.name(), move || PrivateKey::from_pem(&pem).and_then(|k| material(&k)))
                .await?
                .map_err(|e| Error::user("CorruptSecret", format!("Secret {name}: private_key.pem: {e}")))?;
            if m.fingerprint != s.fingerprint {
                return Err(Error::user(
                    "CorruptSecret",
                    format!("Secret {name}: private_key.pem does not belong to public_key.pem"),
                ));
            }
            let meta = OutputMetadata {
                previous_fingerprint: s.previous.clone(),
                ..OutputMetadata::new(&kind, alg.name(), &m.fingerprint, &s.created)
            };
            write::<Secret, K>(run, obj, &name, "spec.secretName", &secret, &key_secret(&m, &meta)).await?;
            (m.public, m.fingerprint, s.created.clone())
        }
        _ => {
            let m = generate(run, alg).await?;
            let created = now();
            let meta = OutputMetadata {
                previous_fingerprint: retired.as_ref().map(|(old, _)| old.clone()),
                ..OutputMetadata::new(&kind, alg.name(), &m.fingerprint, &created)
            };
            write::<Secret, K>(run, obj, &name, "spec.secretName", &secret, &key_secret(&m, &meta)).await?;
            let event = match (&retired, rotated) {
                (Some((old, _)), true) => {
                    run.metrics.rotated(K::KIND);
                    let note =
                        format!("rotated the {} key: {} replaces {}", alg.name(), short(&m.fingerprint), short(old));
                    (EventType::Normal, "KeyRotated", note)
                }
                (Some((old, _)), false) => {
                    let note = format!(
                        "output Secret {name} was missing; generated a new {} key {} (was {old})",
                        alg.name(),
                        m.fingerprint
                    );
                    (EventType::Warning, "SecretRegenerated", note)
                }
                (None, _) => {
                    (EventType::Normal, "KeyGenerated", format!("generated {} key {}", alg.name(), m.fingerprint))
                }
            };
            run.event(obj, event.0, event.1, event.2).await;
            if let Some(a) = &alias {
                run.event(obj, EventType::Warning, "DeprecatedAlgorithmName", a.to_string()).await;
            }
            (m.public, m.fingerprint, created)
        }
    };
    let revision = previous.revision.unwrap_or(1).saturating_add(u32::from(retired.is_some()));
    let entry = retired.as_ref().map(|(old, old_created)| Revision {
        revision: revision.saturating_sub(1),
        fingerprint: old.clone(),
        created_at: old_created.clone(),
        retired_at: now(),
        ..Revision::default()
    });
    let history = push_revision(&previous.history, entry, history_limit);

    // The public ConfigMap: the key, its metadata, and the retired keys still in the history.
    let public_pem = public.to_spki_pem().map_err(|e| Error::bug(e.to_string()))?;
    let mut known = BTreeMap::new();
    for k in ["public_key_history.pem", "public_key.pem"] {
        if let Some(text) = config_map.ours().and_then(|c| config_map_data(c, k)) {
            known.extend(public_keys_by_fingerprint(text));
        }
    }
    let history_pem: String = history.iter().filter_map(|r| known.get(&r.fingerprint).cloned()).collect();
    let meta = OutputMetadata {
        previous_fingerprint: history.first().map(|r| r.fingerprint.clone()),
        ..OutputMetadata::new(&kind, alg.name(), &fp, &created)
    };
    let mut cm = ConfigMapData {
        data: BTreeMap::from([("public_key.pem".to_owned(), public_pem), ("metadata".to_owned(), meta.to_json())]),
        binary: BTreeMap::from([("public_key".to_owned(), public.as_bytes().to_vec())]),
    };
    if !history_pem.is_empty() {
        cm.data.insert("public_key_history.pem".to_owned(), history_pem);
    }
    write::<ConfigMap, K>(run, obj, &name, "spec.secretName", &config_map, &cm).await?;

    let created_ts: Option<jiff::Timestamp> = created.parse().ok();
    if let Some(t) = created_ts {
        run.metrics.key(K::KIND, &namespace(obj)?, &obj.name_any(), alg.name(), t.as_second());
    }
    let next_rotation = every.and_then(|e| created_ts.and_then(|t| time_after(t, e)));
    let message = match &alias {
        Some(a) => format!("{} key {} in Secret {name} ({a})", alg.name(), short(&fp)),
        None => format!("{} key {} in Secret {name}", alg.name(), short(&fp)),
    };
    let status = KeyPairStatus {
        output: OutputStatus::new(alg.name(), Some(fp), Some(name.clone())),
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

fn key_secret(m: &KeyMaterial, meta: &OutputMetadata) -> SecretData {
    SecretData {
        type_: "Opaque",
        data: BTreeMap::from([
            ("public_key".to_owned(), m.public.as_bytes().to_vec()),
            ("private_key".to_owned(), m.raw_private.to_vec()),
            ("public_key.pem".to_owned(), m.public_pem.clone().into_bytes()),
            ("private_key.pem".to_owned(), m.private_pem.as_bytes().to_vec()),
            ("metadata".to_owned(), meta.to_json().into_bytes()),
        ]),
    }
}

/// A Ready key pair of kind `K` in the cache, its status, and the fingerprint it records;
/// `None` while it is missing or not Ready.
fn ready_key_pair<K: KeyPair>(store: &Store<K>, ns: &str, name: &str) -> Option<(Arc<K>, KeyPairStatus, String)> {
    let kp = store.get(&ObjectRef::new(name).within(ns))?;
    if !is_ready(kp.common_status(), kp.meta().generation) {
        return None;
    }
    let status = kp.status().cloned()?;
    let fp = status.output.fingerprint.clone()?;
    Some((kp, status, fp))
}

/// The published public key of a Ready key pair (from its ConfigMap, when it carries the
/// recorded fingerprint); `Ok(None)` while it is not Ready or being rewritten.
fn published_key<K: KeyPair>(run: &Run, store: &Store<K>, ns: &str, name: &str) -> Result<Option<(PublicKey, String)>> {
    let Some((kp, status, fp)) = ready_key_pair(store, ns, name) else { return Ok(None) };
    let cm_name = status.public_key_config_map.clone().unwrap_or_else(|| kp.name_any());
    let Some(cm) = run.stores.config_maps.get(&ObjectRef::new(&cm_name).within(ns)) else { return Ok(None) };
    let Some(pem) = config_map_data(&cm, "public_key.pem") else { return Ok(None) };
    let public = PublicKey::from_pem(pem)
        .map_err(|e| Error::user("InvalidPublicKey", format!("ConfigMap {cm_name}: public_key.pem: {e}")))?;
    let have = Fingerprint::of_public_key(&public).map_err(|e| Error::bug(e.to_string()))?.to_string();
    // A different key means the ConfigMap is being rewritten; its change brings us back.
    Ok((have == fp).then_some((public, fp)))
}

/// The public key of a Ready `QuantumKEMKeyPair` and its fingerprint; `Ok(None)` while it is not Ready.
///
/// # Errors
/// A user error if the published key is unusable.
pub(crate) fn kem_public_key(run: &Run, ns: &str, name: &str) -> Result<Option<(KemPublicKey, String)>> {
    let Some((public, fp)) = published_key(run, &run.stores.kem_key_pairs, ns, name)? else { return Ok(None) };
    let kem = public.into_kem().map_err(|e| Error::user("InvalidPublicKey", format!("key pair {name}: {e}")))?;
    Ok(Some((kem, fp)))
}

/// A Ready `QuantumSignatureKeyPair` for a use that needs `purpose` (any, for verifying): its
/// public key and fingerprint; `Ok(None)` while it is not Ready. `field` names the referencing spec field.
///
/// # Errors
/// `KeyPurposeMismatch` when the key pair's purpose is another one.
pub(crate) fn signature_public_key(
    run: &Run,
    ns: &str,
    name: &str,
    purpose: Option<KeyPurpose>,
    field: &str,
    use_: &str,
) -> Result<Option<(VerifyingKey, String)>> {
    if let (Some(kp), Some(purpose)) = (run.stores.signature_key_pairs.get(&ObjectRef::new(name).within(ns)), purpose)
        && kp.spec.purpose != purpose
    {
        return Err(purpose_mismatch(name, kp.spec.purpose, purpose, field, use_));
    }
    let Some((public, fp)) = published_key(run, &run.stores.signature_key_pairs, ns, name)? else {
        return Ok(None);
    };
    let key = public.into_signature().map_err(|e| Error::user("InvalidPublicKey", format!("key pair {name}: {e}")))?;
    Ok(Some((key, fp)))
}

/// The refusal of a key pair used outside its purpose.
pub(crate) fn purpose_mismatch(name: &str, has: KeyPurpose, needs: KeyPurpose, field: &str, use_: &str) -> Error {
    let why = match has {
        KeyPurpose::CertificateAuthority => "a CA key signs certificates the operator builds, never anything else",
        KeyPurpose::Signing => "a key that may sign chosen messages must never back a CA",
    };
    Error::user(
        "KeyPurposeMismatch",
        format!(
            "{field}: QuantumSignatureKeyPair {name} has spec.purpose {has}, but {use_} needs purpose {needs} ({why})"
        ),
    )
}

/// The private key PEM of a Ready key pair of kind `K` and the fingerprint it must have;
/// `None` while it is not Ready. Parse it on the crypto pool ([`load_private_key`]).
pub(crate) fn private_key_pem<K: KeyPair>(
    run: &Run,
    store: &Store<K>,
    ns: &str,
    name: &str,
) -> Option<(Zeroizing<Vec<u8>>, String)> {
    let (kp, status, fp) = ready_key_pair(store, ns, name)?;
    let secret_name = status.output.secret_name.clone().unwrap_or_else(|| kp.name_any());
    let secret = run.stores.secrets.get(&ObjectRef::new(&secret_name).within(ns))?;
    let pem = secret_data(&secret, "private_key.pem")?;
    Some((Zeroizing::new(pem.to_vec()), fp))
}

/// Parses a key pair's private key (from [`private_key_pem`]; on the crypto pool: SLH-DSA
/// recomputes its root) and checks it is still the key with `fingerprint`, the one the key
/// pair's status shows: [`Error::Stale`] while its Secret is being rewritten. `field` names the
/// reference in the error of a key that does not parse.
pub(crate) fn load_private_key(pem: &[u8], fingerprint: &str, field: &str) -> Result<PrivateKey> {
    let key = PrivateKey::from_pem(pem)
        .map_err(|e| Error::user("InvalidPrivateKey", format!("{field}: the key pair's private_key.pem: {e}")))?;
    let have = key.public_key().and_then(|p| Fingerprint::of_public_key(&p)).map_err(|e| Error::bug(e.to_string()))?;
    if have.to_string() != fingerprint {
        return Err(Error::Stale("the key pair's Secret is being rewritten".into()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-05-01T12:00:00Z";

    fn stored(fp: &str, created: &str, previous: Option<&str>) -> StoredKey {
        StoredKey {
            fingerprint: fp.to_owned(),
            alg: qubesec_core::KemAlgorithm::MlKem768.into(),
            created: created.to_owned(),
            previous: previous.map(str::to_owned),
            complete: true,
        }
    }

    fn observed(recorded: Option<&str>, stored: Option<StoredKey>, every: Option<u64>) -> Observed {
        let mut previous = KeyPairStatus::default();
        previous.output.fingerprint = recorded.map(str::to_owned);
        Observed {
            alg: qubesec_core::KemAlgorithm::MlKem768.into(),
            every: every.map(Duration::from_secs),
            previous,
            stored,
        }
    }

    #[test]
    fn key_pair_plans() {
        let now: jiff::Timestamp = NOW.parse().unwrap();
        let hour_ago = "2026-05-01T11:00:00Z";
        let cases: Vec<(&str, Observed, Result<Plan, &str>)> = vec![
            ("first key", observed(None, None, None), Ok(Plan::Generate { replaces: None })),
            (
                "Secret deleted",
                observed(Some("sha256:a"), None, None),
                Ok(Plan::Generate { replaces: Some("sha256:a".into()) }),
            ),
            ("unchanged", observed(Some("sha256:a"), Some(stored("sha256:a", hour_ago, None)), None), Ok(Plan::Keep)),
            ("adopted", observed(None, Some(stored("sha256:a", hour_ago, None)), None), Ok(Plan::Keep)),
            (
                "not due",
                observed(Some("sha256:a"), Some(stored("sha256:a", hour_ago, None)), Some(7200)),
                Ok(Plan::Keep),
            ),
            ("due", observed(Some("sha256:a"), Some(stored("sha256:a", hour_ago, None)), Some(3600)), Ok(Plan::Rotate)),
            (
                "rotation whose status was lost",
                observed(Some("sha256:a"), Some(stored("sha256:b", NOW, Some("sha256:a"))), Some(3600)),
                Ok(Plan::RecordRotation { retired: "sha256:a".into() }),
            ),
            (
                "foreign key",
                observed(Some("sha256:a"), Some(stored("sha256:b", NOW, Some("sha256:x"))), None),
                Err("FingerprintMismatch"),
            ),
        ];
        for (what, o, want) in cases {
            let got = plan(&o, "s", now).map_err(|e| e.reason());
            assert_eq!(got, want, "{what}");
        }
        let mut other = observed(None, Some(stored("sha256:a", NOW, None)), None);
        other.alg = qubesec_core::KemAlgorithm::MlKem1024.into();
        assert_eq!(plan(&other, "s", now).unwrap_err().reason(), "AlgorithmMismatch");
    }
}
