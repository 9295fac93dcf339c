//! Side-by-side ML-KEM-768 and ML-DSA-65 benchmarks: `qubesec-core` against
//! the backends it could have been built on, in one run on one machine.
//!
//! Every figure includes the API's own randomness (drawn from the OS where the
//! API takes it from the caller) and output encoding, so the comparison is
//! like for like. Run with `cargo xtask bench`; results go in docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).unwrap();
    out
}

const MSG: &[u8] = b"The quick brown fox jumps over the lazy dog: a 64-byte message!!";

fn ml_kem_768(c: &mut Criterion) {
    use qubesec_core::{KemAlgorithm, KemPrivateKey};
    let mut g = c.benchmark_group("ML-KEM-768");

    // qubesec-core (libcrux underneath, plus validation and owned types)
    let key = KemPrivateKey::generate(KemAlgorithm::MlKem768).unwrap();
    let (ct, _) = key.public_key().encapsulate().unwrap();
    g.bench_function("keygen/qubesec-core", |b| b.iter(|| KemPrivateKey::generate(KemAlgorithm::MlKem768).unwrap()));
    g.bench_function("encaps/qubesec-core", |b| b.iter(|| key.public_key().encapsulate().unwrap()));
    g.bench_function("decaps/qubesec-core", |b| b.iter(|| key.decapsulate(black_box(&ct)).unwrap()));

    // libcrux-ml-kem directly
    use libcrux_ml_kem::mlkem768;
    let pair = mlkem768::generate_key_pair(random());
    let (lct, _) = mlkem768::encapsulate(pair.public_key(), random());
    g.bench_function("keygen/libcrux", |b| b.iter(|| mlkem768::generate_key_pair(random())));
    g.bench_function("encaps/libcrux", |b| b.iter(|| mlkem768::encapsulate(pair.public_key(), random())));
    g.bench_function("decaps/libcrux", |b| b.iter(|| mlkem768::decapsulate(pair.private_key(), black_box(&lct))));

    // aws-lc-rs
    use aws_lc_rs::kem::{DecapsulationKey, ML_KEM_768};
    let dk = DecapsulationKey::generate(&ML_KEM_768).unwrap();
    let ek = dk.encapsulation_key().unwrap();
    let (act, _) = ek.encapsulate().unwrap();
    let act = act.as_ref().to_vec();
    g.bench_function("keygen/aws-lc-rs", |b| {
        b.iter(|| {
            let dk = DecapsulationKey::generate(&ML_KEM_768).unwrap();
            dk.encapsulation_key().unwrap().key_bytes().unwrap()
        })
    });
    g.bench_function("encaps/aws-lc-rs", |b| b.iter(|| ek.encapsulate().unwrap()));
    g.bench_function("decaps/aws-lc-rs", |b| b.iter(|| dk.decapsulate(black_box(act.as_slice()).into()).unwrap()));

    // RustCrypto ml-kem
    use ml_kem::{Decapsulate, DecapsulationKey as RcDk, MlKem768};
    let rdk = RcDk::<MlKem768>::from_seed(random::<64>().into());
    let (rct, _) = rdk.encapsulation_key().encapsulate_deterministic(&random::<32>().into());
    g.bench_function("keygen/rustcrypto", |b| b.iter(|| RcDk::<MlKem768>::from_seed(random::<64>().into())));
    g.bench_function("encaps/rustcrypto", |b| {
        b.iter(|| rdk.encapsulation_key().encapsulate_deterministic(&random::<32>().into()))
    });
    g.bench_function("decaps/rustcrypto", |b| b.iter(|| rdk.decapsulate(black_box(&rct))));
    g.finish();
}

fn ml_dsa_65(c: &mut Criterion) {
    use qubesec_core::{SignatureAlgorithm, SigningKey};
    let mut g = c.benchmark_group("ML-DSA-65");

    let key = SigningKey::generate(SignatureAlgorithm::MlDsa65).unwrap();
    let vk = key.verifying_key().unwrap().clone();
    let sig = key.sign(MSG, b"").unwrap();
    g.bench_function("keygen/qubesec-core", |b| b.iter(|| SigningKey::generate(SignatureAlgorithm::MlDsa65).unwrap()));
    g.bench_function("sign/qubesec-core", |b| b.iter(|| key.sign(black_box(MSG), b"").unwrap()));
    g.bench_function("verify/qubesec-core", |b| b.iter(|| vk.verify(black_box(MSG), b"", &sig).unwrap()));

    use libcrux_ml_dsa::ml_dsa_65;
    let pair = ml_dsa_65::generate_key_pair(random());
    let lsig = ml_dsa_65::sign(&pair.signing_key, MSG, b"", random()).unwrap();
    g.bench_function("keygen/libcrux", |b| b.iter(|| ml_dsa_65::generate_key_pair(random())));
    g.bench_function("sign/libcrux", |b| {
        b.iter(|| ml_dsa_65::sign(&pair.signing_key, black_box(MSG), b"", random()).unwrap())
    });
    g.bench_function("verify/libcrux", |b| {
        b.iter(|| ml_dsa_65::verify(&pair.verification_key, black_box(MSG), b"", &lsig).unwrap())
    });

    use aws_lc_rs::signature::{KeyPair, ML_DSA_65, ML_DSA_65_SIGNING, PqdsaKeyPair, UnparsedPublicKey};
    let kp = PqdsaKeyPair::generate(&ML_DSA_65_SIGNING).unwrap();
    let mut asig = vec![0u8; 3309];
    kp.sign(MSG, &mut asig).unwrap();
    let apk = UnparsedPublicKey::new(&ML_DSA_65, kp.public_key().as_ref().to_vec());
    g.bench_function("keygen/aws-lc-rs", |b| b.iter(|| PqdsaKeyPair::generate(&ML_DSA_65_SIGNING).unwrap()));
    g.bench_function("sign/aws-lc-rs", |b| {
        let mut out = vec![0u8; 3309];
        b.iter(|| kp.sign(black_box(MSG), &mut out).unwrap())
    });
    g.bench_function("verify/aws-lc-rs", |b| b.iter(|| apk.verify(black_box(MSG), &asig).unwrap()));

    use ml_dsa::{ExpandedSigningKey, MlDsa65};
    let rsk = ExpandedSigningKey::<MlDsa65>::from_seed(&random::<32>().into());
    let rvk = rsk.verifying_key();
    let rsig = rsk.sign_deterministic(MSG, b"").unwrap();
    g.bench_function("keygen/rustcrypto", |b| {
        b.iter(|| ExpandedSigningKey::<MlDsa65>::from_seed(&random::<32>().into()))
    });
    g.bench_function("sign/rustcrypto", |b| b.iter(|| rsk.sign_deterministic(black_box(MSG), b"").unwrap()));
    g.bench_function("verify/rustcrypto", |b| b.iter(|| rvk.verify_with_context(black_box(MSG), b"", &rsig)));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(100).measurement_time(std::time::Duration::from_secs(4));
    targets = ml_kem_768, ml_dsa_65
}
criterion_main!(benches);
