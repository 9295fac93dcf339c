//! Key pairs and random numbers: `QuantumKEMKeyPair`, `QuantumSignatureKeyPair`, `QuantumRandomNumber`.

// clippy reads repeated `type_ = "string"` inside `#[kube(printcolumn(..))]` as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use qubesec_core::{DeprecatedAlias, KemAlgorithm, SignatureAlgorithm};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, OutputStatus, Revision, RotationSchedule, string_enum};

string_enum! {
    /// ML-KEM parameter sets (FIPS 203) and X-Wing; `Kyber*` are legacy spellings, accepted with a warning.
    #[derive(Default)]
    KemAlgorithmName {
        /// ML-KEM-512.
        MlKem512 = "ML-KEM-512",
        /// ML-KEM-768 (the default).
        #[default]
        MlKem768 = "ML-KEM-768",
        /// ML-KEM-1024.
        MlKem1024 = "ML-KEM-1024",
        /// X-Wing (ML-KEM-768 + X25519).
        XWing = "X-Wing",
        /// Legacy name of ML-KEM-512.
        Kyber512 = "Kyber512",
        /// Legacy name of ML-KEM-768.
        Kyber768 = "Kyber768",
        /// Legacy name of ML-KEM-1024.
        Kyber1024 = "Kyber1024",
    }
}

impl KemAlgorithmName {
    /// The core algorithm, and the deprecation note when a legacy name was used.
    ///
    /// # Errors
    /// Only if the core stops knowing one of the names (a bug).
    pub fn resolve(self) -> qubesec_core::Result<(KemAlgorithm, Option<DeprecatedAlias>)> {
        KemAlgorithm::parse(self.as_str())
    }
}

string_enum! {
    /// ML-DSA (FIPS 204) and SLH-DSA (FIPS 205) parameter sets; `Dilithium*` are legacy spellings.
    #[derive(Default)]
    SignatureAlgorithmName {
        /// ML-DSA-44.
        MlDsa44 = "ML-DSA-44",
        /// ML-DSA-65 (the default).
        #[default]
        MlDsa65 = "ML-DSA-65",
        /// ML-DSA-87.
        MlDsa87 = "ML-DSA-87",
        /// SLH-DSA-SHA2-128s.
        SlhDsaSha2_128s = "SLH-DSA-SHA2-128s",
        /// SLH-DSA-SHA2-128f.
        SlhDsaSha2_128f = "SLH-DSA-SHA2-128f",
        /// SLH-DSA-SHA2-192s.
        SlhDsaSha2_192s = "SLH-DSA-SHA2-192s",
        /// SLH-DSA-SHA2-192f.
        SlhDsaSha2_192f = "SLH-DSA-SHA2-192f",
        /// SLH-DSA-SHA2-256s.
        SlhDsaSha2_256s = "SLH-DSA-SHA2-256s",
        /// SLH-DSA-SHA2-256f.
        SlhDsaSha2_256f = "SLH-DSA-SHA2-256f",
        /// SLH-DSA-SHAKE-128s.
        SlhDsaShake128s = "SLH-DSA-SHAKE-128s",
        /// SLH-DSA-SHAKE-128f.
        SlhDsaShake128f = "SLH-DSA-SHAKE-128f",
        /// SLH-DSA-SHAKE-192s.
        SlhDsaShake192s = "SLH-DSA-SHAKE-192s",
        /// SLH-DSA-SHAKE-192f.
        SlhDsaShake192f = "SLH-DSA-SHAKE-192f",
        /// SLH-DSA-SHAKE-256s.
        SlhDsaShake256s = "SLH-DSA-SHAKE-256s",
        /// SLH-DSA-SHAKE-256f.
        SlhDsaShake256f = "SLH-DSA-SHAKE-256f",
        /// Legacy name of ML-DSA-44.
        Dilithium2 = "Dilithium2",
        /// Legacy name of ML-DSA-65.
        Dilithium3 = "Dilithium3",
        /// Legacy name of ML-DSA-87.
        Dilithium5 = "Dilithium5",
    }
}

impl SignatureAlgorithmName {
    /// The core algorithm, and the deprecation note when a legacy name was used.
    ///
    /// # Errors
    /// Only if the core stops knowing one of the names (a bug).
    pub fn resolve(self) -> qubesec_core::Result<(SignatureAlgorithm, Option<DeprecatedAlias>)> {
        SignatureAlgorithm::parse(self.as_str())
    }
}

string_enum! {
    /// What a signature key pair may sign.
    #[derive(Default)]
    KeyPurpose {
        /// Messages (`QuantumSignMessage`) and end-entity certificates (the default).
        #[default]
        Signing = "Signing",
        /// CA certificates (`QuantumCertificate` with `isCA: true`) and nothing else.
        CertificateAuthority = "CertificateAuthority",
    }
}

/// Status of a key pair.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyPairStatus {
    /// Conditions, generation, phase and error.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The algorithm, the public key's fingerprint (SPKI) and the Secret holding both keys.
    #[serde(flatten)]
    pub output: OutputStatus,
    /// The ConfigMap publishing the public key (readable without Secret access); its
    /// `public_key_history.pem` holds the retired public keys listed in `history`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_config_map: Option<String>,
    /// The current key's revision: 1 for the first key, one more per rotation or regeneration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    /// When the current key was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When the current key is due for rotation (RFC 3339); absent without `spec.rotation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_time: Option<String>,
    /// Retired keys, newest first, at most `spec.revisionHistoryLimit` (default 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Revision>,
}

/// What both key pair kinds have besides their algorithm: where the keys go, and how they rotate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyPairKeys {
    /// Name of the output Secret (and public-key ConfigMap); defaults to the resource name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.secretName is immutable"))]
    pub secret_name: Option<String>,
    /// Replace the key on a schedule; the retired public key stays in `status.history` and the
    /// ConfigMap's `public_key_history.pem` (so signatures made before a rotation still verify).
    /// Absent: the key is kept until the resource is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationSchedule>,
    /// How many retired keys `status.history` keeps (0 to 20, default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 20))]
    pub revision_history_limit: Option<u32>,
}

/// A post-quantum KEM key pair (ML-KEM or X-Wing), generated once and kept in a Secret;
/// the public key is also published in a ConfigMap of the same name.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "qubesec.io",
    version = "v1",
    kind = "QuantumKEMKeyPair",
    plural = "quantumkemkeypairs",
    singular = "quantumkemkeypair",
    namespaced,
    status = "KeyPairStatus",
    shortname = "qkem",
    category = "qubesec",
    doc = "A post-quantum KEM key pair (ML-KEM or X-Wing) kept in a Secret, public key also in a ConfigMap.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Algorithm", type_ = "string", json_path = ".spec.algorithm"),
    printcolumn(name = "Fingerprint", type_ = "string", json_path = ".status.shortFingerprint"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = kube::core::Rule::new("has(self.secretName) == has(oldSelf.secretName)").message("spec.secretName is immutable: it cannot be added or removed once the key pair exists").field_path(".secretName"))]
#[serde(rename_all = "camelCase")]
pub struct QuantumKEMKeyPairSpec {
    /// The KEM: ML-KEM-512, ML-KEM-768 (default), ML-KEM-1024 or X-Wing. Immutable.
    #[serde(default)]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.algorithm is immutable: create a new key pair instead"))]
    pub algorithm: KemAlgorithmName,
    /// Output name, rotation schedule and history.
    #[serde(flatten)]
    pub keys: KeyPairKeys,
}

/// A post-quantum signature key pair (ML-DSA or SLH-DSA), generated once and kept in a Secret;
/// the public key is also published in a ConfigMap of the same name.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "qubesec.io",
    version = "v1",
    kind = "QuantumSignatureKeyPair",
    plural = "quantumsignaturekeypairs",
    singular = "quantumsignaturekeypair",
    namespaced,
    status = "KeyPairStatus",
    shortname = "qsigkey",
    category = "qubesec",
    doc = "A post-quantum signature key pair (ML-DSA or SLH-DSA) kept in a Secret, public key also in a ConfigMap.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Algorithm", type_ = "string", json_path = ".spec.algorithm"),
    printcolumn(name = "Fingerprint", type_ = "string", json_path = ".status.shortFingerprint"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = kube::core::Rule::new("has(self.secretName) == has(oldSelf.secretName)").message("spec.secretName is immutable: it cannot be added or removed once the key pair exists").field_path(".secretName"))]
#[serde(rename_all = "camelCase")]
pub struct QuantumSignatureKeyPairSpec {
    /// The signature algorithm: ML-DSA-44/65 (default)/87 or an SLH-DSA set. Immutable.
    #[serde(default)]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.algorithm is immutable: create a new key pair instead"))]
    pub algorithm: SignatureAlgorithmName,
    /// What the key signs: `Signing` (default: messages through `QuantumSignMessage`, and
    /// end-entity certificates) or `CertificateAuthority` (CA certificates only, never anything a
    /// tenant chooses). Immutable: a key that signed messages never becomes a CA key.
    #[serde(default)]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.purpose is immutable: a key that signed messages never becomes a CA key, and back; create a new key pair"))]
    pub purpose: KeyPurpose,
    /// Output name, rotation schedule and history.
    #[serde(flatten)]
    pub keys: KeyPairKeys,
}

fn default_bytes() -> u32 {
    32
}

/// The fewest random bytes a `QuantumRandomNumber` makes: 128 bits, so its fingerprint in status
/// cannot be inverted by trying every value.
pub const MIN_RANDOM_BYTES: u32 = 16;

/// Status of a random number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RandomNumberStatus {
    /// Conditions, generation, phase and error.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The source (`os-csprng`), the fingerprint of the random bytes and the Secret.
    #[serde(flatten)]
    pub output: OutputStatus,
    /// Number of random bytes in the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u32>,
}

/// Random bytes from the operating system's CSPRNG, generated once, in a Secret (key `random`).
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "qubesec.io",
    version = "v1",
    kind = "QuantumRandomNumber",
    plural = "quantumrandomnumbers",
    singular = "quantumrandomnumber",
    namespaced,
    status = "RandomNumberStatus",
    shortname = "qrand",
    category = "qubesec",
    doc = "Random bytes from the OS CSPRNG, generated once, in a Secret (key `random`).",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Bytes", type_ = "integer", json_path = ".spec.bytes"),
    printcolumn(name = "Fingerprint", type_ = "string", json_path = ".status.shortFingerprint"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = kube::core::Rule::new("has(self.secretName) == has(oldSelf.secretName)").message("spec.secretName is immutable: it cannot be added or removed once the resource exists").field_path(".secretName"))]
#[serde(rename_all = "camelCase")]
pub struct QuantumRandomNumberSpec {
    /// How many random bytes (16 to 65536, default 32). Immutable.
    #[serde(default = "default_bytes")]
    #[schemars(range(min = 16, max = 65536))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.bytes is immutable"))]
    pub bytes: u32,
    /// Name of the output Secret; defaults to the resource name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.secretName is immutable"))]
    pub secret_name: Option<String>,
}
