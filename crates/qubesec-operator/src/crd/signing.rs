//! Signatures: `QuantumSignMessage`, `QuantumVerifySignature`.

// clippy reads repeated `type_ = "string"` inside `#[kube(printcolumn(..))]` as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, DataRef, KeyRef, OutputStatus, ResourceRef, signature_schema, string_enum};

/// Status of a signature.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignMessageStatus {
    /// Conditions, generation, phase and error.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The signature algorithm and the signature's fingerprint (no Secret: signatures are public).
    #[serde(flatten)]
    pub output: OutputStatus,
    /// Fingerprint of the signing key's public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// The ConfigMap with the signature (binaryData `signature`) and the public key (`public_key.pem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_config_map: Option<String>,
}

/// Signs a message with a `QuantumSignatureKeyPair`; the signature is not secret and goes to a ConfigMap.
/// The message is re-signed when it or the key changes, never otherwise.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "qubesec.io",
    version = "v1",
    kind = "QuantumSignMessage",
    plural = "quantumsignmessages",
    singular = "quantumsignmessage",
    namespaced,
    status = "SignMessageStatus",
    shortname = "qsign",
    category = "qubesec",
    doc = "Signs a message with a QuantumSignatureKeyPair; the signature goes to a ConfigMap (binaryData `signature`).",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Algorithm", type_ = "string", json_path = ".status.algorithm"),
    printcolumn(name = "Fingerprint", type_ = "string", json_path = ".status.shortFingerprint"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = kube::core::Rule::new("has(self.message) != has(self.messageRef)").message("exactly one of spec.message or spec.messageRef must be set"))]
#[x_kube(validation = kube::core::Rule::new("has(self.configMapName) == has(oldSelf.configMapName)").message("spec.configMapName is immutable: it cannot be added or removed once the resource exists").field_path(".configMapName"))]
#[serde(rename_all = "camelCase")]
pub struct QuantumSignMessageSpec {
    /// The `QuantumSignatureKeyPair` that signs.
    pub key_pair_ref: ResourceRef,
    /// The message inline (UTF-8 text). Exactly one of `message` and `messageRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub message: Option<String>,
    /// The message in a ConfigMap or Secret (key `message` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_ref: Option<DataRef>,
    /// Optional context string (FIPS 204/205), UTF-8, at most 255 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    #[x_kube(validation = kube::core::Rule::new("size(bytes(self)) <= 255").message("spec.context must be at most 255 bytes in UTF-8"))]
    pub context: Option<String>,
    /// Name of the output ConfigMap; defaults to the resource name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.configMapName is immutable"))]
    pub config_map_name: Option<String>,
}

string_enum! {
    /// Where a verifier finds the public key.
    #[derive(Default)]
    VerifyKeySource {
        /// A `QuantumSignatureKeyPair` (its public-key ConfigMap).
        #[default]
        QuantumSignatureKeyPair = "QuantumSignatureKeyPair",
        /// A ConfigMap with an SPKI PEM (key `public_key.pem` unless `key` says otherwise).
        ConfigMap = "ConfigMap",
        /// A `QuantumCertificate` (the subject key of its certificate).
        QuantumCertificate = "QuantumCertificate",
    }
}

/// Where to find a signature public key: a `QuantumSignatureKeyPair` (default), a ConfigMap (SPKI
/// PEM under `key`, default `public_key.pem`) or a `QuantumCertificate`.
pub type VerifyKeyRef = KeyRef<VerifyKeySource>;

string_enum! {
    /// The outcome of a verification.
    VerifyResult {
        /// The signature is valid for the message, key and context.
        Valid = "Valid",
        /// It is not.
        Invalid = "Invalid",
    }
}

/// Status of a verification.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifySignatureStatus {
    /// Conditions, generation, phase and error.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The signature algorithm of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// Whether the signature verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
    /// `Valid` or `Invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<VerifyResult>,
    /// When the current inputs were verified (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    /// Fingerprint of the verifying key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// The first 10 hex characters of the key fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_fingerprint: Option<String>,
    /// `sha256:<hex>` identifying the inputs verified: the key's fingerprint, the context, and per
    /// message and signature either its bytes (inline, or from a ConfigMap) or, when it came from
    /// a Secret, that Secret's uid and resourceVersion (never a hash of a Secret's value). A new
    /// value means `verifiedAt` moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs_fingerprint: Option<String>,
}

/// Verifies a signature over a message; re-verified whenever the key, message, signature or context change.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "qubesec.io",
    version = "v1",
    kind = "QuantumVerifySignature",
    plural = "quantumverifysignatures",
    singular = "quantumverifysignature",
    namespaced,
    status = "VerifySignatureStatus",
    shortname = "qverify",
    category = "qubesec",
    doc = "Verifies a signature; `status.result` is Valid or Invalid, re-verified when any input changes.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Result", type_ = "string", json_path = ".status.result"),
    printcolumn(name = "Algorithm", type_ = "string", json_path = ".status.algorithm"),
    printcolumn(name = "Fingerprint", type_ = "string", json_path = ".status.shortFingerprint"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = kube::core::Rule::new("has(self.message) != has(self.messageRef)").message("exactly one of spec.message or spec.messageRef must be set"))]
#[x_kube(validation = kube::core::Rule::new("has(self.signature) != has(self.signatureRef)").message("exactly one of spec.signature or spec.signatureRef must be set"))]
#[serde(rename_all = "camelCase")]
pub struct QuantumVerifySignatureSpec {
    /// The public key: a `QuantumSignatureKeyPair` (default kind), a ConfigMap holding an SPKI PEM
    /// (key `public_key.pem` unless `key` says otherwise) or a `QuantumCertificate` (its subject key).
    pub public_key_ref: VerifyKeyRef,
    /// The message inline (UTF-8 text). Exactly one of `message` and `messageRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub message: Option<String>,
    /// The message in a ConfigMap or Secret (key `message` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_ref: Option<DataRef>,
    /// The signature inline, base64. Exactly one of `signature` and `signatureRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "signature_schema")]
    pub signature: Option<String>,
    /// The signature in a ConfigMap or Secret (key `signature` by default), e.g. a `QuantumSignMessage`'s ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_ref: Option<DataRef>,
    /// Optional context string, as given to the signer (UTF-8, at most 255 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    #[x_kube(validation = kube::core::Rule::new("size(bytes(self)) <= 255").message("spec.context must be at most 255 bytes in UTF-8"))]
    pub context: Option<String>,
}
