#![doc = include_str!("../README.md")]

pub mod authority;
pub mod backend;
pub mod bundle;
pub mod client;
pub mod envelope;
pub mod error;
pub mod grpc;
pub mod health;
pub mod http;
pub mod keyid;
pub mod keystore;
pub mod logging;
pub mod metrics;
pub mod pb;
pub mod server;
pub mod service;

pub use backend::{Backend, Sealed};
pub use error::{Error, KeystoreError, Result};
pub use keyid::KeyId;
