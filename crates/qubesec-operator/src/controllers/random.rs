//! `QuantumRandomNumber`: random bytes generated once into a Secret.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;

use crate::cache::{Run, Stores, Target};
use crate::crd::{MIN_RANDOM_BYTES, OutputStatus, QuantumRandomNumber, RandomNumberStatus};
use crate::error::{Error, Result};
use crate::outputs::{OutputMetadata, SecretData, fingerprint, found, now, secret_data, write};
use crate::reconcile::{Managed, Outcome, Reconcile, State, managed};

managed!(QuantumRandomNumber, "randomnumber", RandomNumberStatus);

/// What a random number reconcile does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The bytes are in place; `add_metadata` when the Secret lacks its `metadata` key.
    Keep {
        /// The fingerprint of the stored bytes.
        fingerprint: String,
        /// Whether to write the `metadata` key (a Secret from before it existed).
        add_metadata: bool,
    },
    /// Draw bytes: none yet, or the Secret lost them (then they `replace` the recorded ones).
    Generate {
        /// The recorded fingerprint of the bytes that went missing.
        replaces: Option<String>,
    },
}

/// Decides (pure) from the stored bytes and metadata, the recorded fingerprint and the spec.
///
/// # Errors
/// `FingerprintMismatch` when the Secret was modified, `SizeMismatch` when it holds another length.
pub(crate) fn plan(name: &str, len: usize, stored: Option<(&[u8], bool)>, recorded: Option<&String>) -> Result<Plan> {
    let Some((bytes, has_metadata)) = stored else {
        return Ok(Plan::Generate { replaces: recorded.cloned() });
    };
    let fp = fingerprint(bytes);
    if let Some(r) = recorded.filter(|r| **r != fp) {
        return Err(Error::user(
            "FingerprintMismatch",
            format!("Secret {name} was modified (fingerprint {fp}, status records {r})"),
        ));
    }
    if bytes.len() != len {
        return Err(Error::user(
            "SizeMismatch",
            format!("Secret {name} holds {} bytes but spec.bytes is {len}", bytes.len()),
        ));
    }
    Ok(Plan::Keep { fingerprint: fp, add_metadata: !has_metadata })
}

impl Reconcile for QuantumRandomNumber {
    fn references(&self) -> Vec<Target> {
        Vec::new()
    }

    fn store(stores: &Stores) -> &Store<Self> {
        &stores.random_numbers
    }

    async fn reconcile(obj: Arc<Self>, run: Arc<Run>) -> Result<Outcome<RandomNumberStatus>> {
        reconcile_inner(&obj, &run).await
    }
}

pub(crate) async fn reconcile_inner(obj: &QuantumRandomNumber, run: &Run) -> Result<Outcome<RandomNumberStatus>> {
    let name = obj.spec.secret_name.clone().unwrap_or_else(|| obj.name_any());
    if !(MIN_RANDOM_BYTES..=65536).contains(&obj.spec.bytes) {
        return Err(Error::user("InvalidSpec", format!("spec.bytes must be between {MIN_RANDOM_BYTES} and 65536")));
    }
    let len = usize::try_from(obj.spec.bytes).map_err(|e| Error::bug(e.to_string()))?;
    let recorded = obj.status().and_then(|s| s.output.fingerprint.clone());
    let secret = found::<Secret, _>(run, obj, &name)?;
    secret.refuse_foreign(obj, &name, "spec.secretName")?;
    let stored =
        secret.ours().and_then(|s| secret_data(s, "random").map(|b| (b, secret_data(s, "metadata").is_some())));
    let fp = match plan(&name, len, stored, recorded.as_ref())? {
        Plan::Keep { fingerprint, add_metadata: false } => fingerprint,
        Plan::Keep { fingerprint: fp, add_metadata: true } => {
            let bytes = stored.map(|(b, _)| b.to_vec()).unwrap_or_default();
            let created =
                secret.ours().and_then(|s| s.metadata.creation_timestamp.clone()).map_or_else(now, |t| t.0.to_string());
            let meta = OutputMetadata::new("QuantumRandomNumber", "os-csprng", &fp, &created);
            let data =
                BTreeMap::from([("random".to_owned(), bytes), ("metadata".to_owned(), meta.to_json().into_bytes())]);
            write::<Secret, _>(run, obj, &name, "spec.secretName", &secret, &SecretData { type_: "Opaque", data })
                .await?;
            fp
        }
        Plan::Generate { replaces } => {
            let bytes = run
                .crypto("random", "os-csprng", move || qubesec_core::rand::bytes(len))
                .await?
                .map_err(|e| Error::Transient(format!("randomness: {e}")))?;
            let fp = fingerprint(&bytes);
            let meta = OutputMetadata::new("QuantumRandomNumber", "os-csprng", &fp, &now());
            let data = BTreeMap::from([
                ("random".to_owned(), bytes.to_vec()),
                ("metadata".to_owned(), meta.to_json().into_bytes()),
            ]);
            write::<Secret, _>(run, obj, &name, "spec.secretName", &secret, &SecretData { type_: "Opaque", data })
                .await?;
            match replaces {
                Some(old) => {
                    let note = format!("output Secret {name} was missing; generated new random bytes {fp} (was {old})");
                    run.event(obj, EventType::Warning, "SecretRegenerated", note).await;
                }
                None => run.event(obj, EventType::Normal, "Generated", format!("generated {len} random bytes")).await,
            }
            fp
        }
    };
    let status = RandomNumberStatus {
        output: OutputStatus::new("os-csprng", Some(fp), Some(name.clone())),
        bytes: Some(obj.spec.bytes),
        ..RandomNumberStatus::default()
    };
    Ok(Outcome::new(status, State::ready("Generated", format!("{len} random bytes in Secret {name}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_number_plans() {
        let bytes = [7u8; 16];
        let fp = fingerprint(&bytes);
        assert_eq!(plan("s", 16, None, None).unwrap(), Plan::Generate { replaces: None });
        assert_eq!(plan("s", 16, None, Some(&fp)).unwrap(), Plan::Generate { replaces: Some(fp.clone()) });
        assert_eq!(
            plan("s", 16, Some((&bytes, true)), Some(&fp)).unwrap(),
            Plan::Keep { fingerprint: fp.clone(), add_metadata: false }
        );
        assert_eq!(
            plan("s", 16, Some((&bytes, false)), None).unwrap(),
            Plan::Keep { fingerprint: fp.clone(), add_metadata: true }
        );
        let other = fingerprint(b"other");
        assert_eq!(plan("s", 16, Some((&bytes, true)), Some(&other)).unwrap_err().reason(), "FingerprintMismatch");
        assert_eq!(plan("s", 32, Some((&bytes, true)), Some(&fp)).unwrap_err().reason(), "SizeMismatch");
    }
}
