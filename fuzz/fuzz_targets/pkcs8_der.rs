//! PKCS#8 / OneAsymmetricKey decoding of untrusted DER.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(key) = qubesec_core::PrivateKey::from_pkcs8_der(data) {
        // Whatever decodes must re-encode and decode to the same key.
        if let Ok(der) = key.to_pkcs8_der_form(qubesec_core::PrivateKeyForm::Expanded) {
            assert_eq!(qubesec_core::PrivateKey::from_pkcs8_der(&der).ok().as_ref(), Some(&key));
        }
    }
});
