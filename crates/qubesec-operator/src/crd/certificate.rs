//! `QuantumCertificate`: X.509 certificates with post-quantum keys, self-signed or issued by a CA certificate.

// clippy reads repeated `type_ = "string"` inside `#[kube(printcolumn(..))]` as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, OutputStatus, ResourceRef, Revision, RotationSchedule, string_enum};
use super::keys::SignatureAlgorithmName;

string_enum! {
    /// What happens to the private key when the certificate is renewed.
    #[derive(Default)]
    RotationPolicy {
        /// Keep the key (default).
        #[default]
        Never = "Never",
        /// Generate a new key on every renewal.
        Always = "Always",
    }
}

/// The generated private key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivateKeySpec {
    /// ML-DSA-65 (default) or another signature algorithm. Immutable.
    #[serde(default)]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.privateKey.algorithm is immutable"))]
    pub algorithm: SignatureAlgorithmName,
    /// `Never` (default: renewals keep the key) or `Always`.
    #[serde(default)]
    pub rotation_policy: RotationPolicy,
}

string_enum! {
    /// Key usages and extended key usages, spelled as cert-manager does.
    Usage {
        /// keyUsage digitalSignature.
        DigitalSignature = "digital signature",
        /// keyUsage contentCommitment (nonRepudiation).
        ContentCommitment = "content commitment",
        /// keyUsage keyCertSign.
        CertSign = "cert sign",
        /// keyUsage cRLSign.
        CrlSign = "crl sign",
        /// extendedKeyUsage serverAuth.
        ServerAuth = "server auth",
        /// extendedKeyUsage clientAuth.
        ClientAuth = "client auth",
        /// extendedKeyUsage codeSigning.
        CodeSigning = "code signing",
        /// extendedKeyUsage emailProtection.
        EmailProtection = "email protection",
        /// extendedKeyUsage timeStamping.
        Timestamping = "timestamping",
        /// extendedKeyUsage OCSPSigning.
        OcspSigning = "ocsp signing",
    }
}

/// A DNS name, as the certificate builder accepts it (checked again at issuance).
pub const DNS_NAME_PATTERN: &str =
    r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$";

fn dns_names_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 100,
        "items": { "type": "string", "maxLength": 254, "pattern": DNS_NAME_PATTERN },
    })
}

fn ip_addresses_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 100,
        "items": { "type": "string", "maxLength": 45 },
    })
}

fn default_duration() -> String {
    "2160h".to_owned()
}

fn default_renew_before() -> String {
    "720h".to_owned()
}

/// Status of a certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// Conditions, generation, phase and error.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The key's signature algorithm, the subject public key's fingerprint (SPKI) and the
    /// `kubernetes.io/tls` Secret.
    #[serde(flatten)]
    pub output: OutputStatus,
    /// notBefore (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// notAfter (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// When the operator renews the certificate (notAfter minus renewBefore, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<String>,
    /// The serial number, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// `sha256:<hex>` over the certificate's DER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_fingerprint: Option<String>,
    /// The issuer certificate's DER fingerprint this certificate was issued under (absent when self-signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_fingerprint: Option<String>,
    /// A digest of the spec fields the certificate was issued from; a change re-issues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_digest: Option<String>,
    /// The current certificate's revision: 1 for the first, one more per re-issue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    /// Retired certificates, newest first, at most `spec.revisionHistoryLimit` (default 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Revision>,
}

/// An X.509 certificate with a post-quantum key, self-signed or issued by a CA `QuantumCertificate`,
/// kept in a `kubernetes.io/tls` Secret and renewed before it expires.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "qubesec.io",
    version = "v1",
    kind = "QuantumCertificate",
    plural = "quantumcertificates",
    singular = "quantumcertificate",
    namespaced,
    status = "CertificateStatus",
    shortname = "qcert",
    category = "qubesec",
    doc = "An X.509 certificate with a post-quantum key in a kubernetes.io/tls Secret, renewed before expiry.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Algorithm", type_ = "string", json_path = ".status.algorithm"),
    printcolumn(name = "Fingerprint", type_ = "string", json_path = ".status.shortFingerprint"),
    printcolumn(name = "Expires", type_ = "date", json_path = ".status.notAfter"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = kube::core::Rule::new("!(has(self.keyPairRef) && has(self.privateKey))").message("at most one of spec.keyPairRef or spec.privateKey may be set"))]
#[x_kube(validation = kube::core::Rule::new("has(self.subject) || has(self.dnsNames) || has(self.ipAddresses) || has(self.uris) || has(self.emailAddresses)").message("spec.subject or at least one subject alternative name is required"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.pathLen) || self.isCA").message("spec.pathLen needs spec.isCA"))]
#[x_kube(validation = kube::core::Rule::new("duration(self.renewBefore) < duration(self.duration)").message("spec.renewBefore must be shorter than spec.duration").field_path(".renewBefore"))]
#[x_kube(validation = kube::core::Rule::new("has(self.secretName) == has(oldSelf.secretName)").message("spec.secretName is immutable: it cannot be added or removed once the certificate exists").field_path(".secretName"))]
#[serde(rename_all = "camelCase")]
pub struct QuantumCertificateSpec {
    /// Subject distinguished name (RFC 4514), e.g. `CN=api.example.com,O=Example`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub subject: Option<String>,
    /// DNS subject alternative names: letters, digits and `-` in dot-separated labels of at most
    /// 63 characters (punycode for IDNs), optionally `*.` first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "dns_names_schema")]
    pub dns_names: Vec<String>,
    /// IP address subject alternative names (IPv4 or IPv6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "ip_addresses_schema")]
    #[x_kube(validation = kube::core::Rule::new("self.all(ip, isIP(ip))").message("spec.ipAddresses must be IPv4 or IPv6 addresses"))]
    pub ip_addresses: Vec<String>,
    /// URI subject alternative names (e.g. SPIFFE IDs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub uris: Vec<String>,
    /// Email subject alternative names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub email_addresses: Vec<String>,
    /// Validity, Go duration syntax (`2160h`, `90m`, `1h30m`); default 2160h (90 days).
    #[serde(default = "default_duration")]
    #[schemars(regex(pattern = r"^([0-9]{1,7}(h|m|s))+$"), length(max = 32))]
    pub duration: String,
    /// How long before notAfter to renew; default 720h (30 days). Must be shorter than `duration`.
    #[serde(default = "default_renew_before")]
    #[schemars(regex(pattern = r"^([0-9]{1,7}(h|m|s))+$"), length(max = 32))]
    pub renew_before: String,
    /// Whether this is a CA certificate that may issue others. Immutable: a key that signed
    /// as an end entity never becomes a CA key, and back.
    #[serde(default, rename = "isCA")]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.isCA is immutable: create a new QuantumCertificate for another role"))]
    pub is_ca: bool,
    /// The CA's path length constraint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 8))]
    pub path_len: Option<u8>,
    /// Key usages and extended key usages; defaults follow the role (CA: cert sign, crl sign, digital signature).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub usages: Vec<Usage>,
    /// Use the key of this `QuantumSignatureKeyPair` instead of generating one: a CA certificate
    /// needs a key pair with `purpose: CertificateAuthority`, any other certificate one with
    /// `purpose: Signing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pair_ref: Option<ResourceRef>,
    /// The generated key (used when `keyPairRef` is absent; ML-DSA-65 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKeySpec>,
    /// The CA `QuantumCertificate` that issues this one; absent means self-signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<ResourceRef>,
    /// Name of the `kubernetes.io/tls` Secret; defaults to the resource name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.secretName is immutable"))]
    pub secret_name: Option<String>,
    /// Re-issue at least this often, even long before `renewBefore` (e.g. weekly certificates
    /// with a 90-day validity); with `privateKey.rotationPolicy: Always` this rotates the key too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationSchedule>,
    /// How many retired certificates `status.history` keeps (0 to 20, default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 20))]
    pub revision_history_limit: Option<u32>,
}
