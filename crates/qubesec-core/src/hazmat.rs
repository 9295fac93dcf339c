//! FIPS 204 / FIPS 205 *internal* interfaces, for ACVP known-answer tests only.
//!
//! These sign and verify the message exactly as given, without the
//! `0 || len(ctx) || ctx` domain separation of the external interface. Using
//! them for anything but conformance testing breaks that separation. Compiled
//! only with the `hazmat` feature.

use crate::alg::SignatureAlgorithm;
use crate::error::Result;
use crate::sig::{SigningKey, VerifyingKey, mldsa, slhdsa};

/// ML-DSA.Sign_internal (FIPS 204 Algorithm 7) with the given `rnd`.
///
/// # Errors
/// [`crate::Error::WrongAlgorithm`] for SLH-DSA keys.
pub fn ml_dsa_sign_internal(key: &SigningKey, msg: &[u8], rnd: &[u8; 32]) -> Result<Vec<u8>> {
    let key = mldsa::SignKey::from_bytes(key.algorithm(), key.expanded_key())?;
    mldsa::internal::sign(&key, msg, rnd)
}

/// ML-DSA.Verify_internal (FIPS 204 Algorithm 8).
///
/// # Errors
/// [`crate::Error::VerificationFailed`].
pub fn ml_dsa_verify_internal(key: &VerifyingKey, msg: &[u8], sig: &[u8]) -> Result<()> {
    mldsa::internal::verify(key.algorithm(), key.as_bytes(), msg, sig)
}

/// slh_verify_internal (FIPS 205 Algorithm 20).
///
/// # Errors
/// [`crate::Error::VerificationFailed`].
pub fn slh_dsa_verify_internal(key: &VerifyingKey, msg: &[u8], sig: &[u8]) -> Result<()> {
    slhdsa::verify_internal(key.algorithm(), key.as_bytes(), msg, sig)
}

/// Whether a signature algorithm is ML-DSA (re-exported for test code).
pub fn is_ml_dsa(alg: SignatureAlgorithm) -> bool {
    alg.is_ml_dsa()
}
