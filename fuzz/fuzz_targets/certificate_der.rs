//! Extracting the public key of an untrusted DER certificate.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = qubesec_core::PublicKey::from_certificate_der(data);
});
