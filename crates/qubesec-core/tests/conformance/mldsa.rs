use qubesec_core::{PrivateKey, PublicKey, SignatureAlgorithm, SigningKey, VerifyingKey, hazmat};
use serde_json::Value;

use crate::common::{Tally, groups, has, hx, load, valid};

fn param(g: &Value) -> SignatureAlgorithm {
    g["parameterSet"].as_str().expect("parameterSet").parse().expect("known parameter set")
}

const SETS: [(&str, SignatureAlgorithm); 3] =
    [("44", SignatureAlgorithm::MlDsa44), ("65", SignatureAlgorithm::MlDsa65), ("87", SignatureAlgorithm::MlDsa87)];

#[test]
fn acvp_keygen() {
    let file = "acvp/ML-DSA-keyGen-FIPS204/internalProjection.json";
    let mut tally = Tally::new(file);
    for (g, t) in groups(&load(file)) {
        let key = SigningKey::from_seed(param(g), &hx(t, "seed")).unwrap();
        let ok = key.verifying_key().unwrap().as_bytes() == hx(t, "pk") && key.expanded_key() == hx(t, "sk");
        tally.check(&t["tcId"], ok, || "pk/sk mismatch".into());
    }
    tally.finish();
}

/// Internal interface (no context), deterministic and hedged groups.
#[test]
fn acvp_siggen_internal() {
    let file = "acvp/ML-DSA-sigGen-FIPS204/internalProjection.json";
    let mut tally = Tally::new(file);
    for (g, t) in groups(&load(file)) {
        let key = SigningKey::from_expanded(param(g), &hx(t, "sk"), None).unwrap();
        let mut rnd = [0u8; 32];
        if has(t, "rnd") {
            rnd.copy_from_slice(&hx(t, "rnd"));
        }
        let sig = hazmat::ml_dsa_sign_internal(&key, &hx(t, "message"), &rnd).unwrap();
        tally.check(&t["tcId"], sig == hx(t, "signature"), || "signature mismatch".into());
    }
    tally.finish();
}

#[test]
fn acvp_sigver_internal() {
    let file = "acvp/ML-DSA-sigVer-FIPS204/internalProjection.json";
    let mut tally = Tally::new(file);
    for (g, t) in groups(&load(file)) {
        let pk = VerifyingKey::from_bytes(param(g), &hx(g, "pk")).unwrap();
        let result = hazmat::ml_dsa_verify_internal(&pk, &hx(t, "message"), &hx(t, "signature"));
        let expected = t["testPassed"].as_bool().unwrap();
        tally.check(&t["tcId"], result.is_ok() == expected, || format!("expected {expected} ({})", t["reason"]));
    }
    tally.finish();
}

/// Signs one Wycheproof case with `key`, returning the signature or the error.
fn sign_case(key: &SigningKey, t: &Value) -> qubesec_core::Result<Vec<u8>> {
    let rnd = has(t, "rnd").then(|| hx(t, "rnd"));
    key.sign_with_randomness(&hx(t, "msg"), &hx(t, "ctx"), rnd.as_deref()).map(|s| s.into_bytes())
}

fn sign_file(file: &str, alg: SignatureAlgorithm, load_key: impl Fn(&Value) -> qubesec_core::Result<SigningKey>) {
    let mut tally = Tally::new(file);
    for (g, t) in groups(&load(file)) {
        if !has(t, "msg") {
            // Sign_internal from an externally computed mu: an interface this crate does not offer.
            tally.not_applicable(&t["tcId"], "external mu");
            continue;
        }
        let outcome = load_key(g).and_then(|key| {
            if key.verifying_key()?.as_bytes() != hx(g, "publicKey") {
                return Err(qubesec_core::Error::InconsistentPublicKey);
            }
            let sig = sign_case(&key, t)?;
            key.verifying_key()?.verify_bytes(&hx(t, "msg"), &hx(t, "ctx"), &sig)?;
            Ok(sig)
        });
        let ok = match (valid(t), &outcome) {
            (true, Ok(sig)) => *sig == hx(t, "sig"),
            (false, Err(_)) => true,
            _ => false,
        };
        tally.check(&t["tcId"], ok, || {
            format!("{alg}: expected {} ({}), got {:?}", t["result"], t["comment"], outcome.as_ref().err())
        });
    }
    tally.finish();
}

#[test]
fn wycheproof_sign_from_seed() {
    for (n, alg) in SETS {
        sign_file(&format!("wycheproof/mldsa_{n}_sign_seed_test.json"), alg, |g| {
            // Our seed-only PKCS#8 must be byte-identical to the file's (where it has one), and parse back.
            let ours = PrivateKey::from(SigningKey::from_seed(alg, &hx(g, "privateSeed"))?).to_pkcs8_der()?;
            if has(g, "privateKeyPkcs8") {
                assert_eq!(*ours, hx(g, "privateKeyPkcs8"), "{alg}: seed-form PKCS#8 differs");
            }
            PrivateKey::from_pkcs8_der(&ours)?.into_signature()
        });
    }
}

#[test]
fn wycheproof_sign_from_expanded_key() {
    for (n, alg) in SETS {
        sign_file(&format!("wycheproof/mldsa_{n}_sign_noseed_test.json"), alg, |g| {
            SigningKey::from_expanded(alg, &hx(g, "privateKey"), Some(&hx(g, "publicKey")))
        });
    }
}

#[test]
fn wycheproof_verify() {
    for (n, alg) in SETS {
        let file = format!("wycheproof/mldsa_{n}_verify_test.json");
        let mut tally = Tally::new(&file);
        for (g, t) in groups(&load(&file)) {
            let outcome = VerifyingKey::from_bytes(alg, &hx(g, "publicKey")).and_then(|pk| {
                // Our SPKI encoding must match the file's DER byte for byte.
                let der = PublicKey::from(pk.clone()).to_spki_der()?;
                assert_eq!(der, hx(g, "publicKeyDer"), "{alg}: SPKI differs");
                assert_eq!(PublicKey::from_spki_der(&der)?.into_signature()?, pk);
                pk.verify_bytes(&hx(t, "msg"), &hx(t, "ctx"), &hx(t, "sig"))
            });
            let ok = valid(t) == outcome.is_ok();
            tally.check(&t["tcId"], ok, || format!("expected {} ({}), got {outcome:?}", t["result"], t["comment"]));
        }
        tally.finish();
    }
}
