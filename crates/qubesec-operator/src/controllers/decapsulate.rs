//! `QuantumDecapsulateSecret`: recovers the shared secret with a key pair's private key.
//! Decapsulation is deterministic, so the output follows the inputs exactly.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use qubesec_core::{KemCiphertext, PrivateKey};
use zeroize::Zeroizing;

use super::keypair::{load_private_key, private_key_pem};
use crate::cache::{Run, Stores, Target};
use crate::crd::{DataKind, DecapsulateStatus, OutputStatus, QuantumDecapsulateSecret};
use crate::error::{Error, Result};
use crate::outputs::{
    InputRef, OutputMetadata, SecretData, fingerprint, found, now, read_input, secret_data, short, write,
};
use crate::reconcile::{Managed, Outcome, Reconcile, State, managed, namespace};

managed!(QuantumDecapsulateSecret, "decapsulatesecret", DecapsulateStatus);

impl Reconcile for QuantumDecapsulateSecret {
    fn references(&self) -> Vec<Target> {
        let own = self.namespace().unwrap_or_default();
        let kp = &self.spec.key_pair_ref;
        let mut refs =
            vec![("QuantumKEMKeyPair", kp.namespace.clone().unwrap_or_else(|| own.clone()), kp.name.clone())];
        if let Some(r) = &self.spec.ciphertext_ref {
            refs.push((data_kind(r.kind), r.namespace.clone().unwrap_or(own), r.name.clone()));
        }
        refs
    }

    fn store(stores: &Stores) -> &Store<Self> {
        &stores.decapsulations
    }

    async fn reconcile(obj: Arc<Self>, run: Arc<Run>) -> Result<Outcome<DecapsulateStatus>> {
        reconcile_inner(&obj, &run).await
    }
}

/// The target kind of a data reference.
pub(crate) fn data_kind(kind: DataKind) -> &'static str {
    match kind {
        DataKind::ConfigMap => "ConfigMap",
        DataKind::Secret => "Secret",
    }
}

/// Decodes an inline base64 field (standard alphabet, padded; admission checks the alphabet).
pub(crate) fn decode_base64(field: &str, text: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|e| {
        Error::user("InvalidSpec", format!("{field} is not valid base64 (standard alphabet, padded): {e}"))
    })
}

/// The ciphertext: inline, or from the referenced object; `Ok(None)` while it does not exist.
/// For an encapsulator's ConfigMap also the public key it was made for.
async fn ciphertext(obj: &QuantumDecapsulateSecret, run: &Run) -> Result<Option<(Vec<u8>, Option<String>)>> {
    match (&obj.spec.ciphertext, &obj.spec.ciphertext_ref) {
        (Some(b64), None) => Ok(Some((decode_base64("spec.ciphertext", b64)?, None))),
        (None, Some(r)) => {
            let ns = run.ref_namespace(&namespace(obj)?, "spec.ciphertextRef", r.namespace.as_deref())?;
            let key = r.key.as_deref().unwrap_or("ciphertext");
            let at = InputRef { field: "spec.ciphertextRef", kind: r.kind, namespace: &ns, name: &r.name, key };
            let Some(ct) = read_input(run, &at).await? else { return Ok(None) };
            let made_for = match r.kind {
                DataKind::ConfigMap => {
                    let marker = InputRef { key: "public_key_fingerprint", ..at };
                    read_input(run, &marker).await?.map(|m| String::from_utf8_lossy(&m.bytes).into_owned())
                }
                DataKind::Secret => None,
            };
            Ok(Some((ct.bytes.to_vec(), made_for)))
        }
        _ => Err(Error::user("InvalidSpec", "exactly one of spec.ciphertext or spec.ciphertextRef must be set")),
    }
}

/// Whether the stored shared secret is the one the status records for this key and ciphertext (pure).
pub(crate) fn up_to_date(previous: &DecapsulateStatus, stored: Option<&str>, key_fp: &str, ct_fp: &str) -> bool {
    stored.is_some()
        && previous.output.fingerprint.as_deref() == stored
        && previous.public_key_fingerprint.as_deref() == Some(key_fp)
        && previous.ciphertext_fingerprint.as_deref() == Some(ct_fp)
}

pub(crate) async fn reconcile_inner(obj: &QuantumDecapsulateSecret, run: &Run) -> Result<Outcome<DecapsulateStatus>> {
    // Observe.
    let name = obj.spec.secret_name.clone().unwrap_or_else(|| obj.name_any());
    let previous = obj.status().cloned().unwrap_or_default();
    let r = &obj.spec.key_pair_ref;
    let ns = run.ref_namespace(&namespace(obj)?, "spec.keyPairRef", r.namespace.as_deref())?;
    let Some((pem, key_fp)) = private_key_pem(run, &run.stores.kem_key_pairs, &ns, &r.name) else {
        let msg = format!("waiting for QuantumKEMKeyPair {} to be Ready", r.name);
        return Ok(Outcome::new(previous, State::pending("WaitingForKeyPair", msg)));
    };
    let Some((ct, made_for)) = ciphertext(obj, run).await? else {
        let msg = "waiting for the ciphertext referenced by spec.ciphertextRef";
        return Ok(Outcome::new(previous, State::pending("WaitingForCiphertext", msg)));
    };
    if let Some(made_for) = made_for.filter(|f| *f != key_fp) {
        // An encapsulator's ConfigMap names the key it encapsulated to; while that is an older
        // key (the key pair was just regenerated), wait instead of decapsulating noise.
        let msg = format!(
            "the ciphertext was made for another public key ({}); waiting for one for {}",
            short(&made_for),
            short(&key_fp)
        );
        return Ok(Outcome::new(previous, State::pending("WaitingForCiphertext", msg)));
    }
    let ct_fp = fingerprint(&ct);
    let secret = found::<Secret, _>(run, obj, &name)?;
    secret.refuse_foreign(obj, &name, "spec.secretName")?;
    let stored = secret.ours().and_then(|s| secret_data(s, "shared_secret")).map(fingerprint);
    // Plan.
    let keep = up_to_date(&previous, stored.as_deref(), &key_fp, &ct_fp);
    // Apply.
    let (alg, ss_fp) = match (keep, stored) {
        (true, Some(fp)) => {
            let alg = previous.output.algorithm.clone().unwrap_or_default();
            (alg, fp)
        }
        _ => {
            let want = key_fp.clone();
            let ((alg, ss, took), _) = run
                .crypto
                .run(move || -> Result<_> {
                    let PrivateKey::Kem(key) = load_private_key(&pem, &want, "spec.keyPairRef")? else {
                        return Err(Error::user("WrongKeyType", "spec.keyPairRef does not hold a KEM key"));
                    };
                    let alg = key.algorithm();
                    let ct = KemCiphertext::from_bytes(alg, &ct)
                        .map_err(|e| Error::user("InvalidCiphertext", format!("ciphertext does not fit {alg}: {e}")))?;
                    let started = std::time::Instant::now();
                    let ss =
                        key.decapsulate(&ct).map_err(|_| Error::user("DecapsulationFailed", "decapsulation failed"))?;
                    Ok((alg, Zeroizing::new(ss.as_bytes().to_vec()), started.elapsed()))
                })
                .await
                .and_then(|(r, took)| r.map(|r| (r, took)))?;
            run.metrics.crypto_took("decapsulate", alg.name(), took);
            let ss_fp = fingerprint(&ss);
            let created = secret
                .ours()
                .and_then(|s| OutputMetadata::parse(secret_data(s, "metadata")))
                .filter(|m| m.fingerprint == ss_fp)
                .map_or_else(now, |m| m.created);
            let meta = OutputMetadata::new("QuantumDecapsulateSecret", alg.name(), &ss_fp, &created);
            let data = BTreeMap::from([
                ("shared_secret".to_owned(), ss.to_vec()),
                ("metadata".to_owned(), meta.to_json().into_bytes()),
            ]);
            let wrote =
                write::<Secret, _>(run, obj, &name, "spec.secretName", &secret, &SecretData { type_: "Opaque", data })
                    .await?;
            if wrote {
                let (type_, reason, note) = match (&previous.output.fingerprint, secret.ours().is_some()) {
                    (Some(old), false) => (
                        EventType::Warning,
                        "SecretRegenerated",
                        format!("output Secret {name} was missing; recovered shared secret {ss_fp} (was {old})"),
                    ),
                    _ => (EventType::Normal, "Decapsulated", format!("recovered shared secret {}", short(&ss_fp))),
                };
                run.event(obj, type_, reason, note).await;
            }
            (alg.name().to_owned(), ss_fp)
        }
    };
    let status = DecapsulateStatus {
        output: OutputStatus::new(alg, Some(ss_fp), Some(name.clone())),
        public_key_fingerprint: Some(key_fp),
        ciphertext_fingerprint: Some(ct_fp),
        ..DecapsulateStatus::default()
    };
    Ok(Outcome::new(status, State::ready("Decapsulated", format!("shared secret in Secret {name}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decapsulation_is_redone_when_any_input_changes() {
        let mut previous = DecapsulateStatus::default();
        previous.output.fingerprint = Some("sha256:ss".into());
        previous.public_key_fingerprint = Some("sha256:k".into());
        previous.ciphertext_fingerprint = Some("sha256:ct".into());
        assert!(up_to_date(&previous, Some("sha256:ss"), "sha256:k", "sha256:ct"));
        assert!(!up_to_date(&previous, None, "sha256:k", "sha256:ct"), "Secret gone");
        assert!(!up_to_date(&previous, Some("sha256:x"), "sha256:k", "sha256:ct"), "Secret modified");
        assert!(!up_to_date(&previous, Some("sha256:ss"), "sha256:k2", "sha256:ct"), "new key");
        assert!(!up_to_date(&previous, Some("sha256:ss"), "sha256:k", "sha256:ct2"), "new ciphertext");
        assert!(!up_to_date(&DecapsulateStatus::default(), Some("sha256:ss"), "sha256:k", "sha256:ct"), "no status");
    }

    #[test]
    fn inline_base64_takes_the_standard_alphabet_and_names_the_field() {
        assert_eq!(decode_base64("spec.ciphertext", "+/8=").unwrap(), [0xfb, 0xff]);
        let err = decode_base64("spec.ciphertext", "-_8=").unwrap_err().to_string();
        assert!(err.contains("spec.ciphertext") && err.contains("standard alphabet"), "{err}");
    }
}
