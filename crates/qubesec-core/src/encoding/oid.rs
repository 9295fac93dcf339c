//! Object identifiers (facts from NIST CSOR, RFC 9935, RFC 9881, RFC 9909 and the X-Wing draft).

use der::asn1::ObjectIdentifier;

/// id-alg-ml-kem-512 (RFC 9935).
pub const ML_KEM_512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.4.1");
/// id-alg-ml-kem-768 (RFC 9935).
pub const ML_KEM_768: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.4.2");
/// id-alg-ml-kem-1024 (RFC 9935).
pub const ML_KEM_1024: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.4.3");
/// id-ml-dsa-44 (RFC 9881).
pub const ML_DSA_44: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.17");
/// id-ml-dsa-65 (RFC 9881).
pub const ML_DSA_65: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.18");
/// id-ml-dsa-87 (RFC 9881).
pub const ML_DSA_87: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.19");
/// id-slh-dsa-sha2-128s (RFC 9909).
pub const SLH_DSA_SHA2_128S: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.20");
/// id-slh-dsa-sha2-128f (RFC 9909).
pub const SLH_DSA_SHA2_128F: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.21");
/// id-slh-dsa-sha2-192s (RFC 9909).
pub const SLH_DSA_SHA2_192S: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.22");
/// id-slh-dsa-sha2-192f (RFC 9909).
pub const SLH_DSA_SHA2_192F: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.23");
/// id-slh-dsa-sha2-256s (RFC 9909).
pub const SLH_DSA_SHA2_256S: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.24");
/// id-slh-dsa-sha2-256f (RFC 9909).
pub const SLH_DSA_SHA2_256F: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.25");
/// id-slh-dsa-shake-128s (RFC 9909).
pub const SLH_DSA_SHAKE_128S: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.26");
/// id-slh-dsa-shake-128f (RFC 9909).
pub const SLH_DSA_SHAKE_128F: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.27");
/// id-slh-dsa-shake-192s (RFC 9909).
pub const SLH_DSA_SHAKE_192S: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.28");
/// id-slh-dsa-shake-192f (RFC 9909).
pub const SLH_DSA_SHAKE_192F: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.29");
/// id-slh-dsa-shake-256s (RFC 9909).
pub const SLH_DSA_SHAKE_256S: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.30");
/// id-slh-dsa-shake-256f (RFC 9909).
pub const SLH_DSA_SHAKE_256F: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.31");
/// X-Wing (draft-connolly-cfrg-xwing-kem-06, section 5).
pub const X_WING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.62253.25722");
