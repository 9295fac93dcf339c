//! Key exchange: `QuantumEncapsulateSecret`, `QuantumDecapsulateSecret`, `QuantumDerivedKey`.

// clippy reads repeated `type_ = "string"` inside `#[kube(printcolumn(..))]` as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    CommonStatus, DataRef, KeyRef, OutputStatus, ResourceRef, ciphertext_schema, kdf_bytes_schema, string_enum,
};

string_enum! {
    /// Where an encapsulator finds the public key.
    #[derive(Default)]
    PublicKeySource {
        /// A `QuantumKEMKeyPair` (its public-key ConfigMap is read once it is Ready).
        #[default]
        QuantumKEMKeyPair = "QuantumKEMKeyPair",
        /// A ConfigMap holding an SPKI PEM public key (key `public_key.pem` unless `key` says otherwise).
        ConfigMap = "ConfigMap",
    }
}

/// Where to find a KEM public key: a `QuantumKEMKeyPair` (default) or a ConfigMap (SPKI PEM under
/// `key`, default `public_key.pem`).
pub type PublicKeyRef = KeyRef<PublicKeySource>;

/// Status of an encapsulation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncapsulateStatus {
    /// Conditions, generation, phase and error.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The KEM, the shared secret's fingerprint (equals the decapsulator's) and the Secret with
    /// `shared_secret` and `ciphertext`.
    #[serde(flatten)]
    pub output: OutputStatus,
    /// Fingerprint of the public key encapsulated to; a new key means a new encapsulation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_fingerprint: Option<String>,
    /// `sha256:<hex>` over the ciphertext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext_fingerprint: Option<String>,
    /// The ConfigMap publishing the ciphertext for the peer (binaryData key `ciphertext`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext_config_map: Option<String>,
}

/// Encapsulates a fresh shared secret to a KEM public key. The shared secret and ciphertext go to a
/// Secret; the ciphertext is also published in a ConfigMap for the peer.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "qubesec.io",
    version = "v1",
    kind = "QuantumEncapsulateSecret",
    plural = "quantumencapsulatesecrets",
    singular = "quantumencapsulatesecret",
    namespaced,
    status = "EncapsulateStatus",
    shortname = "qencap",
    category = "qubesec",
    doc = "Encapsulates a shared secret to a KEM public key; Secret `shared_secret` + `ciphertext`, ciphertext also in a ConfigMap.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Algorithm", type_ = "string", json_path = ".status.algorithm"),
    printcolumn(name = "Fingerprint", type_ = "string", json_path = ".status.shortFingerprint"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = kube::core::Rule::new("has(self.secretName) == has(oldSelf.secretName)").message("spec.secretName is immutable: it cannot be added or removed once the resource exists").field_path(".secretName"))]
#[serde(rename_all = "camelCase")]
pub struct QuantumEncapsulateSecretSpec {
    /// The recipient's public key: a `QuantumKEMKeyPair` (default kind), or a ConfigMap holding an
    /// SPKI PEM (key `public_key.pem` unless `key` says otherwise).
    pub public_key_ref: PublicKeyRef,
    /// Name of the output Secret and ciphertext ConfigMap; defaults to the resource name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.secretName is immutable"))]
    pub secret_name: Option<String>,
}

/// Status of a decapsulation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecapsulateStatus {
    /// Conditions, generation, phase and error.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The KEM, the recovered shared secret's fingerprint (equals the encapsulator's) and the
    /// Secret with `shared_secret`.
    #[serde(flatten)]
    pub output: OutputStatus,
    /// Fingerprint of the key pair's public key that decapsulated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_fingerprint: Option<String>,
    /// `sha256:<hex>` over the ciphertext that was decapsulated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext_fingerprint: Option<String>,
}

/// Recovers the shared secret from a ciphertext with a `QuantumKEMKeyPair`'s private key.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "qubesec.io",
    version = "v1",
    kind = "QuantumDecapsulateSecret",
    plural = "quantumdecapsulatesecrets",
    singular = "quantumdecapsulatesecret",
    namespaced,
    status = "DecapsulateStatus",
    shortname = "qdecap",
    category = "qubesec",
    doc = "Decapsulates a ciphertext with a QuantumKEMKeyPair's private key; Secret `shared_secret`.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Algorithm", type_ = "string", json_path = ".status.algorithm"),
    printcolumn(name = "Fingerprint", type_ = "string", json_path = ".status.shortFingerprint"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = kube::core::Rule::new("has(self.ciphertext) != has(self.ciphertextRef)").message("exactly one of spec.ciphertext or spec.ciphertextRef must be set"))]
#[x_kube(validation = kube::core::Rule::new("has(self.secretName) == has(oldSelf.secretName)").message("spec.secretName is immutable: it cannot be added or removed once the resource exists").field_path(".secretName"))]
#[serde(rename_all = "camelCase")]
pub struct QuantumDecapsulateSecretSpec {
    /// The `QuantumKEMKeyPair` whose private key decapsulates.
    pub key_pair_ref: ResourceRef,
    /// The ciphertext inline, base64. Exactly one of `ciphertext` and `ciphertextRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "ciphertext_schema")]
    pub ciphertext: Option<String>,
    /// The ciphertext in a ConfigMap or Secret (key `ciphertext` by default), e.g. the encapsulator's ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext_ref: Option<DataRef>,
    /// Name of the output Secret; defaults to the resource name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.secretName is immutable"))]
    pub secret_name: Option<String>,
}

string_enum! {
    /// The HKDF hash function.
    #[derive(Default)]
    KdfHash {
        /// SHA-256 (default).
        #[default]
        Sha256 = "SHA-256",
        /// SHA-384.
        Sha384 = "SHA-384",
        /// SHA-512.
        Sha512 = "SHA-512",
        /// SHA3-256.
        Sha3_256 = "SHA3-256",
        /// SHA3-512.
        Sha3_512 = "SHA3-512",
    }
}

impl KdfHash {
    /// The core hash.
    pub fn core(self) -> qubesec_core::HashAlgorithm {
        use qubesec_core::HashAlgorithm as H;
        match self {
            Self::Sha256 => H::Sha256,
            Self::Sha384 => H::Sha384,
            Self::Sha512 => H::Sha512,
            Self::Sha3_256 => H::Sha3_256,
            Self::Sha3_512 => H::Sha3_512,
        }
    }
}

string_enum! {
    /// What the derived key is for; fixes its length unless `Raw`.
    #[derive(Default)]
    KeyType {
        /// 32 bytes (default).
        #[default]
        Aes256 = "AES-256",
        /// 16 bytes.
        Aes128 = "AES-128",
        /// 32 bytes.
        ChaCha20Poly1305 = "ChaCha20-Poly1305",
        /// 32 bytes.
        HmacSha256 = "HMAC-SHA256",
        /// `length` bytes.
        Raw = "Raw",
    }
}

impl KeyType {
    /// The output length in bytes; `None` for `Raw` (taken from `spec.length`).
    pub fn fixed_len(self) -> Option<usize> {
        match self {
            Self::Aes256 | Self::ChaCha20Poly1305 | Self::HmacSha256 => Some(32),
            Self::Aes128 => Some(16),
            Self::Raw => None,
        }
    }
}

/// Where the input keying material is: a key of a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, e.g. an encapsulation's or decapsulation's output.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace; defaults to this resource's (see `--allow-cross-namespace-refs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// The key inside the Secret (default `shared_secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// Status of a derived key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DerivedKeyStatus {
    /// Conditions, generation, phase and error.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// `HKDF-<hash>/<keyType>`, the derived key's fingerprint (only when its input is a secret
    /// the operator made: a shared secret or random bytes) and the Secret with `key`.
    #[serde(flatten)]
    pub output: OutputStatus,
    /// Output length in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u32>,
    /// The fingerprint of the input keying material, only when the operator made it (it equals
    /// the encapsulation's, decapsulation's or random number's fingerprint); absent for a user's Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_fingerprint: Option<String>,
}

/// Derives a symmetric key from a shared secret with HKDF (RFC 5869); follows the shared secret when it changes.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "qubesec.io",
    version = "v1",
    kind = "QuantumDerivedKey",
    plural = "quantumderivedkeys",
    singular = "quantumderivedkey",
    namespaced,
    status = "DerivedKeyStatus",
    shortname = "qdk",
    category = "qubesec",
    doc = "Derives a symmetric key from a shared secret with HKDF; Secret `key`.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Algorithm", type_ = "string", json_path = ".status.algorithm"),
    printcolumn(name = "Fingerprint", type_ = "string", json_path = ".status.shortFingerprint"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = kube::core::Rule::new("self.keyType == 'Raw' ? has(self.length) : !has(self.length)").message("spec.length is required when spec.keyType is Raw, and not allowed otherwise"))]
#[x_kube(validation = kube::core::Rule::new("!(has(self.salt) && has(self.saltBase64))").message("at most one of spec.salt and spec.saltBase64 may be set"))]
#[x_kube(validation = kube::core::Rule::new("!(has(self.info) && has(self.infoBase64))").message("at most one of spec.info and spec.infoBase64 may be set"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.length) || self.length <= 255 * (self.hash == 'SHA-384' ? 48 : (self.hash == 'SHA-512' || self.hash == 'SHA3-512') ? 64 : 32)").message("spec.length exceeds HKDF's limit of 255 hash lengths for spec.hash (8160 bytes for SHA-256 and SHA3-256, 12240 for SHA-384, 16320 for SHA-512 and SHA3-512)").field_path(".length"))]
#[x_kube(validation = kube::core::Rule::new("has(self.secretName) == has(oldSelf.secretName)").message("spec.secretName is immutable: it cannot be added or removed once the resource exists").field_path(".secretName"))]
#[serde(rename_all = "camelCase")]
pub struct QuantumDerivedKeySpec {
    /// The Secret key holding the input keying material (key `shared_secret` by default).
    pub shared_secret_ref: SecretKeyRef,
    /// The HKDF hash: SHA-256 (default), SHA-384, SHA-512, SHA3-256 or SHA3-512.
    #[serde(default)]
    pub hash: KdfHash,
    /// HKDF salt (UTF-8 text); empty when absent. For a binary salt use `saltBase64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub salt: Option<String>,
    /// HKDF salt as base64, for binary salts. At most one of `salt` and `saltBase64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "kdf_bytes_schema")]
    pub salt_base64: Option<String>,
    /// HKDF info (UTF-8 text) binding the key to its purpose; empty when absent. For binary info
    /// use `infoBase64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub info: Option<String>,
    /// HKDF info as base64, for binary context strings. At most one of `info` and `infoBase64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "kdf_bytes_schema")]
    pub info_base64: Option<String>,
    /// AES-256 (default), AES-128, ChaCha20-Poly1305, HMAC-SHA256, or Raw with `length`.
    #[serde(default)]
    pub key_type: KeyType,
    /// Output length in bytes for `keyType: Raw`: at least 16, at most 255 hash lengths (RFC 5869):
    /// 8160 for SHA-256 and SHA3-256, 12240 for SHA-384, 16320 for SHA-512 and SHA3-512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16, max = 16320))]
    pub length: Option<u32>,
    /// Name of the output Secret; defaults to the resource name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.secretName is immutable"))]
    pub secret_name: Option<String>,
}
