//! `QuantumSignMessage`: signs once per (message, key, context); the signature goes to a ConfigMap.
//! A stored signature that still verifies for the current inputs is kept, so nothing about the
//! message (not even a hash of it) needs to be recorded in status.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use qubesec_core::PublicKey;
use zeroize::Zeroizing;

use super::decapsulate::data_kind;
use super::keypair::{load_private_key, private_key_pem, signature_public_key};
use crate::cache::{Run, Stores, Target};
use crate::crd::{DataRef, KeyPurpose, OutputStatus, QuantumSignMessage, SignMessageStatus};
use crate::error::{Error, Result};
use crate::outputs::{
    ConfigMapData, Input, InputRef, OutputMetadata, config_map_data, fingerprint, found, now, read_input, short, write,
};
use crate::reconcile::{Managed, Outcome, Reconcile, State, managed, namespace};

managed!(QuantumSignMessage, "signmessage", SignMessageStatus);

impl Reconcile for QuantumSignMessage {
    fn references(&self) -> Vec<Target> {
        let own = self.namespace().unwrap_or_default();
        let kp = &self.spec.key_pair_ref;
        let mut refs =
            vec![("QuantumSignatureKeyPair", kp.namespace.clone().unwrap_or_else(|| own.clone()), kp.name.clone())];
        refs.extend(data_refs(&own, &[self.spec.message_ref.as_ref()]));
        refs
    }

    fn store(stores: &Stores) -> &Store<Self> {
        &stores.sign_messages
    }

    async fn reconcile(obj: Arc<Self>, run: Arc<Run>) -> Result<Outcome<SignMessageStatus>> {
        reconcile_inner(&obj, &run).await
    }
}

/// The targets of data references, in namespace `own` unless they name another.
pub(crate) fn data_refs(own: &str, refs: &[Option<&DataRef>]) -> Vec<Target> {
    refs.iter()
        .flatten()
        .map(|r| (data_kind(r.kind), r.namespace.clone().unwrap_or_else(|| own.to_owned()), r.name.clone()))
        .collect()
}

/// The message of a sign or verify spec: inline text or a referenced key; `Ok(None)` while missing.
pub(crate) async fn message<K: Managed>(
    run: &Run,
    obj: &K,
    inline: Option<&String>,
    r: Option<&DataRef>,
) -> Result<Option<Input>> {
    match (inline, r) {
        (Some(m), None) => {
            Ok(Some(Input { bytes: Zeroizing::new(m.as_bytes().to_vec()), origin: crate::outputs::Origin::ConfigMap }))
        }
        (None, Some(r)) => {
            let ns = run.ref_namespace(&namespace(obj)?, "spec.messageRef", r.namespace.as_deref())?;
            let key = r.key.as_deref().unwrap_or("message");
            read_input(run, &InputRef { field: "spec.messageRef", kind: r.kind, namespace: &ns, name: &r.name, key })
                .await
        }
        _ => Err(Error::user("InvalidSpec", "exactly one of spec.message or spec.messageRef must be set")),
    }
}

/// The context string, refused above 255 bytes (admission checks it too).
pub(crate) fn context_bytes(context: Option<&String>) -> Result<Vec<u8>> {
    let context = context.map(String::as_bytes).unwrap_or_default();
    if context.len() > 255 {
        return Err(Error::user("InvalidSpec", "spec.context must be at most 255 bytes"));
    }
    Ok(context.to_vec())
}

pub(crate) async fn reconcile_inner(obj: &QuantumSignMessage, run: &Run) -> Result<Outcome<SignMessageStatus>> {
    // Observe.
    let spec = &obj.spec;
    let name = spec.config_map_name.clone().unwrap_or_else(|| obj.name_any());
    let previous = obj.status().cloned().unwrap_or_default();
    let r = &spec.key_pair_ref;
    let ns = run.ref_namespace(&namespace(obj)?, "spec.keyPairRef", r.namespace.as_deref())?;
    let Some((public, key_fp)) =
        signature_public_key(run, &ns, &r.name, Some(KeyPurpose::Signing), "spec.keyPairRef", "QuantumSignMessage")?
    else {
        let msg = format!("waiting for QuantumSignatureKeyPair {} to be Ready", r.name);
        return Ok(Outcome::new(previous, State::pending("WaitingForKeyPair", msg)));
    };
    let Some(msg) = message(run, obj, spec.message.as_ref(), spec.message_ref.as_ref()).await? else {
        return Ok(Outcome::new(previous, State::pending("WaitingForMessage", "waiting for spec.messageRef"))
            .retry_after(std::time::Duration::from_secs(120)));
    };
    let context = context_bytes(spec.context.as_ref())?;
    let alg = public.algorithm();
    let config_map = found::<ConfigMap, _>(run, obj, &name)?;
    config_map.refuse_foreign(obj, &name, "spec.configMapName")?;
    let stored = config_map.ours().and_then(|c| config_map_data(c, "signature")).map(<[u8]>::to_vec);
    // Plan: keep a stored signature that verifies for this key, message and context.
    let keep = match stored.clone() {
        None => false,
        Some(sig) => {
            let (key, msg, ctx) = (public.clone(), msg.bytes.clone(), context.clone());
            run.crypto("verify", alg.name(), move || key.verify_bytes(&msg, &ctx, &sig).is_ok()).await?
        }
    };
    // Apply.
    let signature = match (keep, stored) {
        (true, Some(sig)) => sig,
        _ => {
            let Some((pem, fp)) = private_key_pem(run, &run.stores.signature_key_pairs, &ns, &r.name) else {
                let msg = format!("waiting for QuantumSignatureKeyPair {} to be Ready", r.name);
                return Ok(Outcome::new(previous, State::pending("WaitingForKeyPair", msg)));
            };
            let message = msg.bytes;
            let sig = run
                .crypto("sign", alg.name(), move || -> Result<Vec<u8>> {
                    let key = load_private_key(&pem, &fp, "spec.keyPairRef")?
                        .into_signature()
                        .map_err(|e| Error::user("WrongKeyType", format!("spec.keyPairRef: {e}")))?;
                    Ok(key.sign(&message, &context).map_err(|e| Error::bug(format!("signing: {e}")))?.into_bytes())
                })
                .await??;
            let (type_, reason, note) = if config_map.ours().is_none() && previous.output.fingerprint.is_some() {
                (
                    EventType::Warning,
                    "ConfigMapRegenerated",
                    format!("output ConfigMap {name} was missing; signed again"),
                )
            } else {
                (EventType::Normal, "Signed", format!("signed with {alg} key {}", short(&key_fp)))
            };
            run.event(obj, type_, reason, note).await;
            sig
        }
    };
    let sig_fp = fingerprint(&signature);
    let public_pem = PublicKey::from(public).to_spki_pem().map_err(|e| Error::bug(e.to_string()))?;
    let created = obj.metadata.creation_timestamp.as_ref().map_or_else(now, |t| t.0.to_string());
    let cm = ConfigMapData {
        data: BTreeMap::from([
            ("public_key.pem".to_owned(), public_pem),
            ("metadata".to_owned(), OutputMetadata::new("QuantumSignMessage", alg.name(), &sig_fp, &created).to_json()),
        ]),
        binary: BTreeMap::from([("signature".to_owned(), signature)]),
    };
    write::<ConfigMap, _>(run, obj, &name, "spec.configMapName", &config_map, &cm).await?;
    let status = SignMessageStatus {
        output: OutputStatus::new(alg.name(), Some(sig_fp), None),
        key_fingerprint: Some(key_fp),
        signature_config_map: Some(name.clone()),
        ..SignMessageStatus::default()
    };
    Ok(Outcome::new(status, State::ready("Signed", format!("signature in ConfigMap {name}"))))
}
