//! `QuantumDerivedKey`: HKDF over a shared secret; follows the secret when it changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use zeroize::Zeroizing;

use super::decapsulate::decode_base64;
use crate::cache::{Run, Stores, Target};
use crate::crd::{DataKind, DerivedKeyStatus, OutputStatus, QuantumDerivedKey};
use crate::error::{Error, Result};
use crate::outputs::{
    InputRef, Origin, OutputMetadata, SecretData, fingerprint, found, now, read_input, secret_data, short, write,
};
use crate::reconcile::{Managed, Outcome, Reconcile, State, managed, namespace};

managed!(QuantumDerivedKey, "derivedkey", DerivedKeyStatus);

impl Reconcile for QuantumDerivedKey {
    fn references(&self) -> Vec<Target> {
        let r = &self.spec.shared_secret_ref;
        vec![("Secret", r.namespace.clone().or_else(|| self.namespace()).unwrap_or_default(), r.name.clone())]
    }

    fn store(stores: &Stores) -> &Store<Self> {
        &stores.derived_keys
    }

    async fn reconcile(obj: Arc<Self>, run: Arc<Run>) -> Result<Outcome<DerivedKeyStatus>> {
        reconcile_inner(&obj, &run).await
    }
}

pub(crate) async fn reconcile_inner(obj: &QuantumDerivedKey, run: &Run) -> Result<Outcome<DerivedKeyStatus>> {
    // Observe.
    let spec = &obj.spec;
    let name = spec.secret_name.clone().unwrap_or_else(|| obj.name_any());
    let previous = obj.status().cloned().unwrap_or_default();
    let r = &spec.shared_secret_ref;
    let ns = run.ref_namespace(&namespace(obj)?, "spec.sharedSecretRef", r.namespace.as_deref())?;
    let key_name = r.key.as_deref().unwrap_or("shared_secret");
    let at = InputRef {
        field: "spec.sharedSecretRef",
        kind: DataKind::Secret,
        namespace: &ns,
        name: &r.name,
        key: key_name,
    };
    let Some(ikm) = read_input(run, &at).await? else {
        let msg = format!(
            "waiting for Secret {} (key {key_name}); a Secret qubesec did not make also needs the label \
             qubesec.io/input=true",
            r.name
        );
        return Ok(Outcome::new(previous, State::pending("WaitingForSharedSecret", msg))
            .retry_after(std::time::Duration::from_secs(120)));
    };
    let hash = spec.hash.core();
    let len = match (spec.key_type.fixed_len(), spec.length) {
        (Some(n), _) => n,
        (None, Some(n)) => usize::try_from(n).map_err(|e| Error::bug(e.to_string()))?,
        (None, None) => return Err(Error::user("InvalidSpec", "spec.length is required when spec.keyType is Raw")),
    };
    if len < 16 {
        return Err(Error::user("InvalidSpec", format!("spec.length: {len} bytes is below the minimum of 16")));
    }
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
    let algorithm = format!("HKDF-{}/{}", spec.hash, spec.key_type);
    let secret = found::<Secret, _>(run, obj, &name)?;
    secret.refuse_foreign(obj, &name, "spec.secretName")?;
    // Plan: HKDF is deterministic; derive and write only if the Secret holds something else.
    // Fingerprints go into status only when the input is the operator's own randomness (≥ 128
    // bits): a key derived from a user's (maybe guessable) Secret could be found from them.
    let public_fingerprints = matches!(ikm.origin, Origin::OperatorSecret { high_entropy: true, .. });
    let input_fp = public_fingerprints.then(|| fingerprint(&ikm.bytes));
    // Apply.
    let ikm_bytes = ikm.bytes;
    let okm = run
        .crypto("derive", &format!("HKDF-{}", spec.hash), move || {
            qubesec_core::kdf::derive(hash, &ikm_bytes, &salt, &info, len).map(|k| Zeroizing::new(k.to_vec()))
        })
        .await?
        .map_err(|e| Error::user("InvalidSpec", e.to_string()))?;
    let fp = fingerprint(&okm);
    let created = secret
        .ours()
        .and_then(|s| OutputMetadata::parse(secret_data(s, "metadata")))
        .filter(|m| m.fingerprint == fp)
        .map_or_else(now, |m| m.created);
    let meta = OutputMetadata::new("QuantumDerivedKey", &algorithm, &fp, &created);
    let data = BTreeMap::from([("key".to_owned(), okm.to_vec()), ("metadata".to_owned(), meta.to_json().into_bytes())]);
    if write::<Secret, _>(run, obj, &name, "spec.secretName", &secret, &SecretData { type_: "Opaque", data }).await? {
        let shown =
            if public_fingerprints { short(&fp) } else { "(not shown: derived from a user's Secret)".to_owned() };
        let (type_, reason, note) = match (&previous.output.fingerprint, secret.ours().is_some()) {
            (Some(_), false) => (
                EventType::Warning,
                "SecretRegenerated",
                format!("output Secret {name} was missing; derived the key again"),
            ),
            _ => (EventType::Normal, "Derived", format!("derived {len}-byte {} key {shown}", spec.key_type)),
        };
        run.event(obj, type_, reason, note).await;
    }
    let status = DerivedKeyStatus {
        output: OutputStatus::new(algorithm, public_fingerprints.then_some(fp), Some(name.clone())),
        length: u32::try_from(len).ok(),
        input_fingerprint: input_fp,
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
        (None, Some(b)) => decode_base64(&format!("spec.{field}Base64"), b),
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
        assert_eq!(kdf_input("salt", None, Some("+/8=")).unwrap(), [0xfb, 0xff]);
        assert!(kdf_input("info", None, None).unwrap().is_empty());
        let both = kdf_input("salt", Some("a"), Some("YQ==")).unwrap_err().to_string();
        assert!(both.contains("spec.salt and spec.saltBase64"), "{both}");
        let bad = kdf_input("info", None, Some("not base64!")).unwrap_err().to_string();
        assert!(bad.contains("spec.infoBase64"), "{bad}");
    }
}
