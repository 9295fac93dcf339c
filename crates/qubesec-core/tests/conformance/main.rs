//! Conformance against NIST ACVP, Wycheproof, RFC 5869, the X-Wing draft and
//! the LAMPS composite-signature vectors, read from `../shared/vectors`.
//!
//! Every file prints how many cases it ran (straight to stderr, so the count
//! shows even when the harness captures output) and fails if it ran none.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, unreachable_pub)]

mod common;
mod composite;
mod hkdf;
mod mldsa;
mod mlkem;
mod slhdsa;
mod xwing;
