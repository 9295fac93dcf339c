//! `QuantumEncapsulateSecret`: encapsulates to a Ready key pair's public key (or one published
//! in a ConfigMap), once per public key; waits (`WaitingForKeyPair`) until the key is there.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use qubesec_core::{Fingerprint, KemPublicKey, PublicKey};

use super::keypair::kem_public_key;
use crate::cache::{Run, Stores, Target};
use crate::crd::{DataKind, EncapsulateStatus, OutputStatus, PublicKeySource, QuantumEncapsulateSecret};
use crate::error::{Error, Result};
use crate::outputs::{
    ConfigMapData, InputRef, OutputMetadata, SecretData, fingerprint, found, now, read_input, secret_data, short, write,
};
use crate::reconcile::{Managed, Outcome, Reconcile, State, managed, namespace};

managed!(QuantumEncapsulateSecret, "encapsulatesecret", EncapsulateStatus);

/// Why an encapsulation is (re)done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// There is none yet.
    First,
    /// The Secret went missing.
    SecretMissing,
    /// The public key changed (a rotation or a new key pair).
    KeyChanged,
    /// The Secret no longer holds the recorded shared secret.
    SecretModified,
}

/// What the stored encapsulation is: shared secret fingerprint and the key it was made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    /// `sha256:` of the stored shared secret.
    pub(crate) fingerprint: String,
    /// The public key it was made for (from the Secret's `metadata`, else the status).
    pub(crate) made_for: Option<String>,
}

/// Keep the stored encapsulation (`None`) or make a new one, and why (pure).
pub(crate) fn plan(stored: Option<&Stored>, recorded: Option<&String>, key: &str) -> Option<Why> {
    match stored {
        None if recorded.is_some() => Some(Why::SecretMissing),
        None => Some(Why::First),
        Some(s) if s.made_for.as_deref() != Some(key) => Some(Why::KeyChanged),
        Some(s) if recorded.is_some_and(|r| *r != s.fingerprint) => Some(Why::SecretModified),
        Some(_) => None,
    }
}

impl Reconcile for QuantumEncapsulateSecret {
    fn references(&self) -> Vec<Target> {
        let r = &self.spec.public_key_ref;
        let ns = r.namespace.clone().or_else(|| self.namespace()).unwrap_or_default();
        let kind = match r.kind {
            PublicKeySource::QuantumKEMKeyPair => "QuantumKEMKeyPair",
            PublicKeySource::ConfigMap => "ConfigMap",
        };
        vec![(kind, ns, r.name.clone())]
    }

    fn store(stores: &Stores) -> &Store<Self> {
        &stores.encapsulations
    }

    async fn reconcile(obj: Arc<Self>, run: Arc<Run>) -> Result<Outcome<EncapsulateStatus>> {
        reconcile_inner(&obj, &run).await
    }
}

/// The public key to encapsulate to and its fingerprint; `Ok(None)` while it is not there.
async fn public_key(obj: &QuantumEncapsulateSecret, run: &Run) -> Result<Option<(KemPublicKey, String)>> {
    let r = &obj.spec.public_key_ref;
    let ns = run.ref_namespace(&namespace(obj)?, "spec.publicKeyRef", r.namespace.as_deref())?;
    match r.kind {
        PublicKeySource::QuantumKEMKeyPair => kem_public_key(run, &ns, &r.name),
        PublicKeySource::ConfigMap => {
            let key = r.key.as_deref().unwrap_or("public_key.pem");
            let at =
                InputRef { field: "spec.publicKeyRef", kind: DataKind::ConfigMap, namespace: &ns, name: &r.name, key };
            let Some(input) = read_input(run, &at).await? else { return Ok(None) };
            let public = PublicKey::from_pem(&input.bytes).map_err(|e| {
                Error::user("InvalidPublicKey", format!("spec.publicKeyRef: ConfigMap {} key {key}: {e}", r.name))
            })?;
            let fp = Fingerprint::of_public_key(&public).map_err(|e| Error::bug(e.to_string()))?.to_string();
            let kem =
                public.into_kem().map_err(|e| Error::user("InvalidPublicKey", format!("spec.publicKeyRef: {e}")))?;
            Ok(Some((kem, fp)))
        }
    }
}

pub(crate) async fn reconcile_inner(obj: &QuantumEncapsulateSecret, run: &Run) -> Result<Outcome<EncapsulateStatus>> {
    // Observe.
    let name = obj.spec.secret_name.clone().unwrap_or_else(|| obj.name_any());
    let previous = obj.status().cloned().unwrap_or_default();
    let Some((pk, pk_fp)) = public_key(obj, run).await? else {
        let r = &obj.spec.public_key_ref;
        return Ok(Outcome::new(
            previous,
            State::pending("WaitingForKeyPair", format!("waiting for {} {} to be Ready", r.kind, r.name)),
        ));
    };
    let alg = pk.algorithm();
    let secret = found::<Secret, _>(run, obj, &name)?;
    let config_map = found::<ConfigMap, _>(run, obj, &name)?;
    secret.refuse_foreign(obj, &name, "spec.secretName")?;
    config_map.refuse_foreign(obj, &name, "spec.secretName")?;
    let stored_pair =
        secret.ours().and_then(|s| Some((secret_data(s, "shared_secret")?, secret_data(s, "ciphertext")?)));
    let stored_meta = secret.ours().and_then(|s| OutputMetadata::parse(secret_data(s, "metadata")));
    let stored = stored_pair.map(|(ss, _)| Stored {
        fingerprint: fingerprint(ss),
        made_for: stored_meta
            .as_ref()
            .and_then(|m| m.public_key_fingerprint.clone())
            .or_else(|| previous.public_key_fingerprint.clone()),
    });
    // Plan.
    let why = plan(stored.as_ref(), previous.output.fingerprint.as_ref(), &pk_fp);
    // Apply.
    let (ss_fp, ct) = match (why, stored_pair, stored) {
        (None, Some((_, ct)), Some(s)) => (s.fingerprint, ct.to_vec()),
        (why, _, _) => {
            let (ct, ss) = run
                .crypto("encapsulate", alg.name(), move || pk.encapsulate())
                .await?
                .map_err(|e| Error::bug(format!("encapsulation: {e}")))?;
            let ss_fp = fingerprint(ss.as_bytes());
            let meta = OutputMetadata {
                public_key_fingerprint: Some(pk_fp.clone()),
                ..OutputMetadata::new("QuantumEncapsulateSecret", alg.name(), &ss_fp, &now())
            };
            let data = BTreeMap::from([
                ("shared_secret".to_owned(), ss.as_bytes().to_vec()),
                ("ciphertext".to_owned(), ct.as_bytes().to_vec()),
                ("metadata".to_owned(), meta.to_json().into_bytes()),
            ]);
            write::<Secret, _>(run, obj, &name, "spec.secretName", &secret, &SecretData { type_: "Opaque", data })
                .await?;
            let (reason, type_, note) = match why.unwrap_or(Why::First) {
                Why::First => {
                    ("Encapsulated", EventType::Normal, format!("encapsulated to {alg} key {}", short(&pk_fp)))
                }
                Why::SecretMissing => (
                    "SecretRegenerated",
                    EventType::Warning,
                    format!("output Secret {name} was missing; encapsulated a new shared secret {ss_fp}"),
                ),
                Why::KeyChanged => (
                    "Reencapsulated",
                    EventType::Normal,
                    format!("public key is now {}; encapsulated a new shared secret", short(&pk_fp)),
                ),
                Why::SecretModified => (
                    "SecretModified",
                    EventType::Warning,
                    format!("output Secret {name} no longer held the recorded shared secret; encapsulated a new one"),
                ),
            };
            run.event(obj, type_, reason, note).await;
            (ss_fp, ct.as_bytes().to_vec())
        }
    };
    let ct_fp = fingerprint(&ct);
    let created = obj.metadata.creation_timestamp.as_ref().map_or_else(now, |t| t.0.to_string());
    let cm = ConfigMapData {
        data: BTreeMap::from([
            (
                "metadata".to_owned(),
                OutputMetadata::new("QuantumEncapsulateSecret", alg.name(), &ct_fp, &created).to_json(),
            ),
            // Lets a decapsulator tell a ciphertext for its current key from a stale one.
            ("public_key_fingerprint".to_owned(), pk_fp.clone()),
        ]),
        binary: BTreeMap::from([("ciphertext".to_owned(), ct)]),
    };
    write::<ConfigMap, _>(run, obj, &name, "spec.secretName", &config_map, &cm).await?;
    let status = EncapsulateStatus {
        output: OutputStatus::new(alg.name(), Some(ss_fp), Some(name.clone())),
        public_key_fingerprint: Some(pk_fp),
        ciphertext_fingerprint: Some(ct_fp),
        ciphertext_config_map: Some(name.clone()),
        ..EncapsulateStatus::default()
    };
    Ok(Outcome::new(
        status,
        State::ready("Encapsulated", format!("shared secret in Secret {name}, ciphertext in ConfigMap {name}")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encapsulation_plans() {
        let s = |fp: &str, key: Option<&str>| Stored { fingerprint: fp.into(), made_for: key.map(Into::into) };
        let rec = "sha256:ss".to_owned();
        assert_eq!(plan(None, None, "k1"), Some(Why::First));
        assert_eq!(plan(None, Some(&rec), "k1"), Some(Why::SecretMissing));
        assert_eq!(plan(Some(&s("sha256:ss", Some("k1"))), Some(&rec), "k1"), None);
        assert_eq!(plan(Some(&s("sha256:ss", Some("k1"))), None, "k1"), None, "adopted after a lost status write");
        assert_eq!(plan(Some(&s("sha256:ss", Some("k0"))), Some(&rec), "k1"), Some(Why::KeyChanged));
        assert_eq!(plan(Some(&s("sha256:ss", None)), Some(&rec), "k1"), Some(Why::KeyChanged));
        assert_eq!(plan(Some(&s("sha256:other", Some("k1"))), Some(&rec), "k1"), Some(Why::SecretModified));
    }
}
