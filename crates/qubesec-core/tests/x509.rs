//! X.509: building, parsing, CSRs and path validation, with one test per rejection reason.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use qubesec_core::sig::composite::{CompositeAlgorithm, CompositeSigningKey};
use qubesec_core::x509::Certificate;
use qubesec_core::x509::{
    CertificateParams, CertificateRequest, ChainErrorKind, ChainOptions, CsrPolicy, DistinguishedName,
    ExtendedKeyUsage, KeyUsage, NameAttribute, SubjectAltName, SubjectPublicKey, verify_chain, verify_chain_with,
};
use qubesec_core::{Error, KemAlgorithm, KemPrivateKey, PublicKey, SignatureAlgorithm, SigningKey};

fn key(alg: SignatureAlgorithm) -> SigningKey {
    SigningKey::generate(alg).unwrap()
}

fn subject_key(k: &SigningKey) -> SubjectPublicKey {
    PublicKey::from(k.verifying_key().unwrap().clone()).try_into().unwrap()
}

fn dn(s: &str) -> DistinguishedName {
    s.parse().unwrap()
}

struct Pki {
    root_key: SigningKey,
    root: Certificate,
    int_key: SigningKey,
    int: Certificate,
    leaf: Certificate,
}

fn pki() -> Pki {
    let root_key = key(SignatureAlgorithm::MlDsa87);
    let root = CertificateParams::new(dn("CN=Root,O=QubeSec")).ca(Some(1)).self_signed(&root_key).unwrap();
    let int_key = key(SignatureAlgorithm::MlDsa65);
    let int = CertificateParams::new(dn("CN=Intermediate,O=QubeSec"))
        .ca(Some(0))
        .issue(&subject_key(&int_key), &root, &root_key)
        .unwrap();
    let leaf_key = key(SignatureAlgorithm::MlDsa44);
    let mut params = CertificateParams::new(dn("CN=api.example.com"));
    params.subject_alt_names =
        vec![SubjectAltName::dns("api.example.com").unwrap(), SubjectAltName::Ip("10.0.0.1".parse().unwrap())];
    params.extended_key_usage = vec![ExtendedKeyUsage::ServerAuth];
    let leaf = params.issue(&subject_key(&leaf_key), &int, &int_key).unwrap();
    Pki { root_key, root, int_key, int, leaf }
}

fn now() -> SystemTime {
    SystemTime::now()
}

#[test]
fn good_chain_verifies_and_reads_back() {
    let p = pki();
    let path = verify_chain(&p.leaf, std::slice::from_ref(&p.int), std::slice::from_ref(&p.root), now()).unwrap();
    assert_eq!(
        path.iter().map(Certificate::subject).collect::<Vec<_>>(),
        ["CN=api.example.com", "CN=Intermediate,O=QubeSec", "CN=Root,O=QubeSec"]
    );
    // The root alone is a valid anchor for itself.
    assert_eq!(verify_chain(&p.root, &[], std::slice::from_ref(&p.root), now()).unwrap().len(), 1);

    let leaf = &p.leaf;
    assert_eq!(leaf.issuer(), "CN=Intermediate,O=QubeSec");
    assert_eq!(leaf.basic_constraints().unwrap().map(|b| (b.ca, b.critical)), Some((false, true)));
    assert_eq!(leaf.key_usage().unwrap(), Some(vec![KeyUsage::DigitalSignature]));
    assert_eq!(leaf.extended_key_usage().unwrap(), Some(vec![ExtendedKeyUsage::ServerAuth]));
    assert_eq!(leaf.authority_key_id().unwrap(), p.int.subject_key_id().unwrap());
    assert_eq!(p.int.basic_constraints().unwrap().map(|b| b.path_len), Some(Some(0)));
    assert!(leaf.matches_host("API.EXAMPLE.COM") && leaf.matches_host("10.0.0.1"));
    assert!(!leaf.matches_host("example.com") && !leaf.matches_host("10.0.0.2"));
    assert_eq!(leaf.public_key().unwrap().algorithm().name(), "ML-DSA-44");
    let serial = leaf.serial_hex();
    // At most 20 octets, positive, minimally encoded: the first octet is 0x01..=0x7f (hex "0b..." is fine).
    let first = u8::from_str_radix(&serial[..2], 16).unwrap();
    assert!(serial.len() <= 40 && serial.len().is_multiple_of(2) && (0x01..0x80).contains(&first), "serial {serial}");
    let back = leaf.not_before();
    assert!(back <= now() - Duration::from_secs(60), "notBefore is back-dated");
    // PEM chains round-trip in order.
    let pem = Certificate::chain_to_pem(&path).unwrap();
    assert_eq!(Certificate::chain_from_pem(pem.as_bytes()).unwrap(), path);
}

#[test]
fn slh_dsa_and_composite_issuers() {
    let slh = key(SignatureAlgorithm::SlhDsaSha2_128f);
    let root = CertificateParams::new(dn("CN=SLH Root")).ca(None).self_signed(&slh).unwrap();
    let leaf_key = key(SignatureAlgorithm::MlDsa65);
    let leaf = CertificateParams::new(dn("CN=leaf")).issue(&subject_key(&leaf_key), &root, &slh).unwrap();
    verify_chain(&leaf, &[], &[root], now()).unwrap();

    for alg in CompositeAlgorithm::ALL {
        let ca_key = CompositeSigningKey::generate(alg).unwrap();
        let ca = CertificateParams::new(dn("CN=Hybrid Root")).ca(None).self_signed(&ca_key).unwrap();
        assert_eq!(ca.composite_public_key().unwrap(), *ca_key.verifying_key());
        let hybrid_leaf_key = CompositeSigningKey::generate(alg).unwrap();
        let leaf = CertificateParams::new(dn("CN=hybrid leaf"))
            .issue(&hybrid_leaf_key.verifying_key().try_into().unwrap(), &ca, &ca_key)
            .unwrap();
        verify_chain(&leaf, &[], std::slice::from_ref(&ca), now()).unwrap();
        assert_eq!(leaf.signature_algorithm(), alg.oid());
    }
}

#[test]
fn kem_subject_keys_get_key_encipherment_only() {
    let p = pki();
    let kem = KemPrivateKey::generate(KemAlgorithm::MlKem768).unwrap();
    let kem_pub: SubjectPublicKey = PublicKey::from(kem.public_key().clone()).try_into().unwrap();
    let cert = CertificateParams::new(dn("CN=kem")).issue(&kem_pub, &p.int, &p.int_key).unwrap();
    assert_eq!(cert.key_usage().unwrap(), Some(vec![KeyUsage::KeyEncipherment]));
    assert_eq!(cert.public_key().unwrap().algorithm().name(), "ML-KEM-768");
    verify_chain(&cert, std::slice::from_ref(&p.int), std::slice::from_ref(&p.root), now()).unwrap();

    let mut sign_usage = CertificateParams::new(dn("CN=kem"));
    sign_usage.key_usage = Some(vec![KeyUsage::DigitalSignature]);
    let err = sign_usage.issue(&kem_pub, &p.int, &p.int_key).unwrap_err().to_string();
    assert!(err.contains("keyEncipherment (RFC 9935)"), "{err}");
    let err =
        CertificateParams::new(dn("CN=kem")).ca(None).issue(&kem_pub, &p.int, &p.int_key).unwrap_err().to_string();
    assert!(err.contains("cannot be a CA"), "{err}");
    let mut encipher = CertificateParams::new(dn("CN=sig"));
    encipher.key_usage = Some(vec![KeyUsage::KeyEncipherment]);
    assert!(encipher.issue(&subject_key(&p.int_key), &p.root, &p.root_key).is_err());
}

#[test]
fn builder_refuses_bad_issuers_and_parameters() {
    let p = pki();
    let other = key(SignatureAlgorithm::MlDsa44);
    let err =
        CertificateParams::new(dn("CN=x")).issue(&subject_key(&other), &p.int, &p.root_key).unwrap_err().to_string();
    assert!(err.contains("does not belong to the issuer"), "{err}");
    let err = CertificateParams::new(dn("CN=x")).issue(&subject_key(&other), &p.leaf, &p.int_key).unwrap_err();
    assert!(matches!(err, Error::InvalidParameters { .. }), "{err}");
    let mut backwards = CertificateParams::new(dn("CN=x"));
    backwards.not_after = backwards.not_before;
    assert!(backwards.self_signed(&other).unwrap_err().to_string().contains("notAfter"));
    assert!(CertificateParams::new(DistinguishedName::new()).self_signed(&other).is_err());
    let mut long_serial = CertificateParams::new(dn("CN=x"));
    long_serial.serial = Some(vec![0x7f; 21]);
    assert!(long_serial.self_signed(&other).unwrap_err().to_string().contains("20 octets"));
}

fn kind(r: Result<Vec<Certificate>, qubesec_core::x509::ChainError>) -> (usize, ChainErrorKind) {
    let e = r.unwrap_err();
    assert!(!e.to_string().is_empty());
    (e.index, e.kind)
}

#[test]
fn wrong_issuer_is_reported() {
    let p = pki();
    // Nobody with the issuer's name.
    let (i, k) = kind(verify_chain(&p.leaf, &[], std::slice::from_ref(&p.root), now()));
    assert_eq!((i, k), (0, ChainErrorKind::IssuerNotFound { issuer: "CN=Intermediate,O=QubeSec".into() }));
    // Same name, different key.
    let impostor_key = key(SignatureAlgorithm::MlDsa65);
    let impostor = CertificateParams::new(dn("CN=Intermediate,O=QubeSec")).ca(None).self_signed(&impostor_key).unwrap();
    assert_eq!(kind(verify_chain(&p.leaf, &[], &[impostor], now())), (0, ChainErrorKind::BadSignature));
}

#[test]
fn validity_window_is_enforced() {
    let p = pki();
    let later = now() + Duration::from_secs(91 * 24 * 3600);
    let (i, k) = kind(verify_chain(&p.leaf, std::slice::from_ref(&p.int), std::slice::from_ref(&p.root), later));
    assert!(i == 0 && matches!(k, ChainErrorKind::Expired { .. }), "{k:?}");
    let earlier = now() - Duration::from_secs(3600);
    let (i, k) = kind(verify_chain(&p.leaf, std::slice::from_ref(&p.int), std::slice::from_ref(&p.root), earlier));
    assert!(i == 0 && matches!(k, ChainErrorKind::NotYetValid { .. }), "{k:?}");
    // An expired intermediate is named as such.
    let mut short = CertificateParams::new(dn("CN=Short CA")).ca(None);
    short.not_after = now() + Duration::from_secs(3600);
    let short_key = key(SignatureAlgorithm::MlDsa44);
    let short_ca = short.issue(&subject_key(&short_key), &p.root, &p.root_key).unwrap();
    let leaf_key = key(SignatureAlgorithm::MlDsa44);
    // (The builder caps a leaf at its issuer's notAfter; hazmat builds one that outlives it.)
    let leaf =
        CertificateParams::new(dn("CN=l")).issue_unchecked(&subject_key(&leaf_key), &short_ca, &short_key).unwrap();
    let (i, k) =
        kind(verify_chain(&leaf, &[short_ca], std::slice::from_ref(&p.root), now() + Duration::from_secs(7200)));
    assert!(i == 1 && matches!(k, ChainErrorKind::Expired { .. }), "the intermediate is the one expired: {i} {k:?}");
}

#[test]
fn issuer_rules_are_enforced() {
    let p = pki();
    let int_name = dn("CN=Intermediate,O=QubeSec");
    // The same key and name, but without the CA flag: the leaf's signature
    // and name chain still match, so only the CA rule can reject it.
    let mut not_ca = CertificateParams::new(int_name.clone());
    not_ca.key_usage = Some(vec![KeyUsage::DigitalSignature]);
    let not_ca = not_ca.issue(&subject_key(&p.int_key), &p.root, &p.root_key).unwrap();
    assert_eq!(
        kind(verify_chain(&p.leaf, &[not_ca], std::slice::from_ref(&p.root), now())),
        (1, ChainErrorKind::NotACa)
    );

    // A CA without keyCertSign (only buildable through hazmat).
    let mut no_sign = CertificateParams::new(int_name).ca(None);
    no_sign.key_usage = Some(vec![KeyUsage::DigitalSignature]);
    let no_sign = no_sign.issue_unchecked(&subject_key(&p.int_key), &p.root, &p.root_key).unwrap();
    assert_eq!(
        kind(verify_chain(&p.leaf, &[no_sign], std::slice::from_ref(&p.root), now())),
        (1, ChainErrorKind::MissingKeyCertSign)
    );

    // pathLen 0 on the root, one intermediate below it.
    let strict_root = CertificateParams::new(dn("CN=Root,O=QubeSec")).ca(Some(0)).self_signed(&p.root_key).unwrap();
    assert_eq!(
        kind(verify_chain(&p.leaf, std::slice::from_ref(&p.int), &[strict_root], now())),
        (2, ChainErrorKind::PathLenExceeded { path_len: 0, intermediates_below: 1 })
    );
}

#[test]
fn issuance_stays_within_the_issuer() {
    let root_key = key(SignatureAlgorithm::MlDsa65);
    let sub_key = key(SignatureAlgorithm::MlDsa44);
    // pathLenConstraint 0: end-entity certificates only.
    let strict = CertificateParams::new(dn("CN=Strict Root")).ca(Some(0)).self_signed(&root_key).unwrap();
    let err = CertificateParams::new(dn("CN=Sub")).ca(None).issue(&subject_key(&sub_key), &strict, &root_key);
    let err = err.unwrap_err().to_string();
    assert!(err.contains("pathLenConstraint 0") && err.contains("may not issue CA"), "{err}");
    CertificateParams::new(dn("CN=leaf")).issue(&subject_key(&sub_key), &strict, &root_key).unwrap();
    // pathLenConstraint 2: a sub-CA asking for 2 is refused; one asking for nothing gets 1.
    let root = CertificateParams::new(dn("CN=Root")).ca(Some(2)).self_signed(&root_key).unwrap();
    let err = CertificateParams::new(dn("CN=Sub")).ca(Some(2)).issue(&subject_key(&sub_key), &root, &root_key);
    assert!(err.unwrap_err().to_string().contains("not below the issuer's pathLenConstraint 2"));
    let sub = CertificateParams::new(dn("CN=Sub")).ca(None).issue(&subject_key(&sub_key), &root, &root_key).unwrap();
    assert_eq!(sub.basic_constraints().unwrap().and_then(|b| b.path_len), Some(1));
    // notAfter is capped at the issuer's.
    let mut short = CertificateParams::new(dn("CN=Short Root")).ca(None);
    short.not_after = now() + Duration::from_secs(3600);
    let short_root = short.self_signed(&root_key).unwrap();
    let leaf = CertificateParams::new(dn("CN=leaf"))
        .valid_for(Duration::from_secs(90 * 24 * 3600))
        .issue(&subject_key(&sub_key), &short_root, &root_key)
        .unwrap();
    assert_eq!(leaf.not_after(), short_root.not_after());
    verify_chain(&leaf, &[], std::slice::from_ref(&short_root), now() + Duration::from_secs(3000)).unwrap();
    // An issuer that has expired before notBefore issues nothing.
    let mut late = CertificateParams::new(dn("CN=late"));
    late.not_before = now() + Duration::from_secs(7200);
    late.not_after = now() + Duration::from_secs(9000);
    let err = late.issue(&subject_key(&sub_key), &short_root, &root_key).unwrap_err().to_string();
    assert!(err.contains("expires") && err.contains("notBefore"), "{err}");
}

#[test]
fn path_building_backtracks_over_candidate_issuers() {
    let p = pki();
    let int_name = dn("CN=Intermediate,O=QubeSec");
    // Two intermediates with the intermediate's name and key: the first one tried is not a CA
    // (or expired, or issued by an unknown root); the second is the real one.
    let mut not_ca = CertificateParams::new(int_name.clone());
    not_ca.key_usage = Some(vec![KeyUsage::DigitalSignature]);
    let not_ca = not_ca.issue(&subject_key(&p.int_key), &p.root, &p.root_key).unwrap();
    let mut expired = CertificateParams::new(int_name.clone()).ca(Some(0));
    expired.not_before = now() - Duration::from_secs(7200);
    expired.not_after = now() - Duration::from_secs(3600);
    let expired = expired.issue(&subject_key(&p.int_key), &p.root, &p.root_key).unwrap();
    let stranger_key = key(SignatureAlgorithm::MlDsa44);
    let stranger = CertificateParams::new(dn("CN=Stranger")).ca(None).self_signed(&stranger_key).unwrap();
    let cross = CertificateParams::new(int_name).ca(Some(0)).issue(&subject_key(&p.int_key), &stranger, &stranger_key);
    let cross = cross.unwrap();
    for decoy in [not_ca, expired, cross] {
        let intermediates = [decoy.clone(), p.int.clone()];
        let path = verify_chain(&p.leaf, &intermediates, std::slice::from_ref(&p.root), now()).unwrap();
        assert_eq!(path[1], p.int, "the valid intermediate was not found past {}", decoy.serial_hex());
        // Alone, the decoy still fails, furthest from the leaf.
        let (i, _) = kind(verify_chain(&p.leaf, &[decoy], std::slice::from_ref(&p.root), now()));
        assert_eq!(i, 1);
    }
}

#[test]
fn extended_key_usage_is_checked_when_asked() {
    let p = pki();
    let anchors = std::slice::from_ref(&p.root);
    let intermediates = std::slice::from_ref(&p.int);
    let server = ChainOptions::default().purpose(ExtendedKeyUsage::ServerAuth);
    let client = ChainOptions::default().purpose(ExtendedKeyUsage::ClientAuth);
    // The leaf says serverAuth.
    verify_chain_with(&p.leaf, intermediates, anchors, now(), &server).unwrap();
    let (i, k) = kind(verify_chain_with(&p.leaf, intermediates, anchors, now(), &client));
    assert_eq!((i, k), (0, ChainErrorKind::ExtendedKeyUsage { required: "clientAuth".into() }));
    // Without the extension any purpose is allowed; anyExtendedKeyUsage allows any too.
    let plain_key = key(SignatureAlgorithm::MlDsa44);
    let plain = CertificateParams::new(dn("CN=plain")).issue(&subject_key(&plain_key), &p.int, &p.int_key).unwrap();
    verify_chain_with(&plain, intermediates, anchors, now(), &client).unwrap();
    let mut any = CertificateParams::new(dn("CN=any"));
    any.extended_key_usage = vec![ExtendedKeyUsage::Other("2.5.29.37.0".parse().unwrap())];
    let any = any.issue(&subject_key(&plain_key), &p.int, &p.int_key).unwrap();
    verify_chain_with(&any, intermediates, anchors, now(), &client).unwrap();
    // An intermediate restricted to clientAuth cannot vouch for a server.
    let mut restricted = CertificateParams::new(dn("CN=Client CA")).ca(Some(0));
    restricted.extended_key_usage = vec![ExtendedKeyUsage::ClientAuth];
    let restricted_key = key(SignatureAlgorithm::MlDsa44);
    let restricted = restricted.issue(&subject_key(&restricted_key), &p.root, &p.root_key).unwrap();
    let mut leaf = CertificateParams::new(dn("CN=srv"));
    leaf.extended_key_usage = vec![ExtendedKeyUsage::ServerAuth];
    let leaf = leaf.issue(&subject_key(&plain_key), &restricted, &restricted_key).unwrap();
    let (i, _) = kind(verify_chain_with(&leaf, std::slice::from_ref(&restricted), anchors, now(), &server));
    assert_eq!(i, 1);
    // Without a purpose, EKU is not checked (the default, as before).
    verify_chain(&leaf, std::slice::from_ref(&restricted), anchors, now()).unwrap();
}

#[test]
fn tampered_signature_and_tbs_are_rejected() {
    let p = pki();
    let mut der = p.leaf.to_der().to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let tampered = Certificate::from_der(&der).unwrap();
    assert_eq!(
        kind(verify_chain(&tampered, std::slice::from_ref(&p.int), std::slice::from_ref(&p.root), now())),
        (0, ChainErrorKind::BadSignature)
    );
    // Change one byte of the subject common name inside the TBS.
    let der = p.leaf.to_der().to_vec();
    let at = der.windows(3).position(|w| w == b"api").unwrap();
    let mut edited = der.clone();
    edited[at] = b'b';
    let edited = Certificate::from_der(&edited).unwrap();
    assert_eq!(edited.subject(), "CN=bpi.example.com");
    assert!(edited.verify_signed_by(&p.int).is_err());
}

#[test]
fn csr_round_trip_policy_and_tamper() {
    let p = pki();
    let k = key(SignatureAlgorithm::MlDsa65);
    let sans = [SubjectAltName::dns("svc.ns.svc").unwrap(), SubjectAltName::uri("spiffe://c/ns/a").unwrap()];
    let csr = CertificateRequest::create(&dn("CN=svc,O=Tenant"), &sans, &[ExtendedKeyUsage::ClientAuth], &k).unwrap();
    let csr = CertificateRequest::from_pem(csr.to_pem().unwrap().as_bytes()).unwrap();
    csr.verify().unwrap();
    assert_eq!(csr.subject(), "CN=svc,O=Tenant");
    assert_eq!(csr.subject_alt_names().unwrap(), sans);

    let (params, pk) = csr.to_params(CsrPolicy::default()).unwrap();
    let cert = params.issue(&pk, &p.int, &p.int_key).unwrap();
    assert_eq!(cert.subject_alt_names().unwrap(), sans);
    assert_eq!(cert.extended_key_usage().unwrap(), Some(vec![ExtendedKeyUsage::ClientAuth]));
    assert_eq!(cert.public_key_spki_der(), csr.public_key_spki_der());

    let (params, _) =
        csr.to_params(CsrPolicy { copy_subject_alt_names: false, copy_extended_key_usage: false }).unwrap();
    assert!(params.subject_alt_names.is_empty() && params.extended_key_usage.is_empty());

    let mut der = csr.to_der().to_vec();
    let at = der.windows(3).position(|w| w == b"svc").unwrap();
    der[at] = b'x';
    let forged = CertificateRequest::from_der(&der).unwrap();
    assert_eq!(forged.verify(), Err(Error::VerificationFailed));
    assert!(forged.to_params(CsrPolicy::default()).is_err());

    let composite = CompositeSigningKey::generate(CompositeAlgorithm::MlDsa65EcdsaP256Sha512).unwrap();
    CertificateRequest::create(&dn("CN=hybrid"), &[], &[], &composite).unwrap().verify().unwrap();
}

#[test]
fn parsing_garbage_fails_cleanly() {
    for bad in [&b""[..], b"\x30\x00", b"\x30\x82\xff\xff", b"not der"] {
        assert!(matches!(Certificate::from_der(bad), Err(Error::Encoding { .. })));
        assert!(matches!(CertificateRequest::from_der(bad), Err(Error::Encoding { .. })));
    }
    assert!(Certificate::from_pem(b"-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n").is_err());
    assert!(Certificate::chain_from_pem(b"nothing here").is_err());
}

fn name_value() -> impl Strategy<Value = String> {
    // Printable text including the characters RFC 4514 must escape.
    "[a-zA-Z0-9 ,+\"\\\\<>;=#.-]{1,24}".prop_filter("no surrounding spaces", |s| s.trim() == s)
}

fn san() -> impl Strategy<Value = SubjectAltName> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}[a-z0-9](\\.[a-z][a-z0-9]{0,8}){0,3}".prop_map(|d| SubjectAltName::dns(&d).unwrap()),
        any::<[u8; 4]>().prop_map(|o| SubjectAltName::Ip(IpAddr::from(o))),
        any::<[u8; 16]>().prop_map(|o| SubjectAltName::Ip(IpAddr::from(o))),
        "[a-z]{1,6}://[a-z0-9./-]{1,20}".prop_map(|u| SubjectAltName::uri(&u).unwrap()),
        "[a-z0-9.]{1,10}@[a-z]{1,8}\\.com".prop_map(|e| SubjectAltName::email(&e).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn builder_inputs_round_trip_through_der(
        cn in name_value(),
        org in proptest::option::of(name_value()),
        country in proptest::option::of("[A-Z]{2}"),
        sans in proptest::collection::vec(san(), 0..6),
    ) {
        let mut subject = DistinguishedName::new();
        if let Some(c) = &country { subject = subject.with(NameAttribute::Country, c).unwrap(); }
        if let Some(o) = &org { subject = subject.with(NameAttribute::Organization, o).unwrap(); }
        subject = subject.with(NameAttribute::CommonName, &cn).unwrap();
        // The RFC 4514 text form parses back to the same name.
        prop_assert_eq!(subject.to_string().parse::<DistinguishedName>().unwrap(), subject.clone());

        let k = SigningKey::from_seed(SignatureAlgorithm::MlDsa44, &[7; 32]).unwrap();
        let mut params = CertificateParams::new(subject.clone());
        params.subject_alt_names = sans.clone();
        let cert = params.self_signed(&k).unwrap();
        let parsed = Certificate::from_der(cert.to_der()).unwrap();
        prop_assert_eq!(parsed.subject_name().unwrap(), subject);
        prop_assert_eq!(parsed.subject_alt_names().unwrap(), sans);
        prop_assert!(parsed.verify_signed_by(&parsed).is_ok());
    }
}
