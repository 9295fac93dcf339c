//! PEM decoding (public keys, certificates, private keys) of untrusted text.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = qubesec_core::PublicKey::from_pem(data);
    let _ = qubesec_core::PrivateKey::from_pem(data);
});
