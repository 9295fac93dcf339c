//! `QuantumVerifySignature`: verifies, and verifies again whenever an input changes.

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use qubesec_core::x509::Certificate;
use qubesec_core::{Fingerprint, PublicKey, VerifyingKey};
use zeroize::Zeroizing;

use super::decapsulate::decode_base64;
use super::keypair::signature_public_key;
use super::sign::{context_bytes, data_refs, message};
use crate::cache::{Run, Stores, Target};
use crate::crd::{DataKind, QuantumVerifySignature, VerifyKeySource, VerifyResult, VerifySignatureStatus, is_ready};
use crate::error::{Error, Result};
use crate::outputs::{Input, InputRef, Origin, fingerprint, now, read_input, secret_data, short};
use crate::reconcile::{Managed, Outcome, Reconcile, State, managed, namespace};

managed!(QuantumVerifySignature, "verifysignature", VerifySignatureStatus);

/// `sha256:` over the length-prefixed concatenation of the parts, so a change to any one shows.
pub(crate) fn digest_inputs(parts: &[&[u8]]) -> String {
    let mut buf = Vec::new();
    for p in parts {
        buf.extend_from_slice(&(p.len() as u64).to_be_bytes());
        buf.extend_from_slice(p);
    }
    fingerprint(&buf)
}

impl Reconcile for QuantumVerifySignature {
    fn references(&self) -> Vec<Target> {
        let own = self.namespace().unwrap_or_default();
        let r = &self.spec.public_key_ref;
        let kind = match r.kind {
            VerifyKeySource::QuantumSignatureKeyPair => "QuantumSignatureKeyPair",
            VerifyKeySource::ConfigMap => "ConfigMap",
            VerifyKeySource::QuantumCertificate => "QuantumCertificate",
        };
        let mut refs = vec![(kind, r.namespace.clone().unwrap_or_else(|| own.clone()), r.name.clone())];
        refs.extend(data_refs(&own, &[self.spec.message_ref.as_ref(), self.spec.signature_ref.as_ref()]));
        refs
    }

    fn store(stores: &Stores) -> &Store<Self> {
        &stores.verify_signatures
    }

    async fn reconcile(obj: Arc<Self>, run: Arc<Run>) -> Result<Outcome<VerifySignatureStatus>> {
        reconcile_inner(&obj, &run).await
    }
}

/// The verifying key; `Ok(None)` while the referenced object is not Ready or missing.
async fn verifying_key(obj: &QuantumVerifySignature, run: &Run) -> Result<Option<VerifyingKey>> {
    let r = &obj.spec.public_key_ref;
    let ns = run.ref_namespace(&namespace(obj)?, "spec.publicKeyRef", r.namespace.as_deref())?;
    let pem: Vec<u8> = match r.kind {
        VerifyKeySource::QuantumSignatureKeyPair => {
            // Verifying needs no purpose: a CA key's public key checks signatures too.
            return Ok(
                signature_public_key(run, &ns, &r.name, None, "spec.publicKeyRef", "verification")?.map(|(k, _)| k)
            );
        }
        VerifyKeySource::ConfigMap => {
            let key = r.key.as_deref().unwrap_or("public_key.pem");
            let at =
                InputRef { field: "spec.publicKeyRef", kind: DataKind::ConfigMap, namespace: &ns, name: &r.name, key };
            let Some(input) = read_input(run, &at).await? else { return Ok(None) };
            input.bytes.to_vec()
        }
        VerifyKeySource::QuantumCertificate => {
            let Some(cert) = run.stores.certificates.get(&ObjectRef::new(&r.name).within(&ns)) else { return Ok(None) };
            if !is_ready(cert.common_status(), cert.metadata.generation) {
                return Ok(None);
            }
            let secret_name =
                cert.status().and_then(|s| s.output.secret_name.clone()).unwrap_or_else(|| cert.name_any());
            let Some(secret) = run.stores.secrets.get(&ObjectRef::new(&secret_name).within(&ns)) else {
                return Ok(None);
            };
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

/// The signature: inline base64, or the referenced key; `Ok(None)` while missing.
async fn signature(obj: &QuantumVerifySignature, run: &Run) -> Result<Option<Input>> {
    match (&obj.spec.signature, &obj.spec.signature_ref) {
        (Some(b64), None) => {
            Ok(Some(Input { bytes: Zeroizing::new(decode_base64("spec.signature", b64)?), origin: Origin::ConfigMap }))
        }
        (None, Some(r)) => {
            let ns = run.ref_namespace(&namespace(obj)?, "spec.signatureRef", r.namespace.as_deref())?;
            let key = r.key.as_deref().unwrap_or("signature");
            read_input(run, &InputRef { field: "spec.signatureRef", kind: r.kind, namespace: &ns, name: &r.name, key })
                .await
        }
        _ => Err(Error::user("InvalidSpec", "exactly one of spec.signature or spec.signatureRef must be set")),
    }
}

/// `verifiedAt`: kept while the inputs and the answer stay the same, else now (pure).
pub(crate) fn verified_at(previous: &VerifySignatureStatus, inputs: &str, valid: bool, now: String) -> String {
    match (&previous.inputs_fingerprint, &previous.verified_at) {
        (Some(i), Some(t)) if i == inputs && previous.valid == Some(valid) => t.clone(),
        _ => now,
    }
}

pub(crate) async fn reconcile_inner(obj: &QuantumVerifySignature, run: &Run) -> Result<Outcome<VerifySignatureStatus>> {
    // Observe.
    let spec = &obj.spec;
    let previous = obj.status().cloned().unwrap_or_default();
    let waiting = |reason, msg: &str| {
        Ok(Outcome::new(previous.clone(), State::pending(reason, msg)).retry_after(std::time::Duration::from_secs(120)))
    };
    let Some(key) = verifying_key(obj, run).await? else {
        let msg = format!("waiting for {} {} to be Ready", spec.public_key_ref.kind, spec.public_key_ref.name);
        return waiting("WaitingForPublicKey", &msg);
    };
    let Some(msg) = message(run, obj, spec.message.as_ref(), spec.message_ref.as_ref()).await? else {
        return waiting("WaitingForMessage", "waiting for spec.messageRef");
    };
    let Some(sig) = signature(obj, run).await? else {
        return waiting("WaitingForSignature", "waiting for spec.signatureRef");
    };
    let context = context_bytes(spec.context.as_ref())?;
    let key_fp =
        Fingerprint::of_public_key(&PublicKey::from(key.clone())).map_err(|e| Error::bug(e.to_string()))?.to_string();
    let inputs = digest_inputs(&[key_fp.as_bytes(), &msg.identity(), &sig.identity(), &context]);
    let alg = key.algorithm();
    // Plan and apply: the verification itself.
    let (m, s) = (msg.bytes, sig.bytes);
    let valid = run.crypto("verify", alg.name(), move || key.verify_bytes(&m, &context, &s).is_ok()).await?;
    let result = if valid { VerifyResult::Valid } else { VerifyResult::Invalid };
    let status = VerifySignatureStatus {
        algorithm: Some(alg.name().to_owned()),
        valid: Some(valid),
        result: Some(result),
        verified_at: Some(verified_at(&previous, &inputs, valid, now())),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_inputs_enter_the_digest_by_version_never_by_value() {
        let secret = |v: &str, bytes: &[u8]| Input {
            bytes: Zeroizing::new(bytes.to_vec()),
            origin: Origin::UserSecret { version: v.into() },
        };
        // The same guessable value in two Secret versions: the digest follows the version only.
        assert_eq!(secret("u/1", b"yes").identity(), secret("u/1", b"no").identity());
        assert_ne!(secret("u/1", b"yes").identity(), secret("u/2", b"yes").identity());
        assert!(!String::from_utf8_lossy(&secret("u/1", b"yes").identity()).contains("yes"));
        let public = Input { bytes: Zeroizing::new(b"hello".to_vec()), origin: Origin::ConfigMap };
        assert_eq!(public.identity(), b"hello");
        let a = digest_inputs(&[b"k", b"m", b"s", b""]);
        assert_ne!(a, digest_inputs(&[b"k", b"m", b"s", b"c"]));
        assert_ne!(digest_inputs(&[b"km", b""]), digest_inputs(&[b"k", b"m"]), "length-prefixed");
    }

    #[test]
    fn verified_at_moves_only_with_inputs_or_answer() {
        let previous = VerifySignatureStatus {
            inputs_fingerprint: Some("sha256:i".into()),
            verified_at: Some("then".into()),
            valid: Some(true),
            ..VerifySignatureStatus::default()
        };
        assert_eq!(verified_at(&previous, "sha256:i", true, "now".into()), "then");
        assert_eq!(verified_at(&previous, "sha256:j", true, "now".into()), "now");
        assert_eq!(verified_at(&previous, "sha256:i", false, "now".into()), "now");
    }
}
