//! Property tests: keygen → encode → decode, encapsulation, signatures, PEM, and
//! that decoders reject (never panic on) arbitrary bytes.

#![allow(clippy::unwrap_used, missing_docs)]

use proptest::prelude::*;
use qubesec_core::{
    Error, KemAlgorithm, KemPrivateKey, PrivateKey, PrivateKeyForm, PublicKey, SignatureAlgorithm, SigningKey,
};

fn kem_alg() -> impl Strategy<Value = KemAlgorithm> {
    prop::sample::select(KemAlgorithm::ALL.to_vec())
}

fn ml_dsa_alg() -> impl Strategy<Value = SignatureAlgorithm> {
    prop::sample::select(vec![SignatureAlgorithm::MlDsa44, SignatureAlgorithm::MlDsa65, SignatureAlgorithm::MlDsa87])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn kem_keys_round_trip_every_form_and_decapsulate(alg in kem_alg(), seed in prop::collection::vec(any::<u8>(), 64), m in prop::collection::vec(any::<u8>(), 64)) {
        let key = KemPrivateKey::from_seed(alg, &seed[..alg.seed_len()]).unwrap();
        let public = PublicKey::from(key.public_key().clone());
        let (ct, ss) = key.public_key().encapsulate_deterministic(&m[..alg.encaps_randomness_len()]).unwrap();
        let key = PrivateKey::from(key);
        for form in [PrivateKeyForm::Seed, PrivateKeyForm::Expanded, PrivateKeyForm::Both] {
            let pem = key.to_pkcs8_pem_form(form).unwrap();
            let back = PrivateKey::from_pem(pem.as_bytes()).unwrap();
            prop_assert_eq!(&back, &key);
            prop_assert_eq!(back.public_key().unwrap(), public.clone());
            prop_assert_eq!(back.into_kem().unwrap().decapsulate(&ct).unwrap(), ss.clone());
        }
        let spki = PublicKey::from_pem(public.to_spki_pem().unwrap().as_bytes()).unwrap();
        prop_assert_eq!(spki, public);
    }

    #[test]
    fn ml_dsa_signatures_verify_only_for_their_message_and_context(
        alg in ml_dsa_alg(),
        seed in prop::collection::vec(any::<u8>(), 32),
        msg in prop::collection::vec(any::<u8>(), 0..512),
        ctx in prop::collection::vec(any::<u8>(), 0..=255),
        flip in any::<prop::sample::Index>(),
    ) {
        let key = SigningKey::from_seed(alg, &seed).unwrap();
        let vk = key.verifying_key().unwrap().clone();
        let sig = key.sign(&msg, &ctx).unwrap();
        prop_assert!(vk.verify(&msg, &ctx, &sig).is_ok());
        let det = key.sign_deterministic(&msg, &ctx).unwrap();
        prop_assert_eq!(&det, &key.sign_deterministic(&msg, &ctx).unwrap());
        let mut bad = sig.as_bytes().to_vec();
        let i = flip.index(bad.len());
        bad[i] ^= 1;
        prop_assert_eq!(vk.verify_bytes(&msg, &ctx, &bad), Err(Error::VerificationFailed));
        let mut other_ctx = ctx.clone();
        other_ctx.push(0);
        if other_ctx.len() <= 255 {
            prop_assert_eq!(vk.verify(&msg, &other_ctx, &sig), Err(Error::VerificationFailed));
        }
        // seed-only PKCS#8 round trip
        let pem = PrivateKey::from(key).to_pkcs8_pem().unwrap();
        let back = PrivateKey::from_pem(pem.as_bytes()).unwrap().into_signature().unwrap();
        prop_assert!(back.verifying_key().unwrap().verify(&msg, &ctx, &back.sign(&msg, &ctx).unwrap()).is_ok());
    }

    #[test]
    fn decoders_return_errors_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
        let _ = PrivateKey::from_pkcs8_der(&bytes);
        let _ = PrivateKey::from_pem(&bytes);
        let _ = PublicKey::from_spki_der(&bytes);
        let _ = PublicKey::from_pem(&bytes);
        let _ = PublicKey::from_certificate_der(&bytes);
    }
}

#[test]
fn slh_dsa_small_sets_sign_and_round_trip() {
    for alg in [SignatureAlgorithm::SlhDsaSha2_128f, SignatureAlgorithm::SlhDsaShake128f] {
        let key = SigningKey::generate(alg).unwrap();
        let vk = key.verifying_key().unwrap().clone();
        let sig = key.sign(b"msg", b"ctx").unwrap();
        assert!(vk.verify(b"msg", b"ctx", &sig).is_ok());
        assert_eq!(vk.verify(b"msg", b"", &sig), Err(Error::VerificationFailed));
        let der = PrivateKey::from(key).to_pkcs8_der().unwrap();
        let back = PrivateKey::from_pkcs8_der(&der).unwrap();
        assert_eq!(back.public_key().unwrap(), PublicKey::from(vk));
    }
}

#[test]
fn inconsistent_both_form_is_rejected() {
    let a = PrivateKey::from(KemPrivateKey::generate(KemAlgorithm::MlKem768).unwrap());
    let b = PrivateKey::from(KemPrivateKey::generate(KemAlgorithm::MlKem768).unwrap());
    let both_a = a.to_pkcs8_der_form(PrivateKeyForm::Both).unwrap();
    let expanded_b = b.to_pkcs8_der_form(PrivateKeyForm::Expanded).unwrap();
    // Splice b's expanded key into a's "both" structure: same lengths, different key.
    let dk_b = &expanded_b[expanded_b.len() - 2400..];
    let mut spliced = both_a.to_vec();
    let n = spliced.len();
    spliced[n - 2400..].copy_from_slice(dk_b);
    assert_eq!(PrivateKey::from_pkcs8_der(&spliced), Err(Error::InconsistentKey));
}

#[test]
fn errors_name_what_was_expected_and_found() {
    let err = KemPrivateKey::from_seed(KemAlgorithm::MlKem1024, &[0u8; 63]).unwrap_err();
    assert_eq!(err.to_string(), "KEM private key seed: expected 64 bytes, found 63");
    let err = PublicKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap_err();
    assert!(err.to_string().contains("found \"PRIVATE KEY\""), "{err}");
    let err = PrivateKey::from_pem(b"not pem").unwrap_err();
    assert!(err.to_string().contains("BEGIN"), "{err}");
}

#[test]
fn debug_output_never_shows_secret_bytes() {
    let key = KemPrivateKey::from_seed(KemAlgorithm::MlKem512, &[0xAB; 64]).unwrap();
    let (_, ss) = key.public_key().encapsulate().unwrap();
    let shown = format!("{key:?} {ss:?}");
    assert!(shown.contains("redacted"));
    assert!(!shown.to_lowercase().contains("abab"), "{shown}");
    assert!(!shown.contains(&format!("{:?}", ss.as_bytes())));
    let sk = SigningKey::from_seed(SignatureAlgorithm::MlDsa44, &[0xCD; 32]).unwrap();
    let shown = format!("{sk:?}");
    assert!(!shown.to_lowercase().contains("cdcd") && shown.contains("redacted"), "{shown}");
}

#[test]
fn pem_with_surrounding_text_and_several_blocks_reads_the_first() {
    let key = PrivateKey::from(SigningKey::generate(SignatureAlgorithm::MlDsa44).unwrap());
    let pub_pem = key.public_key().unwrap().to_spki_pem().unwrap();
    let bundle = format!("subject=foo\n{pub_pem}{pub_pem}trailer\n");
    assert_eq!(PublicKey::from_pem(bundle.as_bytes()).unwrap(), key.public_key().unwrap());
}

#[test]
fn debug_of_a_public_key_shows_the_canonical_spki_fingerprint() {
    let key = SigningKey::generate(SignatureAlgorithm::MlDsa44).unwrap();
    let vk = key.verifying_key().unwrap().clone();
    let canonical = qubesec_core::Fingerprint::of_public_key(&PublicKey::from(vk.clone())).unwrap();
    assert!(format!("{vk:?}").contains(&canonical.to_string()), "{vk:?}");
}
