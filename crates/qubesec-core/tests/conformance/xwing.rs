use qubesec_core::{KemAlgorithm, KemCiphertext, KemPrivateKey, PrivateKey};

use crate::common::{Tally, hx, load};

#[test]
fn draft_06_vectors() {
    let file = "xwing/test-vectors.json";
    let mut tally = Tally::new(file);
    for (i, t) in load(file).as_array().unwrap().iter().enumerate() {
        let key = KemPrivateKey::from_seed(KemAlgorithm::XWing, &hx(t, "seed")).unwrap();
        let (ct, ss) = key.public_key().encapsulate_deterministic(&hx(t, "eseed")).unwrap();
        let decapsulated =
            key.decapsulate(&KemCiphertext::from_bytes(KemAlgorithm::XWing, &hx(t, "ct")).unwrap()).unwrap();
        // The stored private key is the seed, and round-trips through PKCS#8.
        let reloaded = PrivateKey::from_pkcs8_der(
            &PrivateKey::from(KemPrivateKey::from_seed(KemAlgorithm::XWing, &hx(t, "sk")).unwrap())
                .to_pkcs8_der()
                .unwrap(),
        )
        .unwrap()
        .into_kem()
        .unwrap();
        let ok = key.public_key().as_bytes() == hx(t, "pk")
            && ct.as_bytes() == hx(t, "ct")
            && ss.as_bytes()[..] == hx(t, "ss")[..]
            && decapsulated == ss
            && reloaded == key;
        tally.check(i, ok, || "X-Wing mismatch".into());
    }
    tally.finish();
}
