use qubesec_core::{Error, HashAlgorithm, kdf};

use crate::common::{Tally, groups, hx, load, valid};

#[test]
fn wycheproof_hkdf() {
    for (name, hash) in
        [("sha256", HashAlgorithm::Sha256), ("sha384", HashAlgorithm::Sha384), ("sha512", HashAlgorithm::Sha512)]
    {
        let file = format!("wycheproof/hkdf_{name}_test.json");
        let mut tally = Tally::new(&file);
        for (_, t) in groups(&load(&file)) {
            let size = usize::try_from(t["size"].as_u64().unwrap()).unwrap();
            let outcome = kdf::derive(hash, &hx(t, "ikm"), &hx(t, "salt"), &hx(t, "info"), size);
            let ok = match (valid(t), &outcome) {
                (true, Ok(okm)) => **okm == hx(t, "okm"),
                (false, Err(Error::KdfLength { .. })) => true,
                _ => false,
            };
            tally.check(&t["tcId"], ok, || format!("expected {} ({})", t["result"], t["comment"]));
        }
        tally.finish();
    }
}

/// RFC 5869 Appendix A, SHA-256 cases, through the public API (extract, expand, one-shot).
/// The SHA-1 cases run against the same internal code in `kdf`'s unit tests.
#[test]
fn rfc5869_sha256() {
    let file = "rfc5869/hkdf.json";
    let mut tally = Tally::new(file);
    for t in load(file)["tests"].as_array().unwrap() {
        if t["hash"] != "SHA-256" {
            continue;
        }
        let len = usize::try_from(t["L"].as_u64().unwrap()).unwrap();
        let prk = kdf::extract(HashAlgorithm::Sha256, &hx(t, "salt"), &hx(t, "ikm"));
        let okm = kdf::expand(&prk, &hx(t, "info"), len).unwrap();
        let one_shot = kdf::derive(HashAlgorithm::Sha256, &hx(t, "ikm"), &hx(t, "salt"), &hx(t, "info"), len).unwrap();
        let ok = prk.as_bytes() == hx(t, "prk") && *okm == hx(t, "okm") && *one_shot == hx(t, "okm");
        tally.check(&t["tcId"], ok, || "PRK/OKM mismatch".into());
    }
    tally.finish();
}
