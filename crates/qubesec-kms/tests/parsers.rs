//! Property tests: every decoder of untrusted bytes (ciphertexts and key ids
//! from the apiserver, keystore files, bundles) returns an error rather than
//! panicking, and the encodings round trip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use proptest::prelude::*;
use qubesec_kms::Backend;
use qubesec_kms::backend::software::SoftwareBackend;
use qubesec_kms::keystore::{Argon2Params, KeySet, Keystore, MasterKeySource, format};
use qubesec_kms::{KeyId, envelope};

fn software() -> (tempfile::TempDir, SoftwareBackend) {
    let dir = tempfile::tempdir().unwrap();
    let source = MasterKeySource::KeyFile(dir.path().join("m.key"));
    let ks = Keystore::at(dir.path().join("ks"));
    ks.init(&source, Argon2Params::default()).unwrap();
    let b = SoftwareBackend::open(ks, &source).unwrap();
    (dir, b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn key_id_parse_never_panics(s in ".{0,80}") {
        if let Ok(id) = KeyId::parse(&s) {
            prop_assert_eq!(id.as_str(), s.as_str());
            prop_assert!(s.starts_with("qubesec-kms/v"));
        }
    }

    #[test]
    fn envelope_split_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
        if let Ok(parts) = envelope::split(&bytes) {
            prop_assert_eq!(envelope::join(parts.nonce, parts.sealed), bytes);
        }
    }

    #[test]
    fn keystore_header_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = format::parse_header(Path::new("fuzz"), &bytes);
        let mut magic = b"QSKMSKEY\x00\x01".to_vec();
        magic.extend_from_slice(&bytes);
        let _ = format::parse_header(Path::new("fuzz"), &magic);
    }

    #[test]
    fn bundle_verify_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let (kem, trusted) = bundle_fixtures();
        let mut with_magic = qubesec_kms::bundle::MAGIC.to_vec();
        with_magic.extend_from_slice(&[0, 2, 0, 1]);
        with_magic.extend_from_slice(&bytes);
        prop_assert!(qubesec_kms::bundle::verify(&bytes, trusted, kem).is_err());
        prop_assert!(qubesec_kms::bundle::verify(&with_magic, trusted, kem).is_err());
    }
}

#[test]
fn software_round_trip_and_tamper_properties() {
    let (_dir, b) = software();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(128));
    runner
        .run(
            &(proptest::collection::vec(any::<u8>(), 1..=envelope::MAX_PLAINTEXT), any::<usize>(), 1u8..=255),
            |(p, i, x)| {
                let sealed = b.encrypt(&p).unwrap();
                prop_assert!(sealed.ciphertext.len() <= envelope::MAX_CIPHERTEXT);
                let back = b.decrypt(&sealed.key_id, &sealed.ciphertext).unwrap();
                prop_assert_eq!(back.as_slice(), p.as_slice());
                let mut t = sealed.ciphertext.clone();
                let idx = i % t.len();
                t[idx] ^= x;
                prop_assert!(b.decrypt(&sealed.key_id, &t).is_err());
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn keystore_files_with_any_single_byte_flipped_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let source = MasterKeySource::KeyFile(dir.path().join("m.key"));
    let ks = Keystore::at(dir.path().join("ks"));
    ks.init(&source, Argon2Params::default()).unwrap();
    ks.update(&source, KeySet::rotate).unwrap();
    let good = ks.read_bytes().unwrap();
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        std::fs::write(ks.path(), &bad).unwrap();
        assert!(ks.open(&source).is_err(), "byte {i} flipped was accepted");
    }
    std::fs::write(ks.path(), &good).unwrap();
    assert!(ks.open(&source).is_ok());
}

fn bundle_fixtures() -> &'static (qubesec_core::KemPrivateKey, qubesec_kms::bundle::TrustedSigners) {
    use std::sync::OnceLock;
    static F: OnceLock<(qubesec_core::KemPrivateKey, qubesec_kms::bundle::TrustedSigners)> = OnceLock::new();
    F.get_or_init(|| {
        let alg = qubesec_core::Algorithm::Kem(qubesec_core::KemAlgorithm::XWing);
        let kem = qubesec_core::PrivateKey::generate(alg).unwrap().into_kem().unwrap();
        let mut trusted = qubesec_kms::bundle::TrustedSigners::new();
        let id = qubesec_kms::keystore::NodeIdentity::generate().unwrap();
        trusted.add(id.fingerprint().to_string().as_bytes()).unwrap();
        (kem, trusted)
    })
}
