//! SubjectPublicKeyInfo decoding of untrusted DER.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(key) = qubesec_core::PublicKey::from_spki_der(data) {
        let der = key.to_spki_der().expect("re-encode");
        assert_eq!(qubesec_core::PublicKey::from_spki_der(&der).ok(), Some(key));
    }
});
