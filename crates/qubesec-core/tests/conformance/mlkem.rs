use qubesec_core::{KemAlgorithm, KemCiphertext, KemPrivateKey, KemPublicKey};
use serde_json::Value;

use crate::common::{Tally, groups, has, hx, load, valid};

fn param(g: &Value) -> KemAlgorithm {
    g["parameterSet"].as_str().expect("parameterSet").parse().expect("known parameter set")
}

const SETS: [(&str, KemAlgorithm); 3] =
    [("512", KemAlgorithm::MlKem512), ("768", KemAlgorithm::MlKem768), ("1024", KemAlgorithm::MlKem1024)];

#[test]
fn acvp_keygen() {
    let file = "acvp/ML-KEM-keyGen-FIPS203/internalProjection.json";
    let mut tally = Tally::new(file);
    for (g, t) in groups(&load(file)) {
        let seed = [hx(t, "d"), hx(t, "z")].concat();
        let key = KemPrivateKey::from_seed(param(g), &seed).unwrap();
        let ok = key.public_key().as_bytes() == hx(t, "ek") && key.expanded_key() == hx(t, "dk");
        tally.check(&t["tcId"], ok, || "ek/dk mismatch".into());
    }
    tally.finish();
}

#[test]
fn acvp_encap_decap() {
    let file = "acvp/ML-KEM-encapDecap-FIPS203/internalProjection.json";
    let mut tally = Tally::new(file);
    for (g, t) in groups(&load(file)) {
        let alg = param(g);
        let field = |name: &str| {
            if has(t, name) { hx(t, name) } else { hx(g, name) }
        };
        let (c, k) = (field("c"), field("k"));
        let ok = match g["function"].as_str() {
            Some("encapsulation") => {
                let pk = KemPublicKey::from_bytes(alg, &field("ek")).unwrap();
                let (ct, ss) = pk.encapsulate_deterministic(&field("m")).unwrap();
                ct.as_bytes() == c && ss.as_bytes()[..] == k[..]
            }
            Some("decapsulation") => {
                let key = KemPrivateKey::from_expanded(alg, &field("dk")).unwrap();
                let ss = key.decapsulate(&KemCiphertext::from_bytes(alg, &c).unwrap()).unwrap();
                ss.as_bytes()[..] == k[..]
            }
            other => panic!("unknown function {other:?}"),
        };
        tally.check(&t["tcId"], ok, || format!("{} mismatch", g["function"]));
    }
    tally.finish();
}

/// MLKEMTest: KeyGen from seed, then Decaps; invalid = wrong seed or ciphertext length.
#[test]
fn wycheproof_decaps_from_seed() {
    for (n, alg) in SETS {
        let file = format!("wycheproof/mlkem_{n}_test.json");
        let mut tally = Tally::new(&file);
        for (_, t) in groups(&load(&file)) {
            let outcome = KemPrivateKey::from_seed(alg, &hx(t, "seed")).and_then(|key| {
                let ct = KemCiphertext::from_bytes(alg, &hx(t, "c"))?;
                Ok((key.public_key().as_bytes().to_vec(), key.decapsulate(&ct)?))
            });
            let ok = match (valid(t), &outcome) {
                (true, Ok((ek, ss))) => (!has(t, "ek") || *ek == hx(t, "ek")) && ss.as_bytes()[..] == hx(t, "K")[..],
                (false, Err(_)) => true,
                _ => false,
            };
            tally.check(&t["tcId"], ok, || format!("expected {}, got {:?}", t["result"], outcome.as_ref().err()));
        }
        tally.finish();
    }
}

/// MLKEMEncapsTest: invalid = encapsulation key that fails the modulus check.
#[test]
fn wycheproof_encaps() {
    for (n, alg) in SETS {
        let file = format!("wycheproof/mlkem_{n}_encaps_test.json");
        let mut tally = Tally::new(&file);
        for (_, t) in groups(&load(&file)) {
            let outcome =
                KemPublicKey::from_bytes(alg, &hx(t, "ek")).and_then(|pk| pk.encapsulate_deterministic(&hx(t, "m")));
            let ok = match (valid(t), &outcome) {
                (true, Ok((ct, ss))) => ct.as_bytes() == hx(t, "c") && ss.as_bytes()[..] == hx(t, "K")[..],
                (false, Err(_)) => true,
                _ => false,
            };
            tally.check(&t["tcId"], ok, || format!("expected {}, got {:?}", t["result"], outcome.as_ref().err()));
        }
        tally.finish();
    }
}

#[test]
fn wycheproof_keygen_seed() {
    for (n, alg) in SETS {
        let file = format!("wycheproof/mlkem_{n}_keygen_seed_test.json");
        let mut tally = Tally::new(&file);
        for (_, t) in groups(&load(&file)) {
            let outcome = KemPrivateKey::from_seed(alg, &hx(t, "seed"));
            let ok = match (valid(t), &outcome) {
                (true, Ok(k)) => k.public_key().as_bytes() == hx(t, "ek") && k.expanded_key() == hx(t, "dk"),
                (false, Err(_)) => true,
                _ => false,
            };
            tally.check(&t["tcId"], ok, || format!("expected {}", t["result"]));
        }
        tally.finish();
    }
}

/// MLKEMDecapsValidationTest: a malformed expanded key must be rejected on load.
#[test]
fn wycheproof_semi_expanded_decaps() {
    for (n, alg) in SETS {
        let file = format!("wycheproof/mlkem_{n}_semi_expanded_decaps_test.json");
        let mut tally = Tally::new(&file);
        for (_, t) in groups(&load(&file)) {
            let outcome = KemPrivateKey::from_expanded(alg, &hx(t, "dk")).and_then(|key| {
                let ct = KemCiphertext::from_bytes(alg, &hx(t, "c"))?;
                key.decapsulate(&ct)
            });
            let ok = match (valid(t), &outcome) {
                (true, Ok(ss)) => ss.as_bytes()[..] == hx(t, "K")[..],
                (false, Err(_)) => true,
                _ => false,
            };
            tally.check(&t["tcId"], ok, || format!("expected {} ({})", t["result"], t["comment"]));
        }
        tally.finish();
    }
}
