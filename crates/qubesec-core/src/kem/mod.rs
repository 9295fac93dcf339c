//! Key encapsulation: ML-KEM-512/768/1024 (FIPS 203) and X-Wing.
//!
//! ```
//! use qubesec_core::{KemAlgorithm, KemPrivateKey};
//! let key = KemPrivateKey::generate(KemAlgorithm::MlKem768)?;
//! let (ciphertext, sender_secret) = key.public_key().encapsulate()?;
//! let receiver_secret = key.decapsulate(&ciphertext)?;
//! assert_eq!(sender_secret, receiver_secret);
//! # Ok::<(), qubesec_core::Error>(())
//! ```

pub(crate) mod mlkem;
pub(crate) mod xwing;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::alg::KemAlgorithm;
use crate::error::{Error, Result};
pub use crate::secret::SharedSecret;

/// A validated KEM public (encapsulation) key.
#[derive(Clone, PartialEq, Eq)]
pub struct KemPublicKey {
    alg: KemAlgorithm,
    bytes: Vec<u8>,
}

impl core::fmt::Debug for KemPublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KemPublicKey")
            .field("alg", &self.alg)
            .field("fingerprint", &crate::Fingerprint::debug_text(self.clone().into()))
            .finish()
    }
}

impl KemPublicKey {
    /// Reads a raw encapsulation key, checking its length and (for ML-KEM) the
    /// FIPS 203 §7.2 modulus check.
    ///
    /// # Errors
    /// [`Error::InvalidLength`] or [`Error::InvalidKey`].
    pub fn from_bytes(alg: KemAlgorithm, bytes: &[u8]) -> Result<Self> {
        if bytes.len() != alg.public_key_len() {
            return Err(Error::length("KEM public key", alg.public_key_len(), bytes.len()));
        }
        let valid = match alg {
            KemAlgorithm::XWing => xwing::public_key_is_valid(bytes)?,
            _ => mlkem::public_key_is_valid(alg, bytes)?,
        };
        if !valid {
            return Err(Error::InvalidKey { what: "KEM public key", reason: "coefficients are not reduced modulo q" });
        }
        Ok(Self { alg, bytes: bytes.to_vec() })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> KemAlgorithm {
        self.alg
    }

    /// The raw encoded key.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Encapsulates a fresh shared secret with randomness from the OS.
    ///
    /// # Errors
    /// [`Error::Randomness`] if the OS generator fails.
    pub fn encapsulate(&self) -> Result<(KemCiphertext, SharedSecret)> {
        let randomness = crate::rand::bytes(self.alg.encaps_randomness_len())?;
        self.encapsulate_deterministic(&randomness)
    }

    /// Deterministic encapsulation from caller-supplied randomness (`m`, 32 bytes, for
    /// ML-KEM; `eseed`, 64 bytes, for X-Wing). For tests and known-answer checks:
    /// reusing randomness destroys security.
    ///
    /// # Errors
    /// [`Error::InvalidLength`] if the randomness has the wrong length.
    pub fn encapsulate_deterministic(&self, randomness: &[u8]) -> Result<(KemCiphertext, SharedSecret)> {
        let want = self.alg.encaps_randomness_len();
        if randomness.len() != want {
            return Err(Error::length("encapsulation randomness", want, randomness.len()));
        }
        let (ct, ss) = match self.alg {
            KemAlgorithm::XWing => {
                let mut eseed = Zeroizing::new([0u8; 64]);
                eseed.copy_from_slice(randomness);
                xwing::encapsulate(&self.bytes, &eseed)?
            }
            _ => {
                let mut m = Zeroizing::new([0u8; 32]);
                m.copy_from_slice(randomness);
                mlkem::encapsulate(self.alg, &self.bytes, &m)?
            }
        };
        Ok((KemCiphertext { alg: self.alg, bytes: ct }, SharedSecret::new(ss)))
    }
}

/// A KEM ciphertext of the right length for its algorithm.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KemCiphertext {
    alg: KemAlgorithm,
    bytes: Vec<u8>,
}

impl KemCiphertext {
    /// Reads a raw ciphertext, checking its length.
    ///
    /// # Errors
    /// [`Error::InvalidLength`].
    pub fn from_bytes(alg: KemAlgorithm, bytes: &[u8]) -> Result<Self> {
        if bytes.len() != alg.ciphertext_len() {
            return Err(Error::length("KEM ciphertext", alg.ciphertext_len(), bytes.len()));
        }
        Ok(Self { alg, bytes: bytes.to_vec() })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> KemAlgorithm {
        self.alg
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

enum Decapsulator {
    MlKem(mlkem::DecapsKey),
    XWing(xwing::Expanded),
}

/// A KEM private (decapsulation) key, with its public key.
///
/// Keeps the seed when it was generated or loaded from one, so it can be
/// written in the RFC 9935 seed-only form. Zeroized on drop; `Debug` redacts;
/// `==` compares the private parts in constant time.
pub struct KemPrivateKey {
    alg: KemAlgorithm,
    seed: Option<Zeroizing<Vec<u8>>>,
    inner: Decapsulator,
    public: KemPublicKey,
}

impl core::fmt::Debug for KemPrivateKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KemPrivateKey")
            .field("alg", &self.alg)
            .field("has_seed", &self.seed.is_some())
            .field("private", &"<redacted>")
            .field("public", &self.public)
            .finish()
    }
}

impl KemPrivateKey {
    /// Generates a key pair from a fresh OS-random seed.
    ///
    /// # Errors
    /// [`Error::Randomness`] if the OS generator fails.
    pub fn generate(alg: KemAlgorithm) -> Result<Self> {
        let seed = crate::rand::bytes(alg.seed_len())?;
        Self::from_seed(alg, &seed)
    }

    /// Derives the key pair from its seed: `d || z` (64 bytes) for ML-KEM
    /// (FIPS 203 KeyGen_internal), the 32-byte decapsulation seed for X-Wing.
    ///
    /// # Errors
    /// [`Error::InvalidLength`] if the seed has the wrong length.
    pub fn from_seed(alg: KemAlgorithm, seed: &[u8]) -> Result<Self> {
        if seed.len() != alg.seed_len() {
            return Err(Error::length("KEM private key seed", alg.seed_len(), seed.len()));
        }
        let (inner, pk) = match alg {
            KemAlgorithm::XWing => {
                let mut s = Zeroizing::new([0u8; 32]);
                s.copy_from_slice(seed);
                let expanded = xwing::expand(&s)?;
                let pk = expanded.pk.clone();
                (Decapsulator::XWing(expanded), pk)
            }
            _ => {
                let mut s = Zeroizing::new([0u8; 64]);
                s.copy_from_slice(seed);
                let (pk, dk) = mlkem::keygen(alg, &s)?;
                (Decapsulator::MlKem(dk), pk)
            }
        };
        Ok(Self { alg, seed: Some(Zeroizing::new(seed.to_vec())), inner, public: KemPublicKey { alg, bytes: pk } })
    }

    /// Reads an expanded ML-KEM decapsulation key (FIPS 203 `dk`), checking its
    /// length, the hash of its embedded encapsulation key (§7.3) and that key's
    /// modulus check. For X-Wing the private key *is* the seed, so this is
    /// [`Self::from_seed`].
    ///
    /// # Errors
    /// [`Error::InvalidLength`] or [`Error::InvalidKey`].
    pub fn from_expanded(alg: KemAlgorithm, dk: &[u8]) -> Result<Self> {
        if alg == KemAlgorithm::XWing {
            return Self::from_seed(alg, dk);
        }
        if dk.len() != alg.expanded_key_len() {
            return Err(Error::length("ML-KEM expanded private key", alg.expanded_key_len(), dk.len()));
        }
        let decaps = mlkem::DecapsKey::from_bytes(alg, dk)?;
        if !mlkem::private_key_is_valid(&decaps) {
            return Err(Error::InvalidKey {
                what: "ML-KEM expanded private key",
                reason: "the embedded hash H(ek) does not match the embedded public key",
            });
        }
        let public = KemPublicKey::from_bytes(alg, mlkem::embedded_public_key(alg, dk))?;
        Ok(Self { alg, seed: None, inner: Decapsulator::MlKem(decaps), public })
    }

    /// Reads the RFC 9935 `both` form: the seed and the expanded key must agree.
    ///
    /// # Errors
    /// As [`Self::from_seed`], plus [`Error::InconsistentKey`].
    pub fn from_seed_and_expanded(alg: KemAlgorithm, seed: &[u8], expanded: &[u8]) -> Result<Self> {
        let key = Self::from_seed(alg, seed)?;
        if !bool::from(key.expanded_key().ct_eq(expanded)) {
            return Err(Error::InconsistentKey);
        }
        Ok(key)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> KemAlgorithm {
        self.alg
    }

    /// The matching public key.
    pub fn public_key(&self) -> &KemPublicKey {
        &self.public
    }

    /// The seed, when known (always for keys generated here).
    pub fn seed(&self) -> Option<&[u8]> {
        self.seed.as_deref().map(Vec::as_slice)
    }

    /// The expanded decapsulation key (FIPS 203 `dk`); for X-Wing, its 32-byte seed.
    pub fn expanded_key(&self) -> &[u8] {
        match &self.inner {
            Decapsulator::MlKem(dk) => dk.as_bytes(),
            Decapsulator::XWing(_) => self.seed().unwrap_or_default(),
        }
    }

    /// Decapsulates. A well-formed but wrong ciphertext yields the FIPS 203
    /// implicit-rejection secret, not an error.
    ///
    /// # Errors
    /// [`Error::WrongAlgorithm`] if the ciphertext is for another algorithm.
    pub fn decapsulate(&self, ct: &KemCiphertext) -> Result<SharedSecret> {
        if ct.alg != self.alg {
            return Err(Error::WrongAlgorithm { expected: self.alg.name().into(), found: ct.alg.name().into() });
        }
        let ss = match &self.inner {
            Decapsulator::MlKem(dk) => mlkem::decapsulate(dk, &ct.bytes)?,
            Decapsulator::XWing(expanded) => xwing::decapsulate(expanded, &ct.bytes)?,
        };
        Ok(SharedSecret::new(ss))
    }
}

impl ConstantTimeEq for KemPrivateKey {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        if self.alg != other.alg {
            return subtle::Choice::from(0);
        }
        self.expanded_key().ct_eq(other.expanded_key())
    }
}

impl PartialEq for KemPrivateKey {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for KemPrivateKey {}
