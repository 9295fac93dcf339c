//! Output objects: owned Secrets and ConfigMaps, written by server-side apply,
//! never over an object this resource does not own; and reading referenced data.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::{Resource, ResourceExt};
use qubesec_core::Fingerprint;
use serde_json::json;

use crate::context::{Context, MANAGER};
use crate::crd::{DataKind, DataRef};
use crate::error::{Error, Result};
use crate::reconcile::{Managed, namespace};

/// Label naming the operator on every output object.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "qubesec");
/// Label naming the owning kind.
pub const OWNER_KIND: &str = "qubesec.io/owner-kind";
/// Label naming the owning resource.
pub const OWNER_NAME: &str = "qubesec.io/owner-name";
/// Version of the `metadata` JSON layout.
pub const FORMAT_VERSION: u32 = 1;

/// The fingerprint of output bytes, e.g. `sha256:...`.
pub fn fingerprint(bytes: &[u8]) -> String {
    Fingerprint::of_bytes(bytes).to_string()
}

/// The short form of a `sha256:<hex>` fingerprint.
pub fn short(fp: &str) -> String {
    fp.trim_start_matches("sha256:").chars().take(10).collect()
}

/// The `metadata` key of an output object: algorithm, fingerprint, creation time and format version.
pub fn metadata_json(kind: &str, algorithm: &str, fingerprint: &str, created: &str) -> String {
    json!({
        "kind": kind,
        "algorithm": algorithm,
        "fingerprint": fingerprint,
        "created": created,
        "formatVersion": FORMAT_VERSION,
    })
    .to_string()
}

/// The `created` time recorded in an existing output's `metadata` key, if any.
pub fn created_of(data: Option<&[u8]>) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(data?).ok()?;
    v.get("created")?.as_str().map(str::to_owned)
}

/// Now, RFC 3339, whole seconds.
pub fn now() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now()).to_string()
}

fn labels<K: Managed>(obj: &K) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (OWNER_KIND.to_owned(), K::kind(&()).into_owned()),
        (OWNER_NAME.to_owned(), obj.name_any()),
    ])
}

fn owned_by<K: Resource>(meta: &ObjectMeta, obj: &K) -> bool {
    let uid = obj.meta().uid.as_deref();
    meta.owner_references.iter().flatten().any(|r| r.controller == Some(true) && Some(r.uid.as_str()) == uid)
}

fn not_owned<K: Managed>(obj: &K, what: &str, name: &str, field: &str) -> Error {
    Error::user(
        "OutputNotOwned",
        format!(
            "{what} {name} already exists and is not owned by {} {}; refusing to overwrite it \
             (choose another {field} or delete the {what})",
            K::kind(&()),
            obj.name_any()
        ),
    )
}

/// Reads this resource's output Secret `name`: `None` if absent, a user error if it exists but is not ours.
pub async fn owned_secret<K: Managed>(ctx: &Context, obj: &K, name: &str) -> Result<Option<Secret>> {
    let secret = ctx.api::<Secret>(&namespace(obj)?).get_opt(name).await?;
    match secret {
        Some(s) if !owned_by(&s.metadata, obj) => Err(not_owned(obj, "Secret", name, "spec.secretName")),
        other => Ok(other),
    }
}

/// Reads this resource's output ConfigMap `name`, like [`owned_secret`].
pub async fn owned_config_map<K: Managed>(
    ctx: &Context,
    obj: &K,
    name: &str,
    field: &str,
) -> Result<Option<ConfigMap>> {
    let cm = ctx.api::<ConfigMap>(&namespace(obj)?).get_opt(name).await?;
    match cm {
        Some(c) if !owned_by(&c.metadata, obj) => Err(not_owned(obj, "ConfigMap", name, field)),
        other => Ok(other),
    }
}

/// A key of a Secret's data.
pub fn secret_data<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret.data.as_ref()?.get(key).map(|b| b.0.as_slice())
}

/// A key of a ConfigMap: binaryData first, then data.
pub fn config_map_data<'a>(cm: &'a ConfigMap, key: &str) -> Option<&'a [u8]> {
    cm.binary_data
        .as_ref()
        .and_then(|b| b.get(key))
        .map(|b| b.0.as_slice())
        .or_else(|| cm.data.as_ref().and_then(|d| d.get(key)).map(|s| s.as_bytes()))
}

/// True when `secret` already holds exactly `data`.
pub fn secret_matches(secret: &Secret, data: &BTreeMap<String, Vec<u8>>) -> bool {
    let have = secret.data.as_ref();
    have.is_some_and(|h| h.len() == data.len() && data.iter().all(|(k, v)| h.get(k).is_some_and(|b| &b.0 == v)))
}

fn meta<K: Managed>(obj: &K, name: &str) -> Result<ObjectMeta> {
    let owner = obj.controller_owner_ref(&()).ok_or_else(|| Error::bug("resource has no uid"))?;
    Ok(ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace(obj)?),
        labels: Some(labels(obj)),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    })
}

/// Server-side applies the output Secret `name` (type `Opaque` unless `type_` says otherwise).
pub async fn apply_secret<K: Managed>(
    ctx: &Context,
    obj: &K,
    name: &str,
    type_: Option<&str>,
    data: BTreeMap<String, Vec<u8>>,
) -> Result<()> {
    let secret = Secret {
        metadata: meta(obj, name)?,
        type_: Some(type_.unwrap_or("Opaque").to_owned()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        ..Secret::default()
    };
    ctx.api::<Secret>(&namespace(obj)?)
        .patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&secret))
        .await?;
    Ok(())
}

/// Server-side applies the output ConfigMap `name` (public data only).
pub async fn apply_config_map<K: Managed>(
    ctx: &Context,
    obj: &K,
    name: &str,
    data: BTreeMap<String, String>,
    binary: BTreeMap<String, Vec<u8>>,
) -> Result<()> {
    let cm = ConfigMap {
        metadata: meta(obj, name)?,
        data: Some(data),
        binary_data: Some(binary.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        ..ConfigMap::default()
    };
    ctx.api::<ConfigMap>(&namespace(obj)?)
        .patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&cm))
        .await?;
    Ok(())
}

/// Reads the bytes a [`DataRef`] at `field` points to; `Ok(None)` while the object or key does not exist yet.
pub async fn read_data_ref<K: Managed>(
    ctx: &Context,
    obj: &K,
    field: &str,
    r: &DataRef,
    default_key: &str,
) -> Result<Option<Vec<u8>>> {
    let ns = ctx.ref_namespace(&namespace(obj)?, field, r.namespace.as_deref())?;
    let key = r.key.as_deref().unwrap_or(default_key);
    Ok(match r.kind {
        DataKind::ConfigMap => {
            ctx.api::<ConfigMap>(&ns).get_opt(&r.name).await?.and_then(|c| config_map_data(&c, key).map(<[u8]>::to_vec))
        }
        DataKind::Secret => {
            ctx.api::<Secret>(&ns).get_opt(&r.name).await?.and_then(|s| secret_data(&s, key).map(<[u8]>::to_vec))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_and_metadata() {
        let fp = fingerprint(b"abc");
        assert_eq!(fp, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(short(&fp), "ba7816bf8f");
        let m = metadata_json("QuantumRandomNumber", "random", &fp, "2026-01-01T00:00:00Z");
        assert_eq!(created_of(Some(m.as_bytes())).as_deref(), Some("2026-01-01T00:00:00Z"));
        assert!(m.contains("\"formatVersion\":1"));
        assert_eq!(created_of(Some(b"not json")), None);
    }

    #[test]
    fn secret_matching_is_exact() {
        let data = BTreeMap::from([("a".to_owned(), vec![1u8]), ("b".to_owned(), vec![2u8])]);
        let mut s = Secret {
            data: Some(data.iter().map(|(k, v)| (k.clone(), ByteString(v.clone()))).collect()),
            ..Secret::default()
        };
        assert!(secret_matches(&s, &data));
        s.data.as_mut().map(|d| d.insert("c".into(), ByteString(vec![])));
        assert!(!secret_matches(&s, &data));
        assert!(!secret_matches(&Secret::default(), &data));
    }
}
