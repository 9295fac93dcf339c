//! Types shared by the nine resources: status, conditions, references and enums.

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

/// A reference to one key of a ConfigMap or Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataRef {
    /// `ConfigMap` (default) or `Secret`.
    #[serde(default)]
    pub kind: DataKind,
    /// Name of the ConfigMap or Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace; defaults to the referring resource's (see `--allow-cross-namespace-refs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// The key inside the object; each field documents its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// Schema of a base64 string (`format: byte`, which the apiserver checks), at most `max` characters.
pub(crate) fn base64_schema(max: u32) -> Schema {
    json_schema!({ "type": "string", "format": "byte", "maxLength": max })
}

/// Schema for inline ciphertexts (base64, ML-KEM-1024's 1568 bytes fit).
pub(crate) fn ciphertext_schema(_: &mut SchemaGenerator) -> Schema {
    let mut s = base64_schema(4096);
    s.insert("description".into(), "The ciphertext, base64 (standard alphabet, padded).".into());
    s
}

/// Schema for inline signatures (base64; SLH-DSA-256f's 49856 bytes fit).
pub(crate) fn signature_schema(_: &mut SchemaGenerator) -> Schema {
    let mut s = base64_schema(70_000);
    s.insert("description".into(), "The signature, base64 (standard alphabet, padded).".into());
    s
}
