//! Replication bundles: KEK versions sealed to another control-plane node's
//! ML-KEM-1024 or X-Wing public key and signed by the exporting node's
//! ML-DSA-65 identity (format 2; the full specification, with the replay
//! rule, is in `docs/kms-keystore-format.md`).
//!
//! ```text
//! offset  size  field (signed envelope)
//! 0       8     magic "QSKMSBDL"
//! 8       2     bundle format version, u16 big-endian (2)
//! 10      2     sealing scheme, u16 (1 = KEM + HKDF-SHA256 + AES-256-GCM)
//! 12      8     creation time, Unix milliseconds, u64
//! 20      32    recipient fingerprint: SHA-256 of the recipient's DER SPKI
//! 52      4     the exporting node's active version, u32
//! 56      2     S, length of the signer's public key
//! 58      S     signer public key (ML-DSA-65), DER SPKI
//! 58+S    4     L, length of the sealed payload
//! 62+S    L     sealed payload (scheme-specific; its AAD starts with bytes 0..58+S)
//! 62+S+L  2     G, signature length
//! 64+S+L  G     ML-DSA-65 signature over bytes 0..62+S+L, context "qubesec-kms bundle v2"
//! ```
//! Sealing scheme 1 payload: `A (1) | KEM name (A) | C (2) | KEM ciphertext (C) |
//! nonce (12) | AES-256-GCM(K, nonce, key list)` with AAD = the envelope bytes
//! before the payload followed by the payload bytes before the AES ciphertext,
//! and `K = HKDF-SHA256(IKM = KEM shared secret, salt = "", info = "qubesec-kms bundle v2 sealing 1")`.
//!
//! [`verify`] checks the envelope and signature before anything is
//! decrypted; [`Verified::open`] then decapsulates and decrypts.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use qubesec_core::{
    Fingerprint, HashAlgorithm, KemAlgorithm, KemCiphertext, KemPrivateKey, KemPublicKey, PrivateKey, PublicKey,
};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keystore::identity::{self, NodeIdentity};
use crate::keystore::kek::{self, KekVersion};

/// The bundle magic.
pub const MAGIC: &[u8; 8] = b"QSKMSBDL";
/// The bundle format this build writes and reads.
pub const VERSION: u16 = 2;
/// The signature context string.
pub const SIGNATURE_CONTEXT: &[u8] = b"qubesec-kms bundle v2";

/// How the key list is sealed to the recipient. The envelope and its
/// signature do not depend on it, so a new scheme (HPKE) is a new value here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sealing {
    /// ML-KEM-1024 or X-Wing, HKDF-SHA256, AES-256-GCM.
    KemHkdfAesGcm,
}

impl Sealing {
    fn code(self) -> u16 {
        match self {
            Sealing::KemHkdfAesGcm => 1,
        }
    }

    fn from_code(code: u16) -> Result<Self> {
        match code {
            1 => Ok(Sealing::KemHkdfAesGcm),
            other => Err(bad(format!("sealing scheme {other} is not supported by this build"))),
        }
    }
}

const SEALING_1_INFO: &[u8] = b"qubesec-kms bundle v2 sealing 1";

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
    qubesec_core::kdf::derive(HashAlgorithm::Sha256, ss, b"", SEALING_1_INFO, 32).map_err(|e| bad(format!("HKDF: {e}")))
}

/// A recipient's public key, checked against the fingerprint the operator
/// compared out of band.
#[derive(Debug)]
pub struct Recipient {
    key: KemPublicKey,
    fingerprint: Fingerprint,
}

impl Recipient {
    /// Reads a PEM public key and refuses it unless its fingerprint is `expected`.
    ///
    /// # Errors
    /// [`Error::Bundle`] for an unusable key or a fingerprint mismatch.
    pub fn from_pem(pem: &[u8], expected: &str) -> Result<Self> {
        let expected =
            identity::parse_fingerprint(expected).map_err(|e| bad(format!("--recipient-fingerprint: {e}")))?;
        let public = PublicKey::from_pem(pem).map_err(|e| bad(format!("recipient public key: {e}")))?;
        let fingerprint = Fingerprint::of_public_key(&public).map_err(|e| bad(format!("recipient public key: {e}")))?;
        if fingerprint.as_bytes() != &expected {
            return Err(bad(format!(
                "the recipient public key's fingerprint is {fingerprint}, not the expected sha256:{}; \
                 compare the fingerprint with the receiving node's operator again",
                hex::encode(expected)
            )));
        }
        let key = public.into_kem().map_err(|e| bad(format!("recipient public key: {e}")))?;
        check_alg(key.algorithm())?;
        Ok(Self { key, fingerprint })
    }

    /// The recipient's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

/// Seals `versions` to `recipient` and signs the bundle with `signer`.
/// `active` is the exporting node's active version (used only by a node
/// whose keystore the bundle creates). `created_ms` is the creation time.
///
/// # Errors
/// [`Error::Bundle`] for encapsulation, sealing or signing failures.
pub fn export<'a>(
    versions: impl Iterator<Item = &'a KekVersion>,
    active: u32,
    recipient: &Recipient,
    signer: &NodeIdentity,
    created_ms: u64,
) -> Result<Vec<u8>> {
    let spki = signer.spki_der();
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&Sealing::KemHkdfAesGcm.code().to_be_bytes());
    out.extend_from_slice(&created_ms.to_be_bytes());
    out.extend_from_slice(recipient.fingerprint.as_bytes());
    out.extend_from_slice(&active.to_be_bytes());
    out.extend_from_slice(&u16::try_from(spki.len()).map_err(|_| bad("signer key too long"))?.to_be_bytes());
    out.extend_from_slice(spki);
    let payload = seal_1(&recipient.key, &out, &kek::encode_list(versions))?;
    out.extend_from_slice(&u32::try_from(payload.len()).map_err(|_| bad("payload too large"))?.to_be_bytes());
    out.extend_from_slice(&payload);
    let sig = signer.sign(&out, SIGNATURE_CONTEXT).map_err(|e| bad(format!("signing: {e}")))?;
    out.extend_from_slice(&u16::try_from(sig.len()).map_err(|_| bad("signature too long"))?.to_be_bytes());
    out.extend_from_slice(&sig);
    Ok(out)
}

fn seal_1(recipient: &KemPublicKey, envelope: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
    let (ct, ss) = recipient.encapsulate().map_err(|e| bad(format!("encapsulation: {e}")))?;
    let key = wrap_key(ss.as_bytes())?;
    let name = recipient.algorithm().to_string();
    let mut head = Vec::new();
    head.push(u8::try_from(name.len()).map_err(|_| bad("algorithm name too long"))?);
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(
        &u16::try_from(ct.as_bytes().len()).map_err(|_| bad("KEM ciphertext too long"))?.to_be_bytes(),
    );
    head.extend_from_slice(ct.as_bytes());
    let nonce = crate::envelope::random_nonce()?;
    head.extend_from_slice(&nonce);
    let aad = [envelope, &head].concat();
    let cipher = Aes256Gcm::new_from_slice(&key).map_err(|e| bad(format!("AES key: {e}")))?;
    let sealed =
        cipher.encrypt(&Nonce::from(nonce), Payload { msg: plain, aad: &aad }).map_err(|_| bad("sealing failed"))?;
    head.extend_from_slice(&sealed);
    Ok(head)
}

/// Who may sign bundles this node imports: public keys or their fingerprints.
#[derive(Debug, Default)]
pub struct TrustedSigners {
    fingerprints: Vec<[u8; 32]>,
}

impl TrustedSigners {
    /// An empty set (trusts nobody).
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts a signer given as `sha256:<hex>` or as PEM public key text.
    ///
    /// # Errors
    /// [`Error::Bundle`] when it is neither, or the key is not ML-DSA-65.
    pub fn add(&mut self, spec: &[u8]) -> Result<()> {
        let text = std::str::from_utf8(spec).unwrap_or_default().trim();
        if text.starts_with("sha256:") {
            let fp = identity::parse_fingerprint(text).map_err(|e| bad(format!("--trusted-signer: {e}")))?;
            self.fingerprints.push(fp);
            return Ok(());
        }
        let public = PublicKey::from_pem(spec).map_err(|e| bad(format!("--trusted-signer: {e}")))?;
        let alg = public.algorithm();
        if alg != qubesec_core::Algorithm::Signature(identity::ALGORITHM) {
            return Err(bad(format!(
                "--trusted-signer: a node identity is {}, this key is {alg}",
                identity::ALGORITHM
            )));
        }
        let fp = Fingerprint::of_public_key(&public).map_err(|e| bad(format!("--trusted-signer: {e}")))?;
        self.fingerprints.push(*fp.as_bytes());
        Ok(())
    }

    fn contains(&self, fp: &[u8; 32]) -> bool {
        self.fingerprints.iter().any(|f| f == fp)
    }

    fn describe(&self) -> String {
        self.fingerprints.iter().map(|f| format!("sha256:{}", hex::encode(f))).collect::<Vec<_>>().join(", ")
    }
}

/// A bundle whose envelope parsed, whose signer is trusted, whose signature
/// verified and whose recipient is this node. Nothing is decrypted yet.
#[derive(Debug)]
pub struct Verified<'a> {
    bytes: &'a [u8],
    /// The signer's fingerprint bytes.
    pub signer: [u8; 32],
    /// The creation time, Unix milliseconds.
    pub created_ms: u64,
    /// The exporting node's active version.
    pub exporter_active: u32,
    sealing: Sealing,
    envelope_end: usize,
    payload_at: usize,
    payload_end: usize,
}

/// Checks a bundle before anything in it is decrypted: envelope, trusted
/// signer, signature (over everything, including the recipient fingerprint
/// and the creation time), and that it was made for `recipient_key`.
///
/// # Errors
/// [`Error::Bundle`] naming the first check that failed.
pub fn verify<'a>(bundle: &'a [u8], trusted: &TrustedSigners, recipient_key: &KemPrivateKey) -> Result<Verified<'a>> {
    let mut r = Reader { bytes: bundle, pos: 0 };
    if r.take(8)? != MAGIC {
        return Err(bad("not a qubesec-kms bundle (bad magic)"));
    }
    let version = u16::from_be_bytes(r.array::<2>()?);
    if version == 1 {
        return Err(bad(
            "bundle format 1 is unsigned and no longer accepted; re-export it with this version of qubesec-kms",
        ));
    }
    if version != VERSION {
        return Err(bad(format!("bundle format {version} is not supported (this build reads {VERSION})")));
    }
    let sealing = Sealing::from_code(u16::from_be_bytes(r.array::<2>()?))?;
    let created_ms = u64::from_be_bytes(r.array::<8>()?);
    let recipient_fp = r.array::<32>()?;
    let exporter_active = u32::from_be_bytes(r.array::<4>()?);
    let spki_len = usize::from(u16::from_be_bytes(r.array::<2>()?));
    let spki = r.take(spki_len)?;
    let envelope_end = r.pos;
    let payload_len = u32::from_be_bytes(r.array::<4>()?) as usize;
    let payload_at = r.pos;
    r.take(payload_len)?;
    let payload_end = r.pos;
    let sig_len = usize::from(u16::from_be_bytes(r.array::<2>()?));
    let sig = r.take(sig_len)?;
    if r.pos != bundle.len() {
        return Err(bad("trailing bytes after the signature"));
    }

    let signer = Fingerprint::of_bytes(spki);
    if !trusted.contains(signer.as_bytes()) {
        return Err(bad(format!(
            "bundle is signed by {signer}, which is not a trusted signer (trusted: {}); \
             pass the exporting node's identity with --trusted-signer",
            trusted.describe()
        )));
    }
    let public = PublicKey::from_spki_der(spki)
        .and_then(PublicKey::into_signature)
        .map_err(|e| bad(format!("signer public key: {e}")))?;
    if public.algorithm() != identity::ALGORITHM {
        return Err(bad(format!("signer key is {}, node identities are {}", public.algorithm(), identity::ALGORITHM)));
    }
    public
        .verify_bytes(&bundle[..payload_end], SIGNATURE_CONTEXT, sig)
        .map_err(|_| bad(format!("the signature does not verify: the bundle was altered or not made by {signer}")))?;

    let mine = Fingerprint::of_public_key(&PublicKey::from(recipient_key.public_key().clone()))
        .map_err(|e| bad(format!("recipient key: {e}")))?;
    if mine.as_bytes() != &recipient_fp {
        return Err(bad(format!(
            "bundle was made for recipient sha256:{}, but this node's key is {mine}",
            hex::encode(recipient_fp)
        )));
    }
    Ok(Verified {
        bytes: bundle,
        signer: *signer.as_bytes(),
        created_ms,
        exporter_active,
        sealing,
        envelope_end,
        payload_at,
        payload_end,
    })
}

impl Verified<'_> {
    /// Decapsulates and decrypts the key list.
    ///
    /// # Errors
    /// [`Error::Bundle`] if it does not open or holds a malformed list.
    pub fn open(&self, recipient_key: &KemPrivateKey) -> Result<Vec<KekVersion>> {
        match self.sealing {
            Sealing::KemHkdfAesGcm => self.open_1(recipient_key),
        }
    }

    fn open_1(&self, recipient_key: &KemPrivateKey) -> Result<Vec<KekVersion>> {
        let payload = &self.bytes[self.payload_at..self.payload_end];
        let mut r = Reader { bytes: payload, pos: 0 };
        let name_len = usize::from(r.array::<1>()?[0]);
        let name = std::str::from_utf8(r.take(name_len)?).map_err(|_| bad("algorithm name is not UTF-8"))?;
        let alg: KemAlgorithm = name.parse().map_err(|e| bad(format!("algorithm {name:?}: {e}")))?;
        check_alg(alg)?;
        if recipient_key.algorithm() != alg {
            return Err(bad(format!("bundle is sealed to {alg}, this node's key is {}", recipient_key.algorithm())));
        }
        let ct_len = usize::from(u16::from_be_bytes(r.array::<2>()?));
        let ct = KemCiphertext::from_bytes(alg, r.take(ct_len)?).map_err(|e| bad(format!("KEM ciphertext: {e}")))?;
        let nonce = r.array::<12>()?;
        let aad = [&self.bytes[..self.envelope_end], &payload[..r.pos]].concat();
        let ss = recipient_key.decapsulate(&ct).map_err(|_| bad("decapsulation failed"))?;
        let key = wrap_key(ss.as_bytes())?;
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|e| bad(format!("AES key: {e}")))?;
        let plain = Zeroizing::new(
            cipher
                .decrypt(&Nonce::from(nonce), Payload { msg: &payload[r.pos..], aad: &aad })
                .map_err(|_| bad("the key list does not open with this node's key"))?,
        );
        let versions = kek::decode_list(&plain).map_err(|what| bad(format!("key list: {what}")))?;
        if !versions.iter().any(|k| k.version() == self.exporter_active) {
            return Err(bad(format!("the exporter's active version {} is not in the bundle", self.exporter_active)));
        }
        Ok(versions)
    }
}

/// Reads a recipient (node) private key, PEM PKCS#8.
///
/// # Errors
/// [`Error::Bundle`] when it is not an ML-KEM-1024 or X-Wing key.
pub fn recipient_key_from_pem(pem: &[u8]) -> Result<KemPrivateKey> {
    let key = PrivateKey::from_pem(pem)
        .and_then(PrivateKey::into_kem)
        .map_err(|e| bad(format!("recipient private key: {e}")))?;
    check_alg(key.algorithm())?;
    Ok(key)
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
    use crate::keystore::KeySet;

    struct Node {
        kem: KemPrivateKey,
        pem: String,
        fp: String,
        id: NodeIdentity,
    }

    fn node(alg: KemAlgorithm) -> Node {
        let sk = PrivateKey::generate(qubesec_core::Algorithm::Kem(alg)).unwrap();
        let pk = sk.public_key().unwrap();
        let fp = Fingerprint::of_public_key(&pk).unwrap().to_string();
        Node { kem: sk.into_kem().unwrap(), pem: pk.to_spki_pem().unwrap(), fp, id: NodeIdentity::generate().unwrap() }
    }

    fn trust(n: &Node) -> TrustedSigners {
        let mut t = TrustedSigners::new();
        t.add(n.id.fingerprint().to_string().as_bytes()).unwrap();
        t
    }

    fn make(from: &Node, to: &Node, keys: &KeySet, created: u64) -> Vec<u8> {
        let r = Recipient::from_pem(to.pem.as_bytes(), &to.fp).unwrap();
        export(keys.versions(), keys.active_version(), &r, &from.id, created).unwrap()
    }

    #[test]
    fn round_trip_for_both_kems() {
        for alg in [KemAlgorithm::MlKem1024, KemAlgorithm::XWing] {
            let (a, b) = (node(alg), node(alg));
            let mut keys = KeySet::first().unwrap();
            keys.stage().unwrap();
            let bundle = make(&a, &b, &keys, 7);
            let v = verify(&bundle, &trust(&a), &b.kem).unwrap();
            assert_eq!((v.created_ms, v.exporter_active, v.signer), (7, 1, *a.id.fingerprint().as_bytes()));
            let back = v.open(&b.kem).unwrap();
            assert_eq!(back.len(), 2);
            assert_eq!(back[1].key_id(), keys.get(2).unwrap().key_id());
        }
    }

    #[test]
    fn every_byte_is_covered_by_the_signature() {
        let (a, b) = (node(KemAlgorithm::XWing), node(KemAlgorithm::XWing));
        let bundle = make(&a, &b, &KeySet::first().unwrap(), 1);
        let spki_len = a.id.spki_der().len();
        // Header fields, the signer key, the payload and the signature itself.
        for i in [9, 11, 15, 30, 54, 57, 58 + spki_len / 2, 70 + spki_len, bundle.len() - 1] {
            let mut t = bundle.clone();
            t[i] ^= 1;
            assert!(verify(&t, &trust(&a), &b.kem).is_err(), "byte {i} not covered");
        }
    }

    #[test]
    fn refusals_are_precise() {
        let (a, b, c) = (node(KemAlgorithm::MlKem1024), node(KemAlgorithm::MlKem1024), node(KemAlgorithm::MlKem1024));
        let keys = KeySet::first().unwrap();
        let bundle = make(&a, &b, &keys, 1);
        // Untrusted signer.
        let err = verify(&bundle, &trust(&c), &b.kem).unwrap_err().to_string();
        assert!(err.contains("not a trusted signer"), "{err}");
        // Wrong recipient (C cannot even claim it).
        let err = verify(&bundle, &trust(&a), &c.kem).unwrap_err().to_string();
        assert!(err.contains("was made for recipient"), "{err}");
        // An attacker re-signs A's bundle with its own key: not trusted; and
        // a trusted third node re-signing it fails the AEAD (signer is in the AAD).
        let mut resigned = bundle[..bundle.len()].to_vec();
        let sig_len = u16::from_be_bytes([resigned[resigned.len() - 3311], resigned[resigned.len() - 3310]]);
        assert_eq!(sig_len, 3309, "ML-DSA-65 signatures are 3309 bytes");
        resigned.truncate(resigned.len() - 3311);
        let spki_c = c.id.spki_der().to_vec();
        let spki_a_len = a.id.spki_der().len();
        resigned.splice(58..58 + spki_a_len, spki_c);
        let sig = c.id.sign(&resigned, SIGNATURE_CONTEXT).unwrap();
        resigned.extend_from_slice(&(sig.len() as u16).to_be_bytes());
        resigned.extend_from_slice(&sig);
        let v = verify(&resigned, &trust(&c), &b.kem).unwrap();
        assert!(v.open(&b.kem).unwrap_err().to_string().contains("does not open"));
        // Recipient fingerprint mismatch at export.
        let err = Recipient::from_pem(b.pem.as_bytes(), &c.fp).unwrap_err().to_string();
        assert!(err.contains("not the expected"), "{err}");
        // Weak recipients, unsigned format 1, truncation.
        let weak = PrivateKey::generate(qubesec_core::Algorithm::Kem(KemAlgorithm::MlKem768)).unwrap();
        let weak_pk = weak.public_key().unwrap();
        let weak_fp = Fingerprint::of_public_key(&weak_pk).unwrap().to_string();
        let err = Recipient::from_pem(weak_pk.to_spki_pem().unwrap().as_bytes(), &weak_fp).unwrap_err();
        assert!(err.to_string().contains("ML-KEM-1024 or X-Wing"), "{err}");
        let mut v1 = bundle.clone();
        v1[9] = 1;
        assert!(verify(&v1, &trust(&a), &b.kem).unwrap_err().to_string().contains("unsigned"));
        for cut in [0, 8, 60, bundle.len() - 1] {
            assert!(verify(&bundle[..cut], &trust(&a), &b.kem).is_err(), "cut at {cut}");
        }
    }
}
