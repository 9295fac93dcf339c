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
            tally.not_applicable(id, "composite algorithm: X.509 issue");
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
