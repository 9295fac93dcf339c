//! Output objects (the Secrets and ConfigMaps a resource owns) and inputs (the Secrets and
//! ConfigMaps it references).
//!
//! Outputs are read from the label-selected caches. A new output is created with a plain
//! create, which fails when the name is taken (never a forced apply over an object that appeared
//! meanwhile); a later write replaces the object at the `resourceVersion` at which it was seen to
//! be ours, so it fails if anyone replaced it since. Inputs the operator did not make are read
//! only when they carry [`INPUT_LABEL`], and only with a GET when a reconcile needs them.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use qubesec_core::Fingerprint;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::cache::Run;
use crate::context::{MANAGER, ObjectKey};
use crate::crd::{CommonStatus, DataKind};
use crate::error::{Error, Result};
use crate::reconcile::{Managed, namespace};

/// Label naming the operator on every output object (and selecting the output caches).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "qubesec");
/// Label naming the owning kind.
pub const OWNER_KIND: &str = "qubesec.io/owner-kind";
/// Label naming the owning resource.
pub const OWNER_NAME: &str = "qubesec.io/owner-name";
/// The opt-in label: a Secret or ConfigMap qubesec did not make is read as an input only with it.
pub const INPUT_LABEL: (&str, &str) = ("qubesec.io/input", "true");
/// Version of the `metadata` JSON layout.
pub const FORMAT_VERSION: u32 = 1;

/// The fingerprint of output bytes, e.g. `sha256:...`.
pub fn fingerprint(bytes: &[u8]) -> String {
    Fingerprint::of_bytes(bytes).to_string()
}

/// The short form of a `sha256:<hex>` fingerprint.
pub fn short(fp: &str) -> String {
    crate::crd::short_fingerprint(fp)
}

/// Now, RFC 3339, whole seconds.
pub fn now() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now()).to_string()
}

/// The `metadata` key every output object carries (JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputMetadata {
    /// The owning kind.
    pub kind: String,
    /// The algorithm.
    pub algorithm: String,
    /// The output's fingerprint (as in the owner's status; for certificates, the key's).
    pub fingerprint: String,
    /// When the output was made (RFC 3339).
    pub created: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Key pairs: the fingerprint of the key this one replaced, so a rotation whose status
    /// write was lost is recognised as ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_fingerprint: Option<String>,
    /// Encapsulations: the public key encapsulated to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_fingerprint: Option<String>,
    /// Certificates: `sha256:` over the certificate's DER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_fingerprint: Option<String>,
    /// Certificates: the serial number, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// Certificates: notAfter (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

impl OutputMetadata {
    /// Metadata for an output of `kind` made with `algorithm` at `created`.
    pub fn new(kind: &str, algorithm: &str, fingerprint: &str, created: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            algorithm: algorithm.to_owned(),
            fingerprint: fingerprint.to_owned(),
            created: created.to_owned(),
            format_version: FORMAT_VERSION,
            ..Self::default()
        }
    }

    /// Reads the `metadata` key (`None` if absent or not ours).
    pub fn parse(data: Option<&[u8]>) -> Option<Self> {
        serde_json::from_slice(data?).ok()
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// An output object as the cache has it.
#[derive(Clone, Debug)]
pub(crate) enum Found<T> {
    /// No object by that name carries the operator's label (one may still exist).
    Absent,
    /// Ours: labelled and controlled by the resource.
    Ours(Arc<T>),
    /// Labelled, but not controlled by this resource.
    Foreign,
}

impl<T: OutputKind> Found<T> {
    /// `OutputNotOwned` when the object is not ours (`field` names the spec field choosing `name`).
    pub(crate) fn refuse_foreign<K: Managed>(&self, obj: &K, name: &str, field: &str) -> Result<()> {
        match self {
            Self::Foreign => Err(not_owned(obj, T::KIND, name, field)),
            _ => Ok(()),
        }
    }
}

impl<T> Found<T> {
    /// The object when it is ours.
    pub(crate) fn ours(&self) -> Option<&T> {
        match self {
            Self::Ours(o) => Some(o),
            _ => None,
        }
    }
}

/// A Secret or ConfigMap as an output: how it is cached, built and compared.
pub(crate) trait OutputKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// What the output should hold.
    type Desired;
    /// `Secret` or `ConfigMap`.
    const KIND: &'static str;
    /// The cache of operator-labelled objects of this kind.
    fn cache(run: &Run) -> &Store<Self>;
    /// The desired object with `meta`.
    fn build(meta: ObjectMeta, desired: &Self::Desired) -> Self;
    /// `self` with the desired content, keeping the rest of its metadata.
    fn updated(&self, desired: &Self::Desired) -> Self;
    /// Whether the object's content is the desired content.
    fn holds(&self, desired: &Self::Desired) -> bool;
}

/// What an output Secret should hold.
#[derive(Clone, Debug)]
pub(crate) struct SecretData {
    /// `Opaque` or `kubernetes.io/tls`.
    pub(crate) type_: &'static str,
    /// The keys.
    pub(crate) data: BTreeMap<String, Vec<u8>>,
}

impl Drop for SecretData {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.data.values_mut().for_each(Vec::zeroize);
    }
}

/// What an output ConfigMap should hold (public data only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConfigMapData {
    /// Text keys.
    pub(crate) data: BTreeMap<String, String>,
    /// Binary keys.
    pub(crate) binary: BTreeMap<String, Vec<u8>>,
}

fn bytes_map(m: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, ByteString> {
    m.iter().map(|(k, v)| (k.clone(), ByteString(v.clone()))).collect()
}

fn same_bytes(have: Option<&BTreeMap<String, ByteString>>, want: &BTreeMap<String, Vec<u8>>) -> bool {
    let empty = BTreeMap::new();
    let have = have.unwrap_or(&empty);
    have.len() == want.len() && want.iter().all(|(k, v)| have.get(k).is_some_and(|b| &b.0 == v))
}

impl OutputKind for Secret {
    type Desired = SecretData;
    const KIND: &'static str = "Secret";

    fn cache(run: &Run) -> &Store<Self> {
        &run.stores.secrets
    }

    fn build(metadata: ObjectMeta, desired: &SecretData) -> Self {
        Secret {
            metadata,
            type_: Some(desired.type_.to_owned()),
            data: Some(bytes_map(&desired.data)),
            ..Secret::default()
        }
    }

    fn updated(&self, desired: &SecretData) -> Self {
        let mut s = self.clone();
        s.data = Some(bytes_map(&desired.data));
        s.string_data = None;
        s
    }

    fn holds(&self, desired: &SecretData) -> bool {
        self.type_.as_deref().unwrap_or("Opaque") == desired.type_ && same_bytes(self.data.as_ref(), &desired.data)
    }
}

impl OutputKind for ConfigMap {
    type Desired = ConfigMapData;
    const KIND: &'static str = "ConfigMap";

    fn cache(run: &Run) -> &Store<Self> {
        &run.stores.config_maps
    }

    fn build(metadata: ObjectMeta, desired: &ConfigMapData) -> Self {
        ConfigMap {
            metadata,
            data: Some(desired.data.clone()),
            binary_data: Some(bytes_map(&desired.binary)),
            ..ConfigMap::default()
        }
    }

    fn updated(&self, desired: &ConfigMapData) -> Self {
        let mut c = self.clone();
        c.data = Some(desired.data.clone());
        c.binary_data = Some(bytes_map(&desired.binary));
        c
    }

    fn holds(&self, desired: &ConfigMapData) -> bool {
        let empty = BTreeMap::new();
        self.data.as_ref().unwrap_or(&empty) == &desired.data && same_bytes(self.binary_data.as_ref(), &desired.binary)
    }
}

fn labels<K: Managed>(obj: &K) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (OWNER_KIND.to_owned(), K::kind(&()).into_owned()),
        (OWNER_NAME.to_owned(), obj.name_any()),
    ])
}

fn has_labels(meta: &ObjectMeta, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| meta.labels.as_ref().and_then(|l| l.get(k)) == Some(v))
}

/// Whether `meta` names `obj` as its controller (owner reference with the resource's uid).
pub(crate) fn owned_by<K: Resource>(meta: &ObjectMeta, obj: &K) -> bool {
    let uid = obj.meta().uid.as_deref();
    meta.owner_references.iter().flatten().any(|r| r.controller == Some(true) && Some(r.uid.as_str()) == uid)
}

/// The qubesec resource controlling an object, if any.
pub(crate) fn qubesec_owner(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true) && r.api_version.starts_with("qubesec.io/"))
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

/// The output `name` of `obj` as the cache has it. [`Error::Stale`] while a write of ours to it
/// has not reached the cache yet.
pub(crate) fn found<T: OutputKind, K: Managed>(run: &Run, obj: &K, name: &str) -> Result<Found<T>> {
    let ns = namespace(obj)?;
    let key: ObjectKey = (T::KIND, ns.clone(), name.to_owned());
    if run.awaiting(&key) {
        return Err(Error::Stale(format!("{} {name} was just written; waiting for the watch", T::KIND)));
    }
    Ok(match T::cache(run).get(&ObjectRef::new(name).within(&ns)) {
        None => Found::Absent,
        Some(o) if owned_by(o.meta(), obj) => Found::Ours(o),
        Some(_) => Found::Foreign,
    })
}

/// Makes output `name` hold `desired`: creates it when absent (failing if the name is taken),
/// replaces it at the version it was seen when it differs, and writes nothing when it holds
/// `desired` already. Returns whether it wrote. `field` names the spec field choosing the name.
pub(crate) async fn write<T: OutputKind, K: Managed>(
    run: &Run,
    obj: &K,
    name: &str,
    field: &str,
    found: &Found<T>,
    desired: &T::Desired,
) -> Result<bool> {
    let ns = namespace(obj)?;
    let api = run.api::<T>(&ns);
    let pp = PostParams { field_manager: Some(MANAGER.to_owned()), ..PostParams::default() };
    let want_labels = labels(obj);
    let written = match found {
        Found::Foreign => return Err(not_owned(obj, T::KIND, name, field)),
        Found::Ours(o) if o.holds(desired) && has_labels(o.meta(), &want_labels) => return Ok(false),
        Found::Ours(o) => {
            let mut next = o.updated(desired);
            let meta = next.meta_mut();
            meta.labels.get_or_insert_with(BTreeMap::new).extend(want_labels);
            meta.managed_fields = None;
            // `resourceVersion` stays as seen: the replace fails (409) if anyone wrote since.
            api.replace(name, &pp, &next).await.map_err(stale_on_conflict)?
        }
        Found::Absent => {
            // Refused before because the name is taken? Look (metadata only) instead of trying
            // the create again: a resource stuck on a foreign object then makes no write attempt.
            let refused =
                obj.common_status().and_then(CommonStatus::ready).is_some_and(|c| c.reason == "OutputNotOwned");
            if refused && api.get_metadata_opt(name).await?.is_some_and(|m| !owned_by(&m.metadata, obj)) {
                return Err(not_owned(obj, T::KIND, name, field));
            }
            let owner = obj.controller_owner_ref(&()).ok_or_else(|| Error::bug("resource has no uid"))?;
            let meta = ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(ns.clone()),
                labels: Some(want_labels),
                owner_references: Some(vec![owner]),
                ..ObjectMeta::default()
            };
            match api.create(&pp, &T::build(meta, desired)).await {
                Ok(created) => created,
                Err(kube::Error::Api(s)) if s.code == 409 => return Err(taken::<T, K>(run, obj, name, field).await),
                Err(e) => return Err(e.into()),
            }
        }
    };
    run.expect((T::KIND, ns, name.to_owned()), written.meta().resource_version.clone());
    Ok(true)
}

/// The create of output `name` found the name taken: foreign (refused), or ours but not (yet)
/// in the cache. Reads metadata only, so a foreign Secret's data never reaches the operator.
async fn taken<T: OutputKind, K: Managed>(run: &Run, obj: &K, name: &str, field: &str) -> Error {
    let ns = match namespace(obj) {
        Ok(ns) => ns,
        Err(e) => return e,
    };
    match run.api::<T>(&ns).get_metadata_opt(name).await {
        Ok(Some(meta)) if owned_by(&meta.metadata, obj) => {
            if !has_labels(&meta.metadata, &labels(obj)) {
                // Ours, but someone removed the labels that put it in the cache: put them back.
                if let Err(e) = relabel::<T, K>(run, obj, name).await {
                    return e;
                }
            }
            Error::Stale(format!("{} {name} exists and is ours, but is not in the cache yet", T::KIND))
        }
        Ok(Some(_)) => not_owned(obj, T::KIND, name, field),
        Ok(None) => Error::Stale(format!("{} {name} was deleted while being created", T::KIND)),
        Err(e) => e.into(),
    }
}

async fn relabel<T: OutputKind, K: Managed>(run: &Run, obj: &K, name: &str) -> Result<()> {
    let ns = namespace(obj)?;
    let api = run.api::<T>(&ns);
    let Some(mut current) = api.get_opt(name).await? else { return Ok(()) };
    if !owned_by(current.meta(), obj) {
        return Ok(());
    }
    let meta = current.meta_mut();
    meta.labels.get_or_insert_with(BTreeMap::new).extend(labels(obj));
    meta.managed_fields = None;
    let pp = PostParams { field_manager: Some(MANAGER.to_owned()), ..PostParams::default() };
    api.replace(name, &pp, &current).await.map_err(stale_on_conflict)?;
    Ok(())
}

fn stale_on_conflict(e: kube::Error) -> Error {
    match &e {
        kube::Error::Api(s) if s.code == 409 || s.code == 404 => {
            Error::Stale(format!("the object changed since it was read ({})", s.message))
        }
        _ => e.into(),
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

/// Where an input came from: decides what the status may say about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A ConfigMap or the spec itself (public data).
    ConfigMap,
    /// A Secret the operator made; `high_entropy` when it holds at least 128 bits it drew itself
    /// (a shared secret or random bytes), so a plain fingerprint of it cannot be inverted.
    OperatorSecret {
        /// Whether the value is the operator's own randomness (≥ 128 bits).
        high_entropy: bool,
        /// `<uid>/<resourceVersion>`.
        version: String,
    },
    /// A user's Secret (opted in): never hashed into status; identified by uid and version.
    UserSecret {
        /// `<uid>/<resourceVersion>`.
        version: String,
    },
}

/// Bytes read from a referenced object.
pub(crate) struct Input {
    /// The value.
    pub(crate) bytes: Zeroizing<Vec<u8>>,
    /// Where it came from.
    pub(crate) origin: Origin,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input").field("len", &self.bytes.len()).field("origin", &self.origin).finish()
    }
}

/// The keys of operator-made Secrets another resource may read, by owning kind, and whether
/// the value is the operator's own randomness. Private keys (key pairs, certificates) are never inputs.
const OPERATOR_INPUTS: &[(&str, &[&str], bool)] = &[
    ("QuantumEncapsulateSecret", &["shared_secret"], true),
    ("QuantumEncapsulateSecret", &["ciphertext"], false),
    ("QuantumDecapsulateSecret", &["shared_secret"], true),
    ("QuantumRandomNumber", &["random"], true),
    ("QuantumDerivedKey", &["key"], false),
];

/// A reference to one key of a Secret or ConfigMap, resolved to a namespace.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InputRef<'a> {
    /// The spec field, for messages.
    pub(crate) field: &'a str,
    /// Secret or ConfigMap.
    pub(crate) kind: DataKind,
    /// Namespace (already checked against `--allow-cross-namespace-refs`).
    pub(crate) namespace: &'a str,
    /// Object name.
    pub(crate) name: &'a str,
    /// The key inside it.
    pub(crate) key: &'a str,
}

fn not_opted_in(r: &InputRef<'_>) -> Error {
    let (what, cmd) = match r.kind {
        DataKind::Secret => ("Secret", "secret"),
        DataKind::ConfigMap => ("ConfigMap", "configmap"),
    };
    Error::user(
        "InputNotOptedIn",
        format!(
            "{}: {what} {} was not made by qubesec and lacks the label {}={}; the operator reads such \
             objects only when they opt in (kubectl label {cmd} {} {}={})",
            r.field, r.name, INPUT_LABEL.0, INPUT_LABEL.1, r.name, INPUT_LABEL.0, INPUT_LABEL.1
        ),
    )
}

fn version_of(meta: &ObjectMeta) -> String {
    format!("{}/{}", meta.uid.as_deref().unwrap_or_default(), meta.resource_version.as_deref().unwrap_or_default())
}

impl Input {
    /// What identifies this input in a digest recorded in status: the bytes of public data,
    /// but only the object's uid and version for a Secret (never a hash of a Secret's value).
    pub(crate) fn identity(&self) -> Vec<u8> {
        match &self.origin {
            Origin::ConfigMap => self.bytes.to_vec(),
            Origin::OperatorSecret { version, .. } | Origin::UserSecret { version } => {
                format!("secret:{version}").into_bytes()
            }
        }
    }
}

fn has_input_label(meta: &ObjectMeta) -> bool {
    meta.labels.as_ref().and_then(|l| l.get(INPUT_LABEL.0)).is_some_and(|v| v == INPUT_LABEL.1)
}

/// Reads the input `r`: from the cache when the operator made it, with a GET when it opted in;
/// `Ok(None)` while the object or key does not exist. A Secret neither made by qubesec nor
/// labelled [`INPUT_LABEL`] is refused (`InputNotOptedIn`), and so is a key of an operator-made
/// Secret that holds a private key (`InputNotAllowed`); only metadata is read to tell.
pub(crate) async fn read_input(run: &Run, r: &InputRef<'_>) -> Result<Option<Input>> {
    match r.kind {
        DataKind::Secret => {
            if let Some(s) = run.stores.secrets.get(&ObjectRef::new(r.name).within(r.namespace))
                && let Some(owner) = qubesec_owner(&s.metadata)
            {
                let Some((_, _, high_entropy)) =
                    OPERATOR_INPUTS.iter().find(|(kind, keys, _)| *kind == owner.kind && keys.contains(&r.key))
                else {
                    return Err(Error::user(
                        "InputNotAllowed",
                        format!(
                            "{}: key {} of Secret {} belongs to {} {}; of the Secrets qubesec makes, only \
                             shared secrets, ciphertexts, random numbers and derived keys can be inputs, \
                             never private keys",
                            r.field, r.key, r.name, owner.kind, owner.name
                        ),
                    ));
                };
                let origin = Origin::OperatorSecret { high_entropy: *high_entropy, version: version_of(&s.metadata) };
                return Ok(secret_data(&s, r.key).map(|b| Input { bytes: Zeroizing::new(b.to_vec()), origin }));
            }
            if run.stores.input_secrets.get(&ObjectRef::new(r.name).within(r.namespace)).is_none() {
                return match run.api::<Secret>(r.namespace).get_metadata_opt(r.name).await? {
                    None => Ok(None),
                    Some(_) => Err(not_opted_in(r)),
                };
            }
            let Some(s) = run.api::<Secret>(r.namespace).get_opt(r.name).await? else { return Ok(None) };
            if !has_input_label(&s.metadata) {
                return Err(not_opted_in(r));
            }
            let origin = Origin::UserSecret { version: version_of(&s.metadata) };
            Ok(secret_data(&s, r.key).map(|b| Input { bytes: Zeroizing::new(b.to_vec()), origin }))
        }
        DataKind::ConfigMap => {
            let at = ObjectRef::new(r.name).within(r.namespace);
            if let Some(c) = run.stores.config_maps.get(&at).filter(|c| qubesec_owner(&c.metadata).is_some()) {
                let bytes = config_map_data(&c, r.key).map(|b| Zeroizing::new(b.to_vec()));
                return Ok(bytes.map(|bytes| Input { bytes, origin: Origin::ConfigMap }));
            }
            if run.stores.input_config_maps.get(&ObjectRef::new(r.name).within(r.namespace)).is_none() {
                return match run.api::<ConfigMap>(r.namespace).get_metadata_opt(r.name).await? {
                    None => Ok(None),
                    Some(_) => Err(not_opted_in(r)),
                };
            }
            let Some(c) = run.api::<ConfigMap>(r.namespace).get_opt(r.name).await? else { return Ok(None) };
            if !has_input_label(&c.metadata) {
                return Err(not_opted_in(r));
            }
            let bytes = config_map_data(&c, r.key).map(|b| Zeroizing::new(b.to_vec()));
            Ok(bytes.map(|bytes| Input { bytes, origin: Origin::ConfigMap }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_and_metadata() {
        let fp = fingerprint(b"abc");
        assert_eq!(fp, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(short(&fp), "ba7816bf8f");
        let mut m = OutputMetadata::new("QuantumRandomNumber", "os-csprng", &fp, "2026-01-01T00:00:00Z");
        let text = m.to_json();
        assert!(text.contains("\"formatVersion\":1") && !text.contains("previousFingerprint"), "{text}");
        assert_eq!(OutputMetadata::parse(Some(text.as_bytes())), Some(m.clone()));
        m.previous_fingerprint = Some("sha256:old".into());
        assert!(m.to_json().contains("\"previousFingerprint\":\"sha256:old\""));
        assert_eq!(OutputMetadata::parse(Some(b"not json")), None);
        assert_eq!(OutputMetadata::parse(None), None);
    }

    #[test]
    fn outputs_compare_exactly() {
        let desired = SecretData {
            type_: "Opaque",
            data: BTreeMap::from([("a".to_owned(), vec![1u8]), ("b".to_owned(), vec![2u8])]),
        };
        let mut s = Secret::build(ObjectMeta::default(), &desired);
        assert!(s.holds(&desired));
        s.data.as_mut().map(|d| d.insert("c".into(), ByteString(vec![])));
        assert!(!s.holds(&desired));
        assert!(!Secret::default().holds(&desired));
        let tls = SecretData { type_: "kubernetes.io/tls", data: desired.data.clone() };
        assert!(!Secret::build(ObjectMeta::default(), &desired).holds(&tls), "the type counts");
        let cm = ConfigMapData {
            data: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
            binary: BTreeMap::from([("b".to_owned(), vec![0u8, 255])]),
        };
        let built = ConfigMap::build(ObjectMeta::default(), &cm);
        assert!(built.holds(&cm));
        assert!(!built.holds(&ConfigMapData::default()));
        assert!(ConfigMap::default().holds(&ConfigMapData::default()), "absent maps are empty maps");
    }
}
