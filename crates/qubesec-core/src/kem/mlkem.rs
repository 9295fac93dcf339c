//! ML-KEM (FIPS 203) over libcrux-ml-kem: raw byte in, raw byte out.
//!
//! Everything here works on validated lengths; the public types in
//! [`crate::kem`] check lengths before calling in.

use libcrux_ml_kem::{
    MlKemCiphertext, MlKemPrivateKey, MlKemPublicKey, mlkem512, mlkem768, mlkem1024,
};
use zeroize::{Zeroize, Zeroizing};

use crate::alg::KemAlgorithm;
use crate::error::{Error, Result};

/// Calls `$body` with `$m` bound to the libcrux module and `$pk`, `$sk`, `$ct`
/// bound to the byte sizes of the parameter set.
macro_rules! dispatch {
    ($alg:expr, $m:ident, $pk:ident, $sk:ident, $ct:ident => $body:expr) => {
        match $alg {
            KemAlgorithm::MlKem512 => {
                use mlkem512 as $m;
                const $pk: usize = 800;
                const $sk: usize = 1632;
                const $ct: usize = 768;
                $body
            }
            KemAlgorithm::MlKem768 => {
                use mlkem768 as $m;
                const $pk: usize = 1184;
                const $sk: usize = 2400;
                const $ct: usize = 1088;
                $body
            }
            KemAlgorithm::MlKem1024 => {
                use mlkem1024 as $m;
                const $pk: usize = 1568;
                const $sk: usize = 3168;
                const $ct: usize = 1568;
                $body
            }
            _ => Err(Error::WrongAlgorithm {
                expected: "ML-KEM".into(),
                found: $alg.name().into(),
            }),
        }
    };
}

fn array<const N: usize>(what: &'static str, bytes: &[u8]) -> Result<[u8; N]> {
    bytes
        .try_into()
        .map_err(|_| Error::length(what, N, bytes.len()))
}

/// ML-KEM.KeyGen_internal(d, z) from the 64-byte seed `d || z`: returns (ek, dk).
pub(crate) fn keygen(alg: KemAlgorithm, seed: &[u8; 64]) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>)> {
    dispatch!(alg, m, PK, SK, CT => {
        let pair = m::generate_key_pair(*seed);
        let (mut sk, pk) = pair.into_parts();
        let dk = Zeroizing::new(sk.as_slice().to_vec());
        sk[0..SK].zeroize();
        let _ = CT;
        debug_assert_eq!(pk.as_slice().len(), PK);
        Ok((pk.as_slice().to_vec(), dk))
    })
}

/// FIPS 203 §7.2 encapsulation-key check (length and modulus).
pub(crate) fn public_key_is_valid(alg: KemAlgorithm, ek: &[u8]) -> Result<bool> {
    dispatch!(alg, m, PK, SK, CT => {
        let _ = (SK, CT);
        let pk = MlKemPublicKey::<PK>::from(array::<PK>("ML-KEM encapsulation key", ek)?);
        Ok(m::validate_public_key(&pk))
    })
}

/// FIPS 203 §7.3 decapsulation-key check (the hash of the embedded `ek`).
pub(crate) fn private_key_is_valid(alg: KemAlgorithm, dk: &[u8]) -> Result<bool> {
    dispatch!(alg, m, PK, SK, CT => {
        let _ = PK;
        let mut sk = MlKemPrivateKey::<SK>::from(array::<SK>("ML-KEM decapsulation key", dk)?);
        // The ciphertext argument only fixes the parameter set; its content is not read.
        let ok = m::validate_private_key(&sk, &MlKemCiphertext::<CT>::from([0u8; CT]));
        sk[0..SK].zeroize();
        Ok(ok)
    })
}

/// ML-KEM.Encaps_internal(ek, m): returns (ciphertext, shared secret).
pub(crate) fn encapsulate(
    alg: KemAlgorithm,
    ek: &[u8],
    randomness: &[u8; 32],
) -> Result<(Vec<u8>, Zeroizing<[u8; 32]>)> {
    dispatch!(alg, m, PK, SK, CT => {
        let _ = (SK, CT);
        let pk = MlKemPublicKey::<PK>::from(array::<PK>("ML-KEM encapsulation key", ek)?);
        let (ct, ss) = m::encapsulate(&pk, *randomness);
        Ok((ct.as_slice().to_vec(), Zeroizing::new(ss)))
    })
}

/// ML-KEM.Decaps_internal(dk, c), with implicit rejection.
pub(crate) fn decapsulate(alg: KemAlgorithm, dk: &[u8], ct: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    dispatch!(alg, m, PK, SK, CT => {
        let _ = PK;
        let c = MlKemCiphertext::<CT>::from(array::<CT>("ML-KEM ciphertext", ct)?);
        let mut sk = MlKemPrivateKey::<SK>::from(array::<SK>("ML-KEM decapsulation key", dk)?);
        let ss = Zeroizing::new(m::decapsulate(&sk, &c));
        sk[0..SK].zeroize();
        Ok(ss)
    })
}

/// The encapsulation key embedded in an expanded decapsulation key
/// (`dk = dk_PKE || ek || H(ek) || z`, FIPS 203 Algorithm 16).
pub(crate) fn embedded_public_key(alg: KemAlgorithm, dk: &[u8]) -> &[u8] {
    let start = 384 * rank(alg);
    let end = start + alg.public_key_len();
    dk.get(start..end).unwrap_or_default()
}

const fn rank(alg: KemAlgorithm) -> usize {
    match alg {
        KemAlgorithm::MlKem512 => 2,
        KemAlgorithm::MlKem1024 => 4,
        _ => 3,
    }
}
