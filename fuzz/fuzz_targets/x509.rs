//! Parsing untrusted certificates, CSRs and RFC 4514 names, then every accessor and a
//! self-verification: nothing may panic, whatever the bytes.
#![no_main]
use qubesec_core::x509::{Certificate, CertificateRequest, DistinguishedName, verify_chain};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = Certificate::from_der(data) {
        let _ = (cert.subject(), cert.issuer(), cert.serial_hex(), cert.not_before(), cert.not_after());
        let _ = (cert.subject_name(), cert.public_key(), cert.composite_public_key(), cert.extension_oids());
        let _ = (cert.basic_constraints(), cert.key_usage(), cert.extended_key_usage(), cert.subject_alt_names());
        let _ = (cert.subject_key_id(), cert.authority_key_id(), cert.matches_host("a.example"), cert.matches_host("::1"));
        let _ = cert.verify_signed_by(&cert);
        let _ = verify_chain(&cert, &[], std::slice::from_ref(&cert), std::time::SystemTime::now());
        // What parses must re-encode to the same bytes (we keep the DER as given).
        assert_eq!(cert.to_der(), data);
        if let Ok(pem) = cert.to_pem() {
            assert_eq!(Certificate::from_pem(pem.as_bytes()).map(|c| c.to_der().to_vec()).ok().as_deref(), Some(data));
        }
    }
    if let Ok(csr) = CertificateRequest::from_der(data) {
        let _ = (csr.subject(), csr.subject_name(), csr.verify(), csr.subject_alt_names(), csr.extended_key_usage());
        let _ = csr.to_params(Default::default());
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(dn) = text.parse::<DistinguishedName>()
    {
        // Printing and re-parsing a parsed name gives the same name.
        assert_eq!(dn.to_string().parse::<DistinguishedName>().ok(), Some(dn.clone()));
        let _ = dn.to_der();
    }
});
