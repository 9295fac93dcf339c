//! ML-DSA (FIPS 204) over libcrux-ml-dsa: raw bytes in, raw bytes out.

use libcrux_ml_dsa::{MLDSASignature, MLDSASigningKey, MLDSAVerificationKey, ml_dsa_44, ml_dsa_65, ml_dsa_87};
use zeroize::Zeroize;

use crate::alg::SignatureAlgorithm;
use crate::error::{Error, Result};

/// Binds `$m` to the libcrux module and `$pk`, `$sk`, `$sig` to the sizes.
macro_rules! dispatch {
    ($alg:expr, $m:ident, $pk:ident, $sk:ident, $sig:ident => $body:expr) => {
        match $alg {
            SignatureAlgorithm::MlDsa44 => {
                use ml_dsa_44 as $m;
                const $pk: usize = 1312;
                const $sk: usize = 2560;
                const $sig: usize = 2420;
                $body
            }
            SignatureAlgorithm::MlDsa65 => {
                use ml_dsa_65 as $m;
                const $pk: usize = 1952;
                const $sk: usize = 4032;
                const $sig: usize = 3309;
                $body
            }
            SignatureAlgorithm::MlDsa87 => {
                use ml_dsa_87 as $m;
                const $pk: usize = 2592;
                const $sk: usize = 4896;
                const $sig: usize = 4627;
                $body
            }
            _ => Err(Error::WrongAlgorithm { expected: "ML-DSA".into(), found: $alg.name().into() }),
        }
    };
}

pub(crate) use crate::error::fixed as array;

/// Copies an expanded key straight into a zeroed box (no stack copy to leave behind).
fn boxed<const N: usize>(sk: &[u8]) -> Result<Box<MLDSASigningKey<N>>> {
    if sk.len() != N {
        return Err(Error::length("ML-DSA private key", N, sk.len()));
    }
    let mut key = Box::new(MLDSASigningKey::<N>::zero());
    key.as_mut_slice().copy_from_slice(sk);
    Ok(key)
}

/// An expanded signing key in the backend's own type, boxed so that it is
/// never copied per operation, and zeroized on drop.
pub(crate) enum SignKey {
    D44(Box<MLDSASigningKey<2560>>),
    D65(Box<MLDSASigningKey<4032>>),
    D87(Box<MLDSASigningKey<4896>>),
}

impl SignKey {
    /// Reads an expanded key of the right length (range checks are the caller's).
    pub(crate) fn from_bytes(alg: SignatureAlgorithm, sk: &[u8]) -> Result<Self> {
        Ok(match alg {
            SignatureAlgorithm::MlDsa44 => Self::D44(boxed(sk)?),
            SignatureAlgorithm::MlDsa65 => Self::D65(boxed(sk)?),
            SignatureAlgorithm::MlDsa87 => Self::D87(boxed(sk)?),
            _ => {
                return Err(Error::WrongAlgorithm { expected: "ML-DSA".into(), found: alg.name().into() });
            }
        })
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::D44(k) => k.as_slice(),
            Self::D65(k) => k.as_slice(),
            Self::D87(k) => k.as_slice(),
        }
    }
}

impl Drop for SignKey {
    fn drop(&mut self) {
        match self {
            Self::D44(k) => k.as_mut_slice().zeroize(),
            Self::D65(k) => k.as_mut_slice().zeroize(),
            Self::D87(k) => k.as_mut_slice().zeroize(),
        }
    }
}

/// ML-DSA.KeyGen_internal(xi): returns (pk, sk).
pub(crate) fn keygen(alg: SignatureAlgorithm, xi: &[u8; 32]) -> Result<(Vec<u8>, SignKey)> {
    Ok(match alg {
        SignatureAlgorithm::MlDsa44 => {
            let pair = ml_dsa_44::generate_key_pair(*xi);
            (pair.verification_key.as_slice().to_vec(), SignKey::D44(Box::new(pair.signing_key)))
        }
        SignatureAlgorithm::MlDsa65 => {
            let pair = ml_dsa_65::generate_key_pair(*xi);
            (pair.verification_key.as_slice().to_vec(), SignKey::D65(Box::new(pair.signing_key)))
        }
        SignatureAlgorithm::MlDsa87 => {
            let pair = ml_dsa_87::generate_key_pair(*xi);
            (pair.verification_key.as_slice().to_vec(), SignKey::D87(Box::new(pair.signing_key)))
        }
        _ => {
            return Err(Error::WrongAlgorithm { expected: "ML-DSA".into(), found: alg.name().into() });
        }
    })
}

/// ML-DSA.Sign(sk, M, ctx) with the given 32-byte `rnd` (all zero = deterministic).
pub(crate) fn sign(key: &SignKey, msg: &[u8], ctx: &[u8], rnd: &[u8; 32]) -> Result<Vec<u8>> {
    if ctx.len() > 255 {
        return Err(Error::ContextTooLong { found: ctx.len() });
    }
    let sig = match key {
        SignKey::D44(k) => ml_dsa_44::sign(k, msg, ctx, *rnd).map(|s| s.as_slice().to_vec()),
        SignKey::D65(k) => ml_dsa_65::sign(k, msg, ctx, *rnd).map(|s| s.as_slice().to_vec()),
        SignKey::D87(k) => ml_dsa_87::sign(k, msg, ctx, *rnd).map(|s| s.as_slice().to_vec()),
    };
    sig.map_err(|_| Error::Crypto)
}

/// ML-DSA.Verify(pk, M, sig, ctx).
pub(crate) fn verify(alg: SignatureAlgorithm, pk: &[u8], msg: &[u8], ctx: &[u8], sig: &[u8]) -> Result<()> {
    if ctx.len() > 255 {
        return Err(Error::ContextTooLong { found: ctx.len() });
    }
    dispatch!(alg, m, PK, SK, SIG => {
        let _ = SK;
        let key = MLDSAVerificationKey::new(array::<PK>("ML-DSA public key", pk)?);
        let Ok(sig) = array::<SIG>("ML-DSA signature", sig) else {
            return Err(Error::VerificationFailed);
        };
        m::verify(&key, msg, ctx, &MLDSASignature::new(sig)).map_err(|_| Error::VerificationFailed)
    })
}

/// `tr = H(pk, 64)`, which an expanded ML-DSA private key embeds at bytes 64..128.
pub(crate) fn public_key_matches(pk: &[u8], sk: &[u8]) -> bool {
    use sha3::digest::{ExtendableOutput, Update, XofReader};
    let mut xof = sha3::Shake256::default();
    xof.update(pk);
    let mut tr = [0u8; 64];
    xof.finalize_xof().read(&mut tr);
    sk.get(64..128).is_some_and(|embedded| bool::from(subtle::ConstantTimeEq::ct_eq(embedded, &tr[..])))
}

/// FIPS 204 internal interface (Algorithms 7 and 8), for ACVP conformance only.
#[cfg(feature = "hazmat")]
pub(crate) mod internal {
    use super::*;

    pub(crate) fn sign(key: &SignKey, msg: &[u8], rnd: &[u8; 32]) -> Result<Vec<u8>> {
        let sig = match key {
            SignKey::D44(k) => ml_dsa_44::sign_internal(k, msg, *rnd).map(|s| s.as_slice().to_vec()),
            SignKey::D65(k) => ml_dsa_65::sign_internal(k, msg, *rnd).map(|s| s.as_slice().to_vec()),
            SignKey::D87(k) => ml_dsa_87::sign_internal(k, msg, *rnd).map(|s| s.as_slice().to_vec()),
        };
        sig.map_err(|_| Error::Crypto)
    }

    pub(crate) fn verify(alg: SignatureAlgorithm, pk: &[u8], msg: &[u8], sig: &[u8]) -> Result<()> {
        dispatch!(alg, m, PK, SK, SIG => {
            let _ = SK;
            let key = MLDSAVerificationKey::new(array::<PK>("ML-DSA public key", pk)?);
            let Ok(sig) = array::<SIG>("ML-DSA signature", sig) else {
                return Err(Error::VerificationFailed);
            };
            m::verify_internal(&key, msg, &MLDSASignature::new(sig)).map_err(|_| Error::VerificationFailed)
        })
    }
}

/// FIPS 204 range check on an expanded private key: every coefficient of
/// `s1` and `s2` must decode into `[-eta, eta]` (encoded as `eta - c` in 3 or 4 bits).
pub(crate) fn expanded_key_is_valid(alg: SignatureAlgorithm, sk: &[u8]) -> bool {
    let (k, l, eta, bits) = match alg {
        SignatureAlgorithm::MlDsa44 => (4, 4, 2u32, 3),
        SignatureAlgorithm::MlDsa65 => (6, 5, 4, 4),
        SignatureAlgorithm::MlDsa87 => (8, 7, 2, 3),
        _ => return false,
    };
    let start = 128; // rho (32) || K (32) || tr (64)
    let len = (k + l) * 32 * bits;
    let Some(packed) = sk.get(start..start + len) else {
        return false;
    };
    // Little-endian bit unpacking, `bits` bits per coefficient.
    let mut acc: u32 = 0;
    let mut have = 0;
    let mut ok = 1u32;
    for &byte in packed {
        acc |= u32::from(byte) << have;
        have += 8;
        while have >= bits {
            let c = acc & ((1 << bits) - 1);
            // Branch-free: stays 1 only while every c <= 2*eta.
            ok &= u32::from(c <= 2 * eta);
            acc >>= bits;
            have -= bits;
        }
    }
    ok == 1
}
