//! Raw key, ciphertext and signature parsing plus use, for every algorithm.
#![no_main]
use qubesec_core::{KemAlgorithm, KemCiphertext, KemPrivateKey, KemPublicKey, SignatureAlgorithm, VerifyingKey};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let kem = KemAlgorithm::ALL[usize::from(selector) % KemAlgorithm::ALL.len()];
    if let Ok(pk) = KemPublicKey::from_bytes(kem, rest) {
        let _ = pk.encapsulate_deterministic(&[7u8; 64][..kem.encaps_randomness_len()]);
    }
    let _ = KemPrivateKey::from_expanded(kem, rest);
    if let (Ok(key), Ok(ct)) = (KemPrivateKey::from_seed(kem, &[1u8; 64][..kem.seed_len()]), KemCiphertext::from_bytes(kem, rest)) {
        let _ = key.decapsulate(&ct);
    }
    let sig = SignatureAlgorithm::ALL[usize::from(selector) % 3];
    if rest.len() > sig.public_key_len() {
        let (pk, signature) = rest.split_at(sig.public_key_len());
        if let Ok(vk) = VerifyingKey::from_bytes(sig, pk) {
            let _ = vk.verify_bytes(b"m", b"", signature);
        }
    }
});
