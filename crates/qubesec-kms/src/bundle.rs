//! Replication bundles: a keystore's KEK versions sealed to another
//! control-plane node's ML-KEM-1024 or X-Wing public key.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "QSKMSBDL"
//! 8       2     bundle version, u16 big-endian (1)
//! 10      1     length A of the algorithm name
//! 11      A     KEM algorithm, canonical name ("ML-KEM-1024" or "X-Wing")
//! ..      2     length C of the KEM ciphertext, u16 big-endian
//! ..      C     KEM ciphertext
//! ..      12    AES-GCM nonce
//! ..      4     sealed length L, u32 big-endian
//! ..      L     AES-256-GCM(K, nonce, key set), AAD = every byte before it
//! ```
//! `K = HKDF-SHA256(IKM = KEM shared secret, salt = "", info = "qubesec-kms bundle v1")`.
//! The key set encoding is the keystore's (see `docs/kms-keystore-format.md`).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use qubesec_core::{HashAlgorithm, KemAlgorithm, KemCiphertext, PrivateKey, PublicKey};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keystore::KeySet;

/// The bundle magic.
pub const MAGIC: &[u8; 8] = b"QSKMSBDL";
const VERSION: u16 = 1;
const INFO: &[u8] = b"qubesec-kms bundle v1";

fn bad(what: impl Into<String>) -> Error {
    Error::Bundle(what.into())
}

fn check_alg(alg: KemAlgorithm) -> Result<()> {
    match alg {
        KemAlgorithm::MlKem1024 | KemAlgorithm::XWing => Ok(()),
        other => Err(bad(format!("recipient key is {other}; bundles need ML-KEM-1024 or X-Wing"))),
    }
}

fn wrap_key(ss: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    qubesec_core::kdf::derive(HashAlgorithm::Sha256, ss, b"", INFO, 32).map_err(|e| bad(format!("HKDF: {e}")))
}

/// Seals `keys` to the recipient public key (PEM SubjectPublicKeyInfo).
///
/// # Errors
/// [`Error::Bundle`] for an unusable recipient key.
pub fn export(keys: &KeySet, recipient_pem: &[u8]) -> Result<Vec<u8>> {
    let public = PublicKey::from_pem(recipient_pem)
        .and_then(PublicKey::into_kem)
        .map_err(|e| bad(format!("recipient public key: {e}")))?;
    check_alg(public.algorithm())?;
    let (ct, ss) = public.encapsulate().map_err(|e| bad(format!("encapsulation: {e}")))?;
    let key = wrap_key(ss.as_bytes())?;
    let name = public.algorithm().to_string();
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.push(u8::try_from(name.len()).map_err(|_| bad("algorithm name too long"))?);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(
        &u16::try_from(ct.as_bytes().len()).map_err(|_| bad("KEM ciphertext too long"))?.to_be_bytes(),
    );
    out.extend_from_slice(ct.as_bytes());
    let nonce = crate::envelope::random_nonce()?;
    out.extend_from_slice(&nonce);
    let plain = keys.encode();
    out.extend_from_slice(&u32::try_from(plain.len() + 16).map_err(|_| bad("key set too large"))?.to_be_bytes());
    let cipher = Aes256Gcm::new_from_slice(&key).map_err(|e| bad(format!("AES key: {e}")))?;
    let sealed =
        cipher.encrypt(&Nonce::from(nonce), Payload { msg: &plain, aad: &out }).map_err(|_| bad("sealing failed"))?;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a bundle with this node's private key (PEM PKCS#8).
///
/// # Errors
/// [`Error::Bundle`] for a malformed bundle, the wrong private key, or tampering
/// (the last two are indistinguishable on purpose).
pub fn import(bundle: &[u8], identity_pem: &[u8]) -> Result<KeySet> {
    let mut r = Reader { bytes: bundle, pos: 0 };
    if r.take(8)? != MAGIC {
        return Err(bad("not a qubesec-kms bundle (bad magic)"));
    }
    let version = u16::from_be_bytes(r.array::<2>()?);
    if version != VERSION {
        return Err(bad(format!("bundle version {version} is not supported (this build reads {VERSION})")));
    }
    let name_len = usize::from(r.array::<1>()?[0]);
    let name = std::str::from_utf8(r.take(name_len)?).map_err(|_| bad("algorithm name is not UTF-8"))?;
    let alg: KemAlgorithm = name.parse().map_err(|e| bad(format!("algorithm {name:?}: {e}")))?;
    check_alg(alg)?;
    let ct_len = usize::from(u16::from_be_bytes(r.array::<2>()?));
    let ct = KemCiphertext::from_bytes(alg, r.take(ct_len)?).map_err(|e| bad(format!("KEM ciphertext: {e}")))?;
    let nonce = r.array::<12>()?;
    let sealed_len = u32::from_be_bytes(r.array::<4>()?) as usize;
    let aad_end = r.pos;
    let sealed = r.take(sealed_len)?;
    if r.pos != bundle.len() {
        return Err(bad("trailing bytes after the sealed key set"));
    }
    let private = PrivateKey::from_pem(identity_pem)
        .and_then(PrivateKey::into_kem)
        .map_err(|e| bad(format!("identity private key: {e}")))?;
    if private.algorithm() != alg {
        return Err(bad(format!("bundle is sealed to {alg}, the identity key is {}", private.algorithm())));
    }
    let ss = private.decapsulate(&ct).map_err(|_| bad("decapsulation failed"))?;
    let key = wrap_key(ss.as_bytes())?;
    let cipher = Aes256Gcm::new_from_slice(&key).map_err(|e| bad(format!("AES key: {e}")))?;
    let plain = Zeroizing::new(
        cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad: &bundle[..aad_end] })
            .map_err(|_| bad("bundle does not open with this identity key (wrong key or tampered)"))?,
    );
    KeySet::decode(&plain).map_err(|what| bad(format!("key set: {what}")))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end =
            self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| bad("bundle is truncated"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pems(alg: KemAlgorithm) -> (Zeroizing<String>, String) {
        let sk = PrivateKey::generate(qubesec_core::Algorithm::Kem(alg)).unwrap();
        let pk = sk.public_key().unwrap().to_spki_pem().unwrap();
        (sk.to_pkcs8_pem().unwrap(), pk)
    }

    #[test]
    fn export_import_round_trip_for_both_kems() {
        for alg in [KemAlgorithm::MlKem1024, KemAlgorithm::XWing] {
            let mut keys = KeySet::first().unwrap();
            keys.rotate().unwrap();
            let (sk, pk) = pems(alg);
            let bundle = export(&keys, pk.as_bytes()).unwrap();
            let back = import(&bundle, sk.as_bytes()).unwrap();
            assert_eq!(back.active().unwrap().key_id(), keys.active().unwrap().key_id());
            assert_eq!(back.versions().count(), 2);

            let mut tampered = bundle.clone();
            *tampered.last_mut().unwrap() ^= 1;
            assert!(import(&tampered, sk.as_bytes()).is_err());
            let (other_sk, _) = pems(alg);
            assert!(import(&bundle, other_sk.as_bytes()).is_err());
            assert!(import(&bundle[..bundle.len() - 3], sk.as_bytes()).is_err());
        }
    }

    #[test]
    fn refuses_weaker_recipients() {
        let (_, pk) = pems(KemAlgorithm::MlKem768);
        let err = export(&KeySet::first().unwrap(), pk.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("ML-KEM-1024 or X-Wing"), "{err}");
    }
}
