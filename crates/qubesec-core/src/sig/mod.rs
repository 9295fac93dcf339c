//! Signatures: ML-DSA-44/65/87 (FIPS 204, pure mode) and SLH-DSA (FIPS 205).
//!
//! Signing is hedged by default (fresh randomness mixed in); deterministic
//! signing is available. Both take a context string of at most 255 bytes.
//!
//! ```
//! use qubesec_core::{SignatureAlgorithm, SigningKey};
//! let key = SigningKey::generate(SignatureAlgorithm::MlDsa65)?;
//! let sig = key.sign(b"attest this", b"qubesec")?;
//! key.verifying_key()?.verify(b"attest this", b"qubesec", &sig)?;
//! # Ok::<(), qubesec_core::Error>(())
//! ```

pub mod composite;
pub(crate) mod mldsa;
pub(crate) mod slhdsa;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::alg::SignatureAlgorithm;
use crate::error::{Error, Result};

/// A signature public (verifying) key of the right length for its algorithm.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    alg: SignatureAlgorithm,
    bytes: Vec<u8>,
}

impl core::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg)
            .field("fingerprint", &crate::Fingerprint::debug_text(self.clone().into()))
            .finish()
    }
}

impl VerifyingKey {
    /// Reads a raw public key, checking its length.
    ///
    /// # Errors
    /// [`Error::InvalidLength`].
    pub fn from_bytes(alg: SignatureAlgorithm, bytes: &[u8]) -> Result<Self> {
        if bytes.len() != alg.public_key_len() {
            return Err(Error::length("signature public key", alg.public_key_len(), bytes.len()));
        }
        Ok(Self { alg, bytes: bytes.to_vec() })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.alg
    }

    /// The raw encoded key.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Verifies `signature` over `msg` with context `ctx` (pure mode).
    ///
    /// # Errors
    /// [`Error::VerificationFailed`] (opaque) if the signature is invalid or
    /// malformed, [`Error::ContextTooLong`] for a context over 255 bytes.
    pub fn verify(&self, msg: &[u8], ctx: &[u8], signature: &Signature) -> Result<()> {
        if signature.alg != self.alg {
            return Err(Error::VerificationFailed);
        }
        self.verify_bytes(msg, ctx, &signature.bytes)
    }

    /// Like [`Self::verify`], over a raw signature of any length (a wrong length fails verification).
    ///
    /// # Errors
    /// As [`Self::verify`].
    pub fn verify_bytes(&self, msg: &[u8], ctx: &[u8], signature: &[u8]) -> Result<()> {
        if self.alg.is_ml_dsa() {
            mldsa::verify(self.alg, &self.bytes, msg, ctx, signature)
        } else {
            slhdsa::verify(self.alg, &self.bytes, msg, ctx, signature)
        }
    }
}

/// A signature of the right length for its algorithm.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Signature {
    alg: SignatureAlgorithm,
    bytes: Vec<u8>,
}

impl Signature {
    /// Reads a raw signature, checking its length.
    ///
    /// # Errors
    /// [`Error::InvalidLength`].
    pub fn from_bytes(alg: SignatureAlgorithm, bytes: &[u8]) -> Result<Self> {
        if bytes.len() != alg.signature_len() {
            return Err(Error::length("signature", alg.signature_len(), bytes.len()));
        }
        Ok(Self { alg, bytes: bytes.to_vec() })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.alg
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The raw bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// The expanded private key: the backend's own boxed type for ML-DSA (no
/// per-operation copies), bytes for SLH-DSA. Both zeroize on drop.
enum Secret {
    MlDsa(mldsa::SignKey),
    SlhDsa(Zeroizing<Vec<u8>>),
}

impl Secret {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::MlDsa(k) => k.as_bytes(),
            Self::SlhDsa(k) => k,
        }
    }
}

/// A signature private (signing) key.
///
/// ML-DSA keys remember their 32-byte seed `xi` when generated or loaded from
/// one; an ML-DSA key loaded from the expanded form alone has a public key
/// only if one was supplied (it cannot be derived cheaply from `sk`).
/// Zeroized on drop; `Debug` redacts; `==` is constant time.
pub struct SigningKey {
    alg: SignatureAlgorithm,
    seed: Option<Zeroizing<Vec<u8>>>,
    expanded: Secret,
    public: Option<VerifyingKey>,
}

impl core::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("has_seed", &self.seed.is_some())
            .field("private", &"<redacted>")
            .field("public", &self.public)
            .finish()
    }
}

impl SigningKey {
    /// Generates a key pair from OS randomness (an ML-DSA seed `xi`, or the
    /// three SLH-DSA seeds).
    ///
    /// # Errors
    /// [`Error::Randomness`] if the OS generator fails.
    pub fn generate(alg: SignatureAlgorithm) -> Result<Self> {
        if alg.is_ml_dsa() {
            return Self::from_seed(alg, &crate::rand::array::<32>()?[..]);
        }
        let n = alg.slh_dsa_n();
        let seeds = crate::rand::bytes(3 * n)?;
        Self::from_slh_dsa_seeds(alg, &seeds[..n], &seeds[n..2 * n], &seeds[2 * n..])
    }

    /// Derives an ML-DSA key pair from its 32-byte seed `xi` (FIPS 204 KeyGen_internal).
    ///
    /// # Errors
    /// [`Error::WrongAlgorithm`] for SLH-DSA, [`Error::InvalidLength`] for a bad seed.
    pub fn from_seed(alg: SignatureAlgorithm, xi: &[u8]) -> Result<Self> {
        if !alg.is_ml_dsa() {
            return Err(Error::WrongAlgorithm { expected: "ML-DSA".into(), found: alg.name().into() });
        }
        let xi: Zeroizing<[u8; 32]> = Zeroizing::new(mldsa::array::<32>("ML-DSA seed", xi)?);
        let (pk, sk) = mldsa::keygen(alg, &xi)?;
        Ok(Self {
            alg,
            seed: Some(Zeroizing::new(xi.to_vec())),
            expanded: Secret::MlDsa(sk),
            public: Some(VerifyingKey { alg, bytes: pk }),
        })
    }

    /// Derives an SLH-DSA key pair from SK.seed, SK.prf and PK.seed (FIPS 205 slh_keygen_internal).
    ///
    /// # Errors
    /// [`Error::WrongAlgorithm`] for ML-DSA, [`Error::InvalidLength`] for bad seeds.
    pub fn from_slh_dsa_seeds(alg: SignatureAlgorithm, sk_seed: &[u8], sk_prf: &[u8], pk_seed: &[u8]) -> Result<Self> {
        let (pk, sk) = slhdsa::keygen(alg, sk_seed, sk_prf, pk_seed)?;
        Ok(Self { alg, seed: None, expanded: Secret::SlhDsa(sk), public: Some(VerifyingKey { alg, bytes: pk }) })
    }

    /// Reads an expanded private key: the FIPS 204 `sk` for ML-DSA, the 4n-byte
    /// FIPS 205 key for SLH-DSA (whose PK.root is recomputed and checked).
    /// `public`, when given, must belong to the key (for ML-DSA its hash must
    /// equal the `tr` embedded in `sk`).
    ///
    /// # Errors
    /// [`Error::InvalidLength`], [`Error::InvalidKey`] (ML-DSA `s1`/`s2` out of
    /// range), [`Error::InconsistentKey`] or [`Error::InconsistentPublicKey`].
    pub fn from_expanded(alg: SignatureAlgorithm, sk: &[u8], public: Option<&[u8]>) -> Result<Self> {
        if sk.len() != alg.expanded_key_len() {
            return Err(Error::length("signature expanded private key", alg.expanded_key_len(), sk.len()));
        }
        if alg.is_ml_dsa() && !mldsa::expanded_key_is_valid(alg, sk) {
            return Err(Error::InvalidKey {
                what: "ML-DSA private key",
                reason: "s1 or s2 has coefficients out of range",
            });
        }
        let public = if alg.is_ml_dsa() {
            match public {
                Some(pk) => {
                    let pk = VerifyingKey::from_bytes(alg, pk)?;
                    if !mldsa::public_key_matches(&pk.bytes, sk) {
                        return Err(Error::InconsistentPublicKey);
                    }
                    Some(pk)
                }
                None => None,
            }
        } else {
            if !slhdsa::private_key_is_consistent(alg, sk)? {
                return Err(Error::InconsistentKey);
            }
            let pk = VerifyingKey::from_bytes(alg, sk.get(2 * alg.slh_dsa_n()..).unwrap_or_default())?;
            if public.is_some_and(|p| p != pk.as_bytes()) {
                return Err(Error::InconsistentPublicKey);
            }
            Some(pk)
        };
        Ok(Self {
            alg,
            seed: None,
            expanded: if alg.is_ml_dsa() {
                Secret::MlDsa(mldsa::SignKey::from_bytes(alg, sk)?)
            } else {
                Secret::SlhDsa(Zeroizing::new(sk.to_vec()))
            },
            public,
        })
    }

    /// Reads the RFC 9881 `both` form: the seed and the expanded key must agree.
    ///
    /// # Errors
    /// As [`Self::from_seed`], plus [`Error::InconsistentKey`].
    pub fn from_seed_and_expanded(alg: SignatureAlgorithm, xi: &[u8], sk: &[u8]) -> Result<Self> {
        let key = Self::from_seed(alg, xi)?;
        if !bool::from(key.expanded.as_bytes().ct_eq(sk)) {
            return Err(Error::InconsistentKey);
        }
        Ok(key)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.alg
    }

    /// The matching public key.
    ///
    /// # Errors
    /// [`Error::NoPublicKey`] for an ML-DSA key loaded from its expanded form
    /// without a public key.
    pub fn verifying_key(&self) -> Result<&VerifyingKey> {
        self.public.as_ref().ok_or(Error::NoPublicKey)
    }

    /// Attaches a public key to a key loaded without one, checking that it belongs.
    ///
    /// # Errors
    /// [`Error::InconsistentPublicKey`] if it does not belong to this key.
    pub fn with_public_key(mut self, public: VerifyingKey) -> Result<Self> {
        let belongs = public.alg == self.alg
            && match &self.public {
                Some(p) => *p == public,
                None => mldsa::public_key_matches(&public.bytes, self.expanded.as_bytes()),
            };
        if !belongs {
            return Err(Error::InconsistentPublicKey);
        }
        self.public = Some(public);
        Ok(self)
    }

    /// The ML-DSA seed `xi`, when known.
    pub fn seed(&self) -> Option<&[u8]> {
        self.seed.as_deref().map(Vec::as_slice)
    }

    /// The expanded private key bytes.
    pub fn expanded_key(&self) -> &[u8] {
        self.expanded.as_bytes()
    }

    /// Hedged signing (FIPS 204/205 default): fresh OS randomness is mixed in.
    ///
    /// # Errors
    /// [`Error::ContextTooLong`], [`Error::Randomness`].
    pub fn sign(&self, msg: &[u8], ctx: &[u8]) -> Result<Signature> {
        let n = if self.alg.is_ml_dsa() { 32 } else { self.alg.slh_dsa_n() };
        let rnd = crate::rand::bytes(n)?;
        self.sign_with_randomness(msg, ctx, Some(&rnd))
    }

    /// Deterministic signing: the same key, message and context always give the same signature.
    ///
    /// # Errors
    /// [`Error::ContextTooLong`].
    pub fn sign_deterministic(&self, msg: &[u8], ctx: &[u8]) -> Result<Signature> {
        self.sign_with_randomness(msg, ctx, None)
    }

    /// Signing with caller-supplied randomness (`rnd`, 32 bytes, for ML-DSA;
    /// `addrnd`, n bytes, for SLH-DSA); `None` is deterministic. For known-answer tests.
    ///
    /// # Errors
    /// [`Error::ContextTooLong`], [`Error::InvalidLength`] for randomness of the wrong size.
    pub fn sign_with_randomness(&self, msg: &[u8], ctx: &[u8], randomness: Option<&[u8]>) -> Result<Signature> {
        let bytes = if self.alg.is_ml_dsa() {
            let rnd = match randomness {
                Some(r) => Zeroizing::new(mldsa::array::<32>("ML-DSA signing randomness", r)?),
                None => Zeroizing::new([0u8; 32]),
            };
            match &self.expanded {
                Secret::MlDsa(key) => mldsa::sign(key, msg, ctx, &rnd)?,
                Secret::SlhDsa(_) => return Err(Error::Crypto),
            }
        } else {
            if let Some(r) = randomness.filter(|r| r.len() != self.alg.slh_dsa_n()) {
                return Err(Error::length("SLH-DSA signing randomness", self.alg.slh_dsa_n(), r.len()));
            }
            slhdsa::sign(self.alg, self.expanded.as_bytes(), msg, ctx, randomness)?
        };
        Ok(Signature { alg: self.alg, bytes })
    }
}

impl ConstantTimeEq for SigningKey {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        if self.alg != other.alg {
            return subtle::Choice::from(0);
        }
        self.expanded.as_bytes().ct_eq(other.expanded.as_bytes())
    }
}

impl PartialEq for SigningKey {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for SigningKey {}
