#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod alg;
pub mod encoding;
pub mod error;
pub mod fingerprint;
#[cfg(feature = "hazmat")]
pub mod hazmat;
pub mod kdf;
pub mod kem;
pub mod rand;
mod secret;
pub mod sig;
pub mod x509;

pub use alg::{Algorithm, DeprecatedAlias, HashAlgorithm, KemAlgorithm, SignatureAlgorithm};
pub use encoding::{PrivateKey, PrivateKeyForm, PublicKey};
pub use error::{Error, Result};
pub use fingerprint::Fingerprint;
pub use kem::{KemCiphertext, KemPrivateKey, KemPublicKey, SharedSecret};
pub use sig::{Signature, SigningKey, VerifyingKey};
