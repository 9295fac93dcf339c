//! X-Wing (draft-connolly-cfrg-xwing-kem-06): ML-KEM-768 + X25519 with a SHA3-256 combiner.

use sha3::digest::{ExtendableOutput, Update, XofReader};
use sha3::{Digest, Sha3_256, Shake256};
use zeroize::Zeroizing;

use super::mlkem;
use crate::alg::KemAlgorithm;
use crate::error::{Error, Result};

/// `XWingLabel`: the six ASCII bytes `\.//^\`.
const LABEL: [u8; 6] = *b"\\.//^\\";
const X25519_BASE: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 9;
    b
};
const PK_M: usize = 1184;
const CT_M: usize = 1088;

/// The expanded private state: ML-KEM-768 decapsulation key, X25519 scalar, and the public key.
pub(crate) struct Expanded {
    pub(crate) dk_m: mlkem::DecapsKey,
    pub(crate) sk_x: Zeroizing<[u8; 32]>,
    pub(crate) pk: Vec<u8>,
}

/// `expandDecapsulationKey(sk)`: SHAKE256(sk, 96) → ML-KEM-768 seed (64) and X25519 scalar (32).
pub(crate) fn expand(seed: &[u8; 32]) -> Result<Expanded> {
    let mut xof = Shake256::default();
    xof.update(seed);
    let mut wide = Zeroizing::new([0u8; 96]);
    xof.finalize_xof().read(wide.as_mut_slice());
    let mut mlkem_seed = Zeroizing::new([0u8; 64]);
    mlkem_seed.copy_from_slice(&wide[..64]);
    let mut sk_x = Zeroizing::new([0u8; 32]);
    sk_x.copy_from_slice(&wide[64..]);
    let (pk_m, dk_m) = mlkem::keygen(KemAlgorithm::MlKem768, &mlkem_seed)?;
    let pk_x = x25519_dalek::x25519(*sk_x, X25519_BASE);
    let mut pk = pk_m;
    pk.extend_from_slice(&pk_x);
    Ok(Expanded { dk_m, sk_x, pk })
}

fn combine(ss_m: &[u8; 32], ss_x: &[u8; 32], ct_x: &[u8], pk_x: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha3_256::new();
    Digest::update(&mut h, ss_m);
    Digest::update(&mut h, ss_x);
    Digest::update(&mut h, ct_x);
    Digest::update(&mut h, pk_x);
    Digest::update(&mut h, LABEL);
    Zeroizing::new(h.finalize().into())
}

fn split_pk(pk: &[u8]) -> Result<(&[u8], [u8; 32])> {
    if pk.len() != PK_M + 32 {
        return Err(Error::length("X-Wing public key", PK_M + 32, pk.len()));
    }
    let (m, x) = pk.split_at(PK_M);
    let x: [u8; 32] = x.try_into().map_err(|_| Error::length("X25519 public key", 32, x.len()))?;
    Ok((m, x))
}

/// Checks the ML-KEM half of an X-Wing public key.
pub(crate) fn public_key_is_valid(pk: &[u8]) -> Result<bool> {
    let (pk_m, _) = split_pk(pk)?;
    mlkem::public_key_is_valid(KemAlgorithm::MlKem768, pk_m)
}

/// `Encapsulate(pk, eseed)`: ML-KEM-768 with `eseed[0..32]`, X25519 ephemeral `eseed[32..64]`.
pub(crate) fn encapsulate(pk: &[u8], eseed: &[u8; 64]) -> Result<(Vec<u8>, Zeroizing<[u8; 32]>)> {
    let (pk_m, pk_x) = split_pk(pk)?;
    let mut m = Zeroizing::new([0u8; 32]);
    m.copy_from_slice(&eseed[..32]);
    let mut ek_x = Zeroizing::new([0u8; 32]);
    ek_x.copy_from_slice(&eseed[32..]);
    let (ct_m, ss_m) = mlkem::encapsulate(KemAlgorithm::MlKem768, pk_m, &m)?;
    let ct_x = x25519_dalek::x25519(*ek_x, X25519_BASE);
    let ss_x = Zeroizing::new(x25519_dalek::x25519(*ek_x, pk_x));
    let ss = combine(&ss_m, &ss_x, &ct_x, &pk_x);
    let mut ct = ct_m;
    ct.extend_from_slice(&ct_x);
    Ok((ct, ss))
}

/// `Decapsulate(sk, ct)`.
pub(crate) fn decapsulate(expanded: &Expanded, ct: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    if ct.len() != CT_M + 32 {
        return Err(Error::length("X-Wing ciphertext", CT_M + 32, ct.len()));
    }
    let (ct_m, ct_x) = ct.split_at(CT_M);
    let ct_x: [u8; 32] = ct_x.try_into().map_err(|_| Error::length("X25519 ciphertext", 32, ct_x.len()))?;
    let ss_m = mlkem::decapsulate(&expanded.dk_m, ct_m)?;
    let ss_x = Zeroizing::new(x25519_dalek::x25519(*expanded.sk_x, ct_x));
    let pk_x = expanded.pk.get(PK_M..).unwrap_or_default();
    Ok(combine(&ss_m, &ss_x, &ct_x, pk_x))
}
