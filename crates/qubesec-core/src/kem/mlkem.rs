//! ML-KEM (FIPS 203) over libcrux-ml-kem: raw byte in, raw byte out.
//!
//! Everything here works on validated lengths; the public types in
//! [`crate::kem`] check lengths before calling in.

use libcrux_ml_kem::{MlKemCiphertext, MlKemPrivateKey, MlKemPublicKey, mlkem512, mlkem768, mlkem1024};
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
            _ => Err(Error::WrongAlgorithm { expected: "ML-KEM".into(), found: $alg.name().into() }),
        }
    };
}

use crate::error::fixed as array;

/// Copies an expanded key straight into a zeroed box (no stack copy to leave behind).
fn boxed<const N: usize>(dk: &[u8]) -> Result<Box<MlKemPrivateKey<N>>> {
    if dk.len() != N {
        return Err(Error::length("ML-KEM decapsulation key", N, dk.len()));
    }
    let mut key = Box::new(MlKemPrivateKey::<N>::from([0u8; N]));
    key[0..N].copy_from_slice(dk);
    Ok(key)
}

/// An expanded decapsulation key in the backend's own type, boxed so that it
/// is never copied per operation, and zeroized on drop.
pub(crate) enum DecapsKey {
    K512(Box<MlKemPrivateKey<1632>>),
    K768(Box<MlKemPrivateKey<2400>>),
    K1024(Box<MlKemPrivateKey<3168>>),
}

impl DecapsKey {
    /// Reads an expanded key of the right length (validity checks: [`private_key_is_valid`]).
    pub(crate) fn from_bytes(alg: KemAlgorithm, dk: &[u8]) -> Result<Self> {
        Ok(match alg {
            KemAlgorithm::MlKem512 => Self::K512(boxed(dk)?),
            KemAlgorithm::MlKem768 => Self::K768(boxed(dk)?),
            KemAlgorithm::MlKem1024 => Self::K1024(boxed(dk)?),
            _ => return Err(Error::WrongAlgorithm { expected: "ML-KEM".into(), found: alg.name().into() }),
        })
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::K512(k) => k.as_slice(),
            Self::K768(k) => k.as_slice(),
            Self::K1024(k) => k.as_slice(),
        }
    }
}

impl Drop for DecapsKey {
    fn drop(&mut self) {
        match self {
            Self::K512(k) => k[0..1632].zeroize(),
            Self::K768(k) => k[0..2400].zeroize(),
            Self::K1024(k) => k[0..3168].zeroize(),
        }
    }
}

/// ML-KEM.KeyGen_internal(d, z) from the 64-byte seed `d || z`: returns (ek, dk).
/// The backend's key moves into its box; as with the backend's own stack
/// temporaries, the moved-from stack slot is not wiped.
pub(crate) fn keygen(alg: KemAlgorithm, seed: &[u8; 64]) -> Result<(Vec<u8>, DecapsKey)> {
    Ok(match alg {
        KemAlgorithm::MlKem512 => {
            let (sk, pk) = mlkem512::generate_key_pair(*seed).into_parts();
            (pk.as_slice().to_vec(), DecapsKey::K512(Box::new(sk)))
        }
        KemAlgorithm::MlKem768 => {
            let (sk, pk) = mlkem768::generate_key_pair(*seed).into_parts();
            (pk.as_slice().to_vec(), DecapsKey::K768(Box::new(sk)))
        }
        KemAlgorithm::MlKem1024 => {
            let (sk, pk) = mlkem1024::generate_key_pair(*seed).into_parts();
            (pk.as_slice().to_vec(), DecapsKey::K1024(Box::new(sk)))
        }
        _ => return Err(Error::WrongAlgorithm { expected: "ML-KEM".into(), found: alg.name().into() }),
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
/// The ciphertext argument only fixes the parameter set; libcrux does not read it.
pub(crate) fn private_key_is_valid(dk: &DecapsKey) -> bool {
    match dk {
        DecapsKey::K512(k) => mlkem512::validate_private_key(k, &MlKemCiphertext::from([0u8; 768])),
        DecapsKey::K768(k) => mlkem768::validate_private_key(k, &MlKemCiphertext::from([0u8; 1088])),
        DecapsKey::K1024(k) => mlkem1024::validate_private_key(k, &MlKemCiphertext::from([0u8; 1568])),
    }
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
pub(crate) fn decapsulate(dk: &DecapsKey, ct: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    const WHAT: &str = "ML-KEM ciphertext";
    Ok(Zeroizing::new(match dk {
        DecapsKey::K512(k) => mlkem512::decapsulate(k, &MlKemCiphertext::from(array::<768>(WHAT, ct)?)),
        DecapsKey::K768(k) => mlkem768::decapsulate(k, &MlKemCiphertext::from(array::<1088>(WHAT, ct)?)),
        DecapsKey::K1024(k) => mlkem1024::decapsulate(k, &MlKemCiphertext::from(array::<1568>(WHAT, ct)?)),
    }))
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
