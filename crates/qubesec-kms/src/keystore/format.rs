//! The keystore file format, version 2 (see `docs/kms-keystore-format.md`);
//! version 1 files (no import records in the key set) are read too, and
//! rewritten as version 2 on the next write.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "QSKMSKEY"
//! 8       2     format version, u16 big-endian (2; 1 is read)
//! 10      1     master key kind: 1 = key file, 2 = Argon2id passphrase
//! 11      1     reserved, 0
//! 12      4     Argon2id m_cost KiB   (0 for a key file)
//! 16      4     Argon2id t_cost       (0 for a key file)
//! 20      4     Argon2id p_cost       (0 for a key file)
//! 24      16    Argon2id salt         (zeros for a key file)
//! 40      8     generation, u64 big-endian (+1 on every write)
//! 48      12    AES-GCM nonce
//! 60      4     sealed length L, u32 big-endian
//! 64      L     AES-256-GCM(master key, nonce, key set), AAD = bytes 0..64
//! 64+L    32    SHA-256 of bytes 0..64+L
//! ```
//! The checksum tells corruption (checksum wrong) apart from a wrong master
//! key (checksum right, authentication fails).

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::kek::KeySet;
use super::master::{Argon2Params, Kdf, MasterKey};
use crate::error::KeystoreError;

/// The file magic.
pub const MAGIC: &[u8; 8] = b"QSKMSKEY";
/// The format version this build writes.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest format version this build reads.
pub const OLDEST_READ_VERSION: u16 = 1;
const HEADER_LEN: usize = 64;
const CHECKSUM_LEN: usize = 32;
/// Upper bound on the sealed key set (about 17 000 versions).
const MAX_SEALED: usize = 1 << 20;

/// The unencrypted header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// How the master key is derived.
    pub kdf: Kdf,
    /// Incremented on every write.
    pub generation: u64,
    /// The file's format version (what [`seal`] writes: [`FORMAT_VERSION`]).
    pub format: u16,
}

/// Seals a key set into file bytes.
///
/// # Errors
/// [`KeystoreError::Corrupt`] only if the AEAD fails (it cannot for these sizes) or randomness fails.
pub fn seal(path: &Path, header: &Header, master: &MasterKey, keys: &KeySet) -> Result<Vec<u8>, KeystoreError> {
    let plain = keys.encode();
    let mut nonce = [0u8; 12];
    let fail = |what: String| KeystoreError::Corrupt { path: path.to_path_buf(), what };
    qubesec_core::rand::fill(&mut nonce).map_err(|e| fail(format!("randomness: {e}")))?;
    let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + 16 + CHECKSUM_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    let (kind, params, salt) = match header.kdf {
        Kdf::KeyFile => (1u8, Argon2Params { m_cost: 0, t_cost: 0, p_cost: 0 }, [0u8; 16]),
        Kdf::Argon2id { params, salt } => (2u8, params, salt),
    };
    out.push(kind);
    out.push(0);
    out.extend_from_slice(&params.m_cost.to_be_bytes());
    out.extend_from_slice(&params.t_cost.to_be_bytes());
    out.extend_from_slice(&params.p_cost.to_be_bytes());
    out.extend_from_slice(&salt);
    out.extend_from_slice(&header.generation.to_be_bytes());
    out.extend_from_slice(&nonce);
    let sealed_len = plain.len() + 16;
    out.extend_from_slice(&(sealed_len as u32).to_be_bytes());
    let cipher = Aes256Gcm::new_from_slice(master.bytes()).map_err(|e| fail(format!("AES key: {e}")))?;
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: &plain, aad: &out[..HEADER_LEN] })
        .map_err(|_| fail("sealing failed".into()))?;
    out.extend_from_slice(&sealed);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// Parses and checks the header and checksum, without the master key.
///
/// # Errors
/// [`KeystoreError::Foreign`], [`KeystoreError::UnsupportedVersion`],
/// [`KeystoreError::Truncated`], [`KeystoreError::Corrupt`].
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header, KeystoreError> {
    let corrupt = |what: &str| KeystoreError::Corrupt { path: path.to_path_buf(), what: what.to_owned() };
    if bytes.len() < MAGIC.len() {
        if MAGIC.starts_with(bytes) {
            return Err(KeystoreError::Truncated { path: path.into(), found: bytes.len(), expected: HEADER_LEN });
        }
        return Err(KeystoreError::Foreign(path.into()));
    }
    if &bytes[..8] != MAGIC {
        return Err(KeystoreError::Foreign(path.into()));
    }
    if bytes.len() < HEADER_LEN {
        return Err(KeystoreError::Truncated { path: path.into(), found: bytes.len(), expected: HEADER_LEN });
    }
    let u32_at = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let version = u16::from_be_bytes([bytes[8], bytes[9]]);
    if !(OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(KeystoreError::UnsupportedVersion { path: path.into(), found: version, supported: FORMAT_VERSION });
    }
    let sealed_len = u32_at(60) as usize;
    if sealed_len > MAX_SEALED {
        return Err(corrupt("sealed length is implausible"));
    }
    let expected = HEADER_LEN + sealed_len + CHECKSUM_LEN;
    if bytes.len() < expected {
        return Err(KeystoreError::Truncated { path: path.into(), found: bytes.len(), expected });
    }
    if bytes.len() > expected {
        return Err(corrupt("trailing bytes after the checksum"));
    }
    let (body, sum) = bytes.split_at(HEADER_LEN + sealed_len);
    if Sha256::digest(body).as_slice() != sum {
        return Err(corrupt("checksum mismatch"));
    }
    let kdf = match bytes[10] {
        1 => Kdf::KeyFile,
        2 => {
            let mut salt = [0u8; 16];
            salt.copy_from_slice(&bytes[24..40]);
            Kdf::Argon2id { params: Argon2Params { m_cost: u32_at(12), t_cost: u32_at(16), p_cost: u32_at(20) }, salt }
        }
        _ => return Err(corrupt("unknown master key kind")),
    };
    let mut generation = [0u8; 8];
    generation.copy_from_slice(&bytes[40..48]);
    Ok(Header { kdf, generation: u64::from_be_bytes(generation), format: version })
}

/// Opens file bytes whose header [`parse_header`] accepted.
///
/// # Errors
/// [`KeystoreError::WrongMasterKey`] if authentication fails, [`KeystoreError::Corrupt`] for a bad key set.
pub fn open(path: &Path, bytes: &[u8], master: &MasterKey) -> Result<(Header, KeySet), KeystoreError> {
    let header = parse_header(path, bytes)?;
    let sealed = &bytes[HEADER_LEN..bytes.len() - CHECKSUM_LEN];
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&bytes[48..60]);
    let cipher = Aes256Gcm::new_from_slice(master.bytes())
        .map_err(|e| KeystoreError::Corrupt { path: path.into(), what: format!("AES key: {e}") })?;
    let plain = Zeroizing::new(
        cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad: &bytes[..HEADER_LEN] })
            .map_err(|_| KeystoreError::WrongMasterKey(path.into()))?,
    );
    let keys =
        KeySet::decode(&plain, header.format).map_err(|what| KeystoreError::Corrupt { path: path.into(), what })?;
    Ok((header, keys))
}
