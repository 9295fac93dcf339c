//! Types shared by the nine resources: status, conditions, references and enums.

use kube::KubeSchema;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Declares a string enum with one canonical spelling per variant, serde,
/// `Display`, and a schema that is a plain OpenAPI `enum` (structural, so the
/// apiserver rejects anything else at admission).
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every accepted spelling, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The spelling used in manifests.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)+ }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn inline_schema() -> bool {
                true
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "enum": Self::NAMES })
            }
        }
    };
}
pub(crate) use string_enum;

string_enum! {
    /// The prototype-compatible summary in `status.status`.
    Phase {
        /// Waiting for an input or not yet reconciled.
        Pending = "Pending",
        /// The output exists and matches the spec.
        Success = "Success",
        /// The spec cannot be satisfied until it (or a referenced object) changes.
        Failed = "Failed",
    }
}

/// A standard Kubernetes condition (`metav1.Condition`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition type; the operator sets `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason, e.g. `Generated`, `WaitingForKeyPair`, `InvalidSpec`.
    pub reason: String,
    /// A human-readable message. Never contains secret material.
    #[serde(default)]
    pub message: String,
    /// The `metadata.generation` this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the status last changed (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: String,
}

/// Status fields every resource carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// Standard conditions; `Ready` says whether the output exists and matches the spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Pending`, `Success` or `Failed` (compatible with the prototype).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Phase>,
    /// The last error, when `status` is `Failed` or a retry is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CommonStatus {
    /// The `Ready` condition, if set.
    pub fn ready(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == "Ready")
    }
}

/// The output part of a status every kind shares: what made it, its fingerprint, where it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputStatus {
    /// The canonical algorithm name (e.g. `ML-KEM-768`, `ML-DSA-65`, `HKDF-SHA-256/AES-256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// `sha256:<hex>` over the output: the public key (SPKI) of key pairs and certificates, the
    /// signature of a signature, otherwise the secret itself, but only when the operator made it
    /// with at least 128 bits of entropy (shared secrets, random numbers, keys derived from those):
    /// never over a value read from a user's Secret, which may be guessable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The first 10 hex characters of the fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_fingerprint: Option<String>,
    /// The output Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

impl OutputStatus {
    /// The output part for `algorithm`, `fingerprint` (with its short form) and `secret_name`.
    pub fn new(algorithm: impl Into<String>, fingerprint: Option<String>, secret_name: Option<String>) -> Self {
        let short_fingerprint = fingerprint.as_deref().map(short_fingerprint);
        Self { algorithm: Some(algorithm.into()), fingerprint, short_fingerprint, secret_name }
    }
}

/// The short form of a `sha256:<hex>` fingerprint: the first 10 hex characters.
pub fn short_fingerprint(fp: &str) -> String {
    fp.trim_start_matches("sha256:").chars().take(10).collect()
}

/// True when `status` reports `Ready=True` for the object's current generation.
pub fn is_ready(status: Option<&CommonStatus>, generation: Option<i64>) -> bool {
    status.and_then(|s| s.ready()).is_some_and(|c| c.status == "True" && c.observed_generation == generation)
}

/// A reference to another QubeSec resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    /// Name of the referenced resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the referenced resource; defaults to the referring resource's.
    /// Other namespaces need the operator's `--allow-cross-namespace-refs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

string_enum! {
    /// The kind of object a [`DataRef`] points to.
    #[derive(Default)]
    DataKind {
        /// A ConfigMap (`data` or `binaryData`).
        #[default]
        ConfigMap = "ConfigMap",
        /// A Secret (`data`).
        Secret = "Secret",
    }
}

/// A reference to an object of one of the kinds `K` lists (the first by default), and to one
/// key inside it when it is a ConfigMap or Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef<K: Default + Serialize> {
    /// The kind of the object; the first of the listed kinds when absent.
    #[serde(default)]
    pub kind: K,
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace; defaults to the referring resource's (see `--allow-cross-namespace-refs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// The key inside a ConfigMap or Secret (each referencing field documents its default);
    /// ignored for other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// A reference to one key of a ConfigMap (default) or Secret.
pub type DataRef = KeyRef<DataKind>;

/// Standard (padded) base64, as a regular expression the apiserver checks at admission.
pub const BASE64_PATTERN: &str = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$";

/// Schema of a base64 string, at most `max` characters. Not `format: byte`: once a CEL rule
/// looks at the object around it, the apiserver (kube-openapi, at least through v1.37) decodes
/// such a field as URL-safe base64 and refuses every standard value with `+` or `/` in it; a
/// pattern checks the standard alphabet without that trap (docs/decisions.md).
pub(crate) fn base64_schema(max: u32) -> Schema {
    json_schema!({ "type": "string", "pattern": BASE64_PATTERN, "maxLength": max })
}

/// Schema for inline ciphertexts (base64, ML-KEM-1024's 1568 bytes fit).
pub(crate) fn ciphertext_schema(_: &mut SchemaGenerator) -> Schema {
    let mut s = base64_schema(4096);
    s.insert("description".into(), "The ciphertext, base64 (standard alphabet, padded).".into());
    s
}

/// Schema for binary HKDF salt/info (base64; 1024 bytes fit).
pub(crate) fn kdf_bytes_schema(_: &mut SchemaGenerator) -> Schema {
    let mut s = base64_schema(1368);
    s.insert("description".into(), "Binary HKDF input, base64 (standard alphabet, padded; at most 1024 bytes).".into());
    s
}

/// Schema for inline signatures (base64; SLH-DSA-256f's 49856 bytes fit).
pub(crate) fn signature_schema(_: &mut SchemaGenerator) -> Schema {
    let mut s = base64_schema(70_000);
    s.insert("description".into(), "The signature, base64 (standard alphabet, padded).".into());
    s
}

/// A rotation schedule: replace the key (or re-issue the certificate) this long after it was made.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationSchedule {
    /// The key's lifetime, Go duration syntax (`720h`, `90m`, `1h30m`; 10s to 876000h).
    #[schemars(regex(pattern = r"^([0-9]{1,7}(h|m|s))+$"), length(max = 32))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('10s') && duration(self) <= duration('876000h')").message("spec.rotation.every must be between 10s and 876000h (100 years)"))]
    pub every: String,
}

/// How many retired revisions `status.history` keeps when `revisionHistoryLimit` is absent.
pub const DEFAULT_REVISION_HISTORY_LIMIT: u32 = 3;

/// One retired key (or certificate), newest first in `status.history`, so dependants and
/// verifiers can follow a rotation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    /// The revision number this key had (the first key is revision 1).
    pub revision: u32,
    /// `sha256:<hex>` over the retired public key (SPKI).
    pub fingerprint: String,
    /// When that key was created (RFC 3339), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When it was replaced (RFC 3339).
    pub retired_at: String,
    /// Certificates only: the retired certificate's serial number, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// Certificates only: `sha256:<hex>` over the retired certificate's DER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_fingerprint: Option<String>,
    /// Certificates only: the retired certificate's notAfter (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

/// Prepends `retired` (if any) to `history` and keeps at most `limit` entries.
pub fn push_revision(history: &[Revision], retired: Option<Revision>, limit: Option<u32>) -> Vec<Revision> {
    let limit = usize::try_from(limit.unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)).unwrap_or(usize::MAX);
    retired.into_iter().chain(history.iter().cloned()).take(limit).collect()
}

#[cfg(test)]
mod revision_tests {
    use super::*;

    fn rev(n: u32) -> Revision {
        Revision { revision: n, fingerprint: format!("sha256:{n}"), ..Revision::default() }
    }

    #[test]
    fn history_is_newest_first_and_bounded() {
        let h = push_revision(&[], Some(rev(1)), None);
        let h = push_revision(&h, Some(rev(2)), None);
        let h = push_revision(&h, Some(rev(3)), None);
        let h = push_revision(&h, Some(rev(4)), None);
        assert_eq!(h.iter().map(|r| r.revision).collect::<Vec<_>>(), vec![4, 3, 2]);
        assert_eq!(push_revision(&h, Some(rev(5)), Some(1)), vec![rev(5)]);
        assert!(push_revision(&h, Some(rev(5)), Some(0)).is_empty());
        // A lowered limit trims without a new entry.
        assert_eq!(push_revision(&h, None, Some(2)).iter().map(|r| r.revision).collect::<Vec<_>>(), vec![4, 3]);
    }
}
