//! The pure ML-DSA cases of the LAMPS composite-signature vectors: keys,
//! certificates and signatures produced by another implementation.

use base64::Engine;
use qubesec_core::{PrivateKey, PublicKey};

use crate::common::{Tally, load};

fn b64(v: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn pure_ml_dsa_cases() {
    let file = "composite-sigs/testvectors.json";
    let doc = load(file);
    let (m, ctx) = (b64(&doc["m"]), b64(&doc["ctx"]));
    let mut tally = Tally::new(file);
    for t in doc["tests"].as_array().unwrap() {
        let id = t["tcId"].as_str().unwrap();
        if !id.starts_with("id-ML-DSA-") {
            continue;
        }
        let from_cert = PublicKey::from_certificate_der(&b64(&t["x5c"])).unwrap().into_signature().unwrap();
        let key = PrivateKey::from_pkcs8_der(&b64(&t["sk_pkcs8"])).unwrap().into_signature().unwrap();
        let ok = from_cert.as_bytes() == b64(&t["pk"])
            && key.verifying_key().unwrap() == &from_cert
            && from_cert.verify_bytes(&m, &[], &b64(&t["s"])).is_ok()
            && from_cert.verify_bytes(&m, &ctx, &b64(&t["sWithContext"])).is_ok()
            && from_cert.verify_bytes(&m, &[], &b64(&t["sWithContext"])).is_err();
        tally.check(id, ok, || "key or signature mismatch".into());
    }
    tally.finish();
}

/// The composite cases for the algorithms we implement (ML-DSA with P-256 /
/// P-384 ECDSA); the RSA, EdDSA, brainpool and P-521 pairings are reported
/// as not applicable.
#[test]
fn composite_ml_dsa_ecdsa_cases() {
    use qubesec_core::sig::composite::{CompositeAlgorithm, CompositeSigningKey, CompositeVerifyingKey};
    use qubesec_core::x509::Certificate;
    let file = "composite-sigs/testvectors.json (composite)";
    let doc = load("composite-sigs/testvectors.json");
    let (m, ctx) = (b64(&doc["m"]), b64(&doc["ctx"]));
    let mut tally = Tally::new(file);
    for t in doc["tests"].as_array().unwrap() {
        let id = t["tcId"].as_str().unwrap();
        if id.starts_with("id-ML-DSA-") {
            continue;
        }
        let Ok(alg) = id.parse::<CompositeAlgorithm>() else {
            tally.not_applicable(id, "traditional component not implemented (RSA, EdDSA, brainpool, P-521)");
            continue;
        };
        let pk = CompositeVerifyingKey::from_bytes(alg, &b64(&t["pk"])).unwrap();
        let sk = CompositeSigningKey::from_bytes(alg, &b64(&t["sk"])).unwrap();
        let from_pkcs8 = CompositeSigningKey::from_pkcs8_der(&b64(&t["sk_pkcs8"])).unwrap();
        // Our own encodings must reproduce theirs byte for byte.
        let same_encodings = sk.to_bytes().unwrap().as_slice() == b64(&t["sk"]).as_slice()
            && from_pkcs8.to_pkcs8_der().unwrap().as_slice() == b64(&t["sk_pkcs8"]).as_slice();
        let cert = Certificate::from_der(&b64(&t["x5c"])).unwrap();
        let ours = sk.sign(&m, &ctx).unwrap();
        let ok = sk.verifying_key() == &pk
            && from_pkcs8.verifying_key() == &pk
            && same_encodings
            && pk.verify(&m, &[], &b64(&t["s"])).is_ok()
            && pk.verify(&m, &ctx, &b64(&t["sWithContext"])).is_ok()
            && pk.verify(&m, &[], &b64(&t["sWithContext"])).is_err()
            && pk.verify(&m, &ctx, &ours).is_ok()
            && cert.public_key_spki_der() == pk.to_spki_der().unwrap()
            && cert.verify_signed_by(&cert).is_ok();
        tally.check(id, ok, || "key, encoding, certificate or signature mismatch".into());
    }
    tally.finish();
}

/// A certificate signed with an algorithm we do not implement (ML-DSA-44 +
/// RSA-PSS) parses, and only verification reports the algorithm.
#[test]
fn unknown_algorithm_parses_and_fails_verification_only() {
    use qubesec_core::x509::{CertificateParams, ChainErrorKind, verify_chain};
    use qubesec_core::{SignatureAlgorithm, SigningKey};
    let doc = load("composite-sigs/testvectors.json");
    let case = doc["tests"].as_array().unwrap().iter().find(|t| t["tcId"] == "id-MLDSA44-RSA2048-PSS-SHA256").unwrap();
    let cert = qubesec_core::x509::Certificate::from_der(&b64(&case["x5c"])).unwrap();
    assert_eq!(cert.signature_algorithm().to_string(), "1.3.6.1.5.5.7.6.37");
    assert_eq!(cert.subject(), "CN=id-MLDSA44-RSA2048-PSS-SHA256,OU=LAMPS,O=IETF");
    assert!(matches!(cert.public_key(), Err(qubesec_core::Error::UnsupportedAlgorithm { .. })));
    assert!(matches!(cert.verify_signed_by(&cert), Err(qubesec_core::Error::UnsupportedAlgorithm { .. })));
    // An anchor with the issuer's name but our algorithm: the path stops at the unknown signature algorithm.
    let key = SigningKey::generate(SignatureAlgorithm::MlDsa44).unwrap();
    let anchor = CertificateParams::new(cert.issuer().parse().unwrap()).ca(None).self_signed(&key).unwrap();
    let err = verify_chain(&cert, &[], &[anchor], std::time::SystemTime::now()).unwrap_err();
    assert_eq!(err.kind, ChainErrorKind::UnsupportedAlgorithm { oid: "1.3.6.1.5.5.7.6.37".into() });
    assert!(err.to_string().contains("unsupported signature algorithm 1.3.6.1.5.5.7.6.37"), "{err}");
}
