//! Replication bundles checked against a fixed trusted signer and recipient
//! key: never a panic, and nothing forged verifies.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use qubesec_core::{Algorithm, KemAlgorithm, KemPrivateKey, PrivateKey};
use qubesec_kms::bundle::{TrustedSigners, verify};
use qubesec_kms::keystore::NodeIdentity;

fn fixtures() -> &'static (KemPrivateKey, TrustedSigners) {
    static F: OnceLock<(KemPrivateKey, TrustedSigners)> = OnceLock::new();
    F.get_or_init(|| {
        let kem = PrivateKey::generate(Algorithm::Kem(KemAlgorithm::MlKem1024)).expect("keygen");
        let mut trusted = TrustedSigners::new();
        let id = NodeIdentity::generate().expect("identity");
        trusted.add(id.fingerprint().to_string().as_bytes()).expect("fingerprint");
        (kem.into_kem().expect("kem"), trusted)
    })
}

fuzz_target!(|data: &[u8]| {
    let (kem, trusted) = fixtures();
    assert!(verify(data, trusted, kem).is_err(), "forged bundle verified");
});
