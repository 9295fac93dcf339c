//! Replication bundles opened with a fixed ML-KEM-1024 identity: never a
//! panic, and nothing forged opens.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use qubesec_core::{Algorithm, KemAlgorithm, PrivateKey};

fn identity() -> &'static [u8] {
    static PEM: OnceLock<Vec<u8>> = OnceLock::new();
    PEM.get_or_init(|| {
        let sk = PrivateKey::generate(Algorithm::Kem(KemAlgorithm::MlKem1024)).expect("keygen");
        sk.to_pkcs8_pem().expect("pem").as_bytes().to_vec()
    })
}

fuzz_target!(|data: &[u8]| {
    assert!(qubesec_kms::bundle::import(data, identity()).is_err(), "forged bundle opened");
});
