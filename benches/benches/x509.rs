//! Issuing and verifying an ML-DSA-65 certificate (and a composite one), the
//! operations the operator's QuantumCertificate controller performs.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use qubesec_core::sig::composite::{CompositeAlgorithm, CompositeSigningKey};
use qubesec_core::x509::{CertSigner, Certificate, CertificateParams, SubjectAltName, SubjectPublicKey, verify_chain};
use qubesec_core::{PublicKey, SignatureAlgorithm, SigningKey};

fn params() -> CertificateParams {
    let mut p = CertificateParams::new("CN=api.example.com,O=Bench".parse().unwrap());
    p.subject_alt_names = vec![SubjectAltName::dns("api.example.com").unwrap()];
    p
}

fn bench_pair<'a>(c: &mut Criterion, label: &str, ca_key: impl Into<CertSigner<'a>> + Copy) {
    let ca = CertificateParams::new("CN=Bench CA".parse().unwrap()).ca(None).self_signed(ca_key).unwrap();
    let leaf_key = SigningKey::generate(SignatureAlgorithm::MlDsa65).unwrap();
    let subject: SubjectPublicKey = PublicKey::from(leaf_key.verifying_key().unwrap().clone()).try_into().unwrap();
    let params = params();
    let mut group = c.benchmark_group(format!("x509 {label}"));
    group.bench_function("issue leaf", |b| b.iter(|| params.issue(black_box(&subject), &ca, ca_key).unwrap()));
    let leaf = params.issue(&subject, &ca, ca_key).unwrap();
    let der = leaf.to_der().to_vec();
    group.bench_function("parse leaf", |b| b.iter(|| Certificate::from_der(black_box(&der)).unwrap()));
    let anchors = [ca];
    group.bench_function("verify chain (leaf + root)", |b| {
        b.iter(|| verify_chain(black_box(&leaf), &[], &anchors, SystemTime::now()).unwrap())
    });
    group.finish();
}

fn x509(c: &mut Criterion) {
    let ml_dsa = SigningKey::generate(SignatureAlgorithm::MlDsa65).unwrap();
    bench_pair(c, "ML-DSA-65 CA", &ml_dsa);
    let composite = CompositeSigningKey::generate(CompositeAlgorithm::MlDsa65EcdsaP256Sha512).unwrap();
    bench_pair(c, "MLDSA65-ECDSA-P256-SHA512 CA", &composite);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = x509
}
criterion_main!(benches);
