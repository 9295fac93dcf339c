//! HKDF (RFC 5869) over SHA-256/384/512 and SHA3-256/512.
//!
//! ```
//! use qubesec_core::{HashAlgorithm, kdf};
//! let okm = kdf::derive(HashAlgorithm::Sha3_256, b"input key material", b"salt", b"context", 42)?;
//! assert_eq!(okm.len(), 42);
//! # Ok::<(), qubesec_core::Error>(())
//! ```

use hkdf::{GenericHkdf, HmacImpl};
use zeroize::Zeroizing;

use crate::alg::HashAlgorithm;
use crate::error::{Error, Result};

/// A pseudorandom key: the output of HKDF-Extract. Zeroized on drop; `Debug` redacts it.
pub struct Prk {
    hash: HashAlgorithm,
    bytes: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for Prk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Prk").field("hash", &self.hash).field("bytes", &"<redacted>").finish()
    }
}

impl Prk {
    /// Wraps an existing PRK (e.g. from another HKDF implementation).
    ///
    /// # Errors
    /// [`Error::InvalidLength`] if `bytes` is shorter than the hash output.
    pub fn from_bytes(hash: HashAlgorithm, bytes: &[u8]) -> Result<Self> {
        if bytes.len() < hash.output_len() {
            return Err(Error::InvalidLength {
                what: "HKDF PRK",
                expected: format!("at least {}", hash.output_len()),
                found: bytes.len(),
            });
        }
        Ok(Self { hash, bytes: Zeroizing::new(bytes.to_vec()) })
    }

    /// The PRK bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The hash this PRK belongs to.
    pub fn hash(&self) -> HashAlgorithm {
        self.hash
    }
}

/// The largest output HKDF-Expand allows for `hash`: 255 * HashLen.
pub const fn max_output_len(hash: HashAlgorithm) -> usize {
    255 * hash.output_len()
}

fn check_len(hash: HashAlgorithm, len: usize) -> Result<()> {
    if len == 0 || len > max_output_len(hash) {
        return Err(Error::KdfLength { requested: len, max: max_output_len(hash), hash: hash.name() });
    }
    Ok(())
}

/// Binds `$K` to the HMAC implementation for `$hash`.
macro_rules! with_hash {
    ($hash:expr, $K:ident => $body:expr) => {
        match $hash {
            HashAlgorithm::Sha256 => {
                type $K = hmac::Hmac<sha2::Sha256>;
                $body
            }
            HashAlgorithm::Sha384 => {
                type $K = hmac::Hmac<sha2::Sha384>;
                $body
            }
            HashAlgorithm::Sha512 => {
                type $K = hmac::Hmac<sha2::Sha512>;
                $body
            }
            HashAlgorithm::Sha3_256 => {
                type $K = hmac::Hmac<sha3::Sha3_256>;
                $body
            }
            HashAlgorithm::Sha3_512 => {
                type $K = hmac::Hmac<sha3::Sha3_512>;
                $body
            }
        }
    };
}

/// HKDF-Extract(salt, IKM). An empty salt means HashLen zero bytes (RFC 5869 §2.2).
pub fn extract(hash: HashAlgorithm, salt: &[u8], ikm: &[u8]) -> Prk {
    let bytes = with_hash!(hash, K => extract_with::<K>(salt, ikm));
    Prk { hash, bytes }
}

/// HKDF-Expand(PRK, info, L).
///
/// # Errors
/// [`Error::KdfLength`] unless `1 <= len <= 255 * HashLen`.
pub fn expand(prk: &Prk, info: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>> {
    check_len(prk.hash, len)?;
    let mut okm = Zeroizing::new(vec![0u8; len]);
    with_hash!(prk.hash, K => expand_into::<K>(&prk.bytes, info, &mut okm))?;
    Ok(okm)
}

/// One-shot HKDF: Expand(Extract(salt, IKM), info, L).
///
/// # Errors
/// [`Error::KdfLength`] unless `1 <= len <= 255 * HashLen`.
pub fn derive(hash: HashAlgorithm, ikm: &[u8], salt: &[u8], info: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>> {
    check_len(hash, len)?;
    expand(&extract(hash, salt, ikm), info, len)
}

/// Extract for any HMAC `hkdf` supports; shared by the public API and the RFC 5869 SHA-1 tests.
pub(crate) fn extract_with<K: HmacImpl>(salt: &[u8], ikm: &[u8]) -> Zeroizing<Vec<u8>> {
    let (mut prk, kdf) = GenericHkdf::<K>::extract(Some(salt), ikm);
    let out = Zeroizing::new(prk.to_vec());
    zeroize::Zeroize::zeroize(prk.as_mut_slice());
    drop(kdf);
    out
}

/// Expand for any HMAC `hkdf` supports; shared by the public API and the RFC 5869 SHA-1 tests.
pub(crate) fn expand_into<K: HmacImpl>(prk: &[u8], info: &[u8], okm: &mut [u8]) -> Result<()> {
    let len = K::output_size();
    let kdf = GenericHkdf::<K>::from_prk(prk).map_err(|_| Error::length("HKDF PRK", len, prk.len()))?;
    kdf.expand(info, okm).map_err(|_| Error::KdfLength { requested: okm.len(), max: 255 * len, hash: "HKDF hash" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_zero_and_too_long_outputs_with_the_limit() {
        let err = derive(HashAlgorithm::Sha256, b"k", b"", b"", 255 * 32 + 1).unwrap_err();
        assert_eq!(err, Error::KdfLength { requested: 8161, max: 8160, hash: "sha256" });
        assert!(derive(HashAlgorithm::Sha3_512, b"k", b"", b"", 0).is_err());
        assert_eq!(derive(HashAlgorithm::Sha3_512, b"k", b"", b"", 255 * 64).unwrap().len(), 16320);
    }

    #[test]
    fn extract_then_expand_equals_one_shot() {
        for h in HashAlgorithm::ALL {
            let prk = extract(h, b"salt", b"ikm");
            assert_eq!(prk.as_bytes().len(), h.output_len());
            let a = expand(&prk, b"info", 100).unwrap();
            let b = derive(h, b"ikm", b"salt", b"info", 100).unwrap();
            assert_eq!(*a, *b);
            assert!(!format!("{prk:?}").contains(&hex::encode(prk.as_bytes())));
        }
    }

    /// RFC 5869 Appendix A, all seven cases, through the same generic extract/expand
    /// the public API uses (SHA-1 is not offered publicly, so A.4-A.7 run here).
    #[test]
    fn rfc5869_appendix_a() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/vectors/rfc5869/hkdf.json");
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e} (check out shared/ beside the repo)"));
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let hx = |t: &serde_json::Value, f: &str| hex::decode(t[f].as_str().unwrap()).unwrap();
        let mut ran = 0;
        for t in doc["tests"].as_array().unwrap() {
            let mut okm = vec![0u8; usize::try_from(t["L"].as_u64().unwrap()).unwrap()];
            let prk = match t["hash"].as_str().unwrap() {
                "SHA-256" => {
                    let prk = extract_with::<hmac::Hmac<sha2::Sha256>>(&hx(t, "salt"), &hx(t, "ikm"));
                    expand_into::<hmac::Hmac<sha2::Sha256>>(&prk, &hx(t, "info"), &mut okm).unwrap();
                    prk
                }
                "SHA-1" => {
                    let prk = extract_with::<hmac::Hmac<sha1::Sha1>>(&hx(t, "salt"), &hx(t, "ikm"));
                    expand_into::<hmac::Hmac<sha1::Sha1>>(&prk, &hx(t, "info"), &mut okm).unwrap();
                    prk
                }
                other => panic!("unexpected hash {other}"),
            };
            assert_eq!(*prk, hx(t, "prk"), "tcId {}", t["tcId"]);
            assert_eq!(okm, hx(t, "okm"), "tcId {}", t["tcId"]);
            ran += 1;
        }
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "vectors rfc5869/hkdf.json (all hashes): {ran} cases passed, 0 failed");
        assert_eq!(ran, 7);
    }

    #[test]
    fn short_prk_is_rejected() {
        assert!(Prk::from_bytes(HashAlgorithm::Sha512, &[0u8; 32]).is_err());
    }
}
