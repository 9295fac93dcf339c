//! SLH-DSA (FIPS 205) over RustCrypto `slh-dsa`, for the 128-bit SHA2 and SHAKE sets.

use slh_dsa::{
    Sha2_128f, Sha2_128s, Sha2_192f, Sha2_192s, Sha2_256f, Sha2_256s, Shake128f, Shake128s, Shake192f, Shake192s,
    Shake256f, Shake256s, Signature, SigningKey, VerifyingKey,
};
use zeroize::Zeroizing;

use crate::alg::SignatureAlgorithm;
use crate::error::{Error, Result};

macro_rules! dispatch {
    ($alg:expr, $P:ident => $body:expr) => {
        match $alg {
            SignatureAlgorithm::SlhDsaSha2_128s => {
                type $P = Sha2_128s;
                $body
            }
            SignatureAlgorithm::SlhDsaSha2_128f => {
                type $P = Sha2_128f;
                $body
            }
            SignatureAlgorithm::SlhDsaSha2_192s => {
                type $P = Sha2_192s;
                $body
            }
            SignatureAlgorithm::SlhDsaSha2_192f => {
                type $P = Sha2_192f;
                $body
            }
            SignatureAlgorithm::SlhDsaSha2_256s => {
                type $P = Sha2_256s;
                $body
            }
            SignatureAlgorithm::SlhDsaSha2_256f => {
                type $P = Sha2_256f;
                $body
            }
            SignatureAlgorithm::SlhDsaShake128s => {
                type $P = Shake128s;
                $body
            }
            SignatureAlgorithm::SlhDsaShake128f => {
                type $P = Shake128f;
                $body
            }
            SignatureAlgorithm::SlhDsaShake192s => {
                type $P = Shake192s;
                $body
            }
            SignatureAlgorithm::SlhDsaShake192f => {
                type $P = Shake192f;
                $body
            }
            SignatureAlgorithm::SlhDsaShake256s => {
                type $P = Shake256s;
                $body
            }
            SignatureAlgorithm::SlhDsaShake256f => {
                type $P = Shake256f;
                $body
            }
            _ => Err(Error::WrongAlgorithm { expected: "SLH-DSA".into(), found: $alg.name().into() }),
        }
    };
}

/// slh_keygen_internal(SK.seed, SK.prf, PK.seed): returns (pk, sk).
pub(crate) fn keygen(
    alg: SignatureAlgorithm,
    sk_seed: &[u8],
    sk_prf: &[u8],
    pk_seed: &[u8],
) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>)> {
    let n = alg.slh_dsa_n();
    for (what, s) in [("SLH-DSA SK.seed", sk_seed), ("SLH-DSA SK.prf", sk_prf), ("SLH-DSA PK.seed", pk_seed)] {
        if s.len() != n {
            return Err(Error::length(what, n, s.len()));
        }
    }
    dispatch!(alg, P => {
        let key = SigningKey::<P>::slh_keygen_internal(sk_seed, sk_prf, pk_seed);
        let sk = Zeroizing::new(key.to_vec());
        let pk = sk.get(2 * n..).unwrap_or_default().to_vec();
        Ok((pk, sk))
    })
}

/// Checks that a 4n-byte private key's PK.root is the root its seeds produce.
pub(crate) fn private_key_is_consistent(alg: SignatureAlgorithm, sk: &[u8]) -> Result<bool> {
    let n = alg.slh_dsa_n();
    if sk.len() != 4 * n {
        return Err(Error::length("SLH-DSA private key", 4 * n, sk.len()));
    }
    let (seeds, pk) = sk.split_at(2 * n);
    let (_, regenerated) = keygen(alg, &seeds[..n], &seeds[n..], &pk[..n])?;
    Ok(bool::from(subtle::ConstantTimeEq::ct_eq(&regenerated[..], sk)))
}

/// slh-sign(M, ctx, SK) with `opt_rand` (`None` = deterministic, PK.seed).
pub(crate) fn sign(
    alg: SignatureAlgorithm,
    sk: &[u8],
    msg: &[u8],
    ctx: &[u8],
    opt_rand: Option<&[u8]>,
) -> Result<Vec<u8>> {
    if ctx.len() > 255 {
        return Err(Error::ContextTooLong { found: ctx.len() });
    }
    dispatch!(alg, P => {
        let key = SigningKey::<P>::try_from(sk).map_err(|_| Error::length("SLH-DSA private key", alg.expanded_key_len(), sk.len()))?;
        key.try_sign_with_context(msg, ctx, opt_rand).map(|s| s.to_vec()).map_err(|_| Error::Crypto)
    })
}

/// slh-verify(M, sig, ctx, PK).
pub(crate) fn verify(alg: SignatureAlgorithm, pk: &[u8], msg: &[u8], ctx: &[u8], sig: &[u8]) -> Result<()> {
    if ctx.len() > 255 {
        return Err(Error::ContextTooLong { found: ctx.len() });
    }
    dispatch!(alg, P => {
        let key = VerifyingKey::<P>::try_from(pk).map_err(|_| Error::length("SLH-DSA public key", alg.public_key_len(), pk.len()))?;
        let sig = Signature::<P>::try_from(sig).map_err(|_| Error::VerificationFailed)?;
        key.try_verify_with_context(msg, ctx, &sig).map_err(|_| Error::VerificationFailed)
    })
}

/// slh_verify_internal (FIPS 205 Algorithm 20), for ACVP conformance only.
#[cfg(feature = "hazmat")]
pub(crate) fn verify_internal(alg: SignatureAlgorithm, pk: &[u8], msg: &[u8], sig: &[u8]) -> Result<()> {
    dispatch!(alg, P => {
        let key = VerifyingKey::<P>::try_from(pk).map_err(|_| Error::length("SLH-DSA public key", alg.public_key_len(), pk.len()))?;
        let sig = Signature::<P>::try_from(sig).map_err(|_| Error::VerificationFailed)?;
        key.slh_verify_internal(&[msg], &sig).map_err(|_| Error::VerificationFailed)
    })
}
