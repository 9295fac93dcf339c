use qubesec_core::{SignatureAlgorithm, SigningKey, VerifyingKey, hazmat};
use serde_json::Value;

use crate::common::{Tally, groups, hx, load};

fn param(g: &Value) -> SignatureAlgorithm {
    g["parameterSet"].as_str().expect("parameterSet").parse().expect("known parameter set")
}

#[test]
fn acvp_keygen() {
    with_big_stack(keygen);
}

fn keygen() {
    let file = "acvp/SLH-DSA-keyGen-FIPS205/internalProjection.json";
    let mut tally = Tally::new(file);
    for (g, t) in groups(&load(file)) {
        let alg = param(g);
        let key = SigningKey::from_slh_dsa_seeds(alg, &hx(t, "skSeed"), &hx(t, "skPrf"), &hx(t, "pkSeed")).unwrap();
        let ok = key.verifying_key().unwrap().as_bytes() == hx(t, "pk") && key.expanded_key() == hx(t, "sk");
        // The expanded key must load back (its PK.root is recomputed and checked).
        let reloaded = SigningKey::from_expanded(alg, &hx(t, "sk"), None).unwrap();
        tally.check(&t["tcId"], ok && reloaded == key, || format!("{alg}: pk/sk mismatch"));
    }
    tally.finish();
}

/// SLH-DSA-256f signatures are 49 KiB and `slh-dsa` keeps them on the stack;
/// run on a thread with room for them (see docs/decisions.md).
fn with_big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(32 << 20).spawn(f).unwrap().join().unwrap();
}

#[test]
fn acvp_sigver_internal() {
    with_big_stack(sigver_internal);
}

fn sigver_internal() {
    let file = "acvp/SLH-DSA-sigVer-FIPS205/internalProjection.reduced.json";
    let mut tally = Tally::new(file);
    for (g, t) in groups(&load(file)) {
        let alg = param(g);
        let pk = VerifyingKey::from_bytes(alg, &hx(t, "pk")).unwrap();
        let result = hazmat::slh_dsa_verify_internal(&pk, &hx(t, "message"), &hx(t, "signature"));
        let expected = t["testPassed"].as_bool().unwrap();
        tally.check(&t["tcId"], result.is_ok() == expected, || format!("{alg}: expected {expected} ({})", t["reason"]));
    }
    tally.finish();
}
