//! Certification path validation: from a leaf through intermediates to a trust anchor.
//!
//! Checks, for every certificate on the path: its signature by the next one
//! (the anchor signs itself or is trusted as given), validity at the given
//! time, name chaining (issuer = next subject, compared as DER), no unknown
//! critical extension; for every issuer: critical basicConstraints with cA,
//! keyUsage with keyCertSign, and its pathLenConstraint; when asked
//! ([`ChainOptions::purpose`]), the extended key usage of every certificate
//! that carries one. Path building backtracks: when an issuer candidate leads
//! to a path that fails, the next candidate with the same name is tried.
//! Not covered: revocation, name constraints and policies (certificates with
//! such critical extensions are rejected as unknown critical extensions).

use core::fmt;
use std::time::SystemTime;

use der::asn1::ObjectIdentifier;

use super::{Certificate, ExtendedKeyUsage, KeyUsage, ext_oid};
use crate::error::Error;

/// The longest path tried (leaf + intermediates + anchor).
const MAX_DEPTH: usize = 16;

/// How many signatures path building checks at most, over all candidate paths.
const MAX_SIGNATURE_CHECKS: usize = 64;

/// anyExtendedKeyUsage (RFC 5280, 4.2.1.12).
const ANY_EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");

/// Why a certificate on the path failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainErrorKind {
    /// No intermediate or trust anchor has this certificate's issuer as its subject.
    IssuerNotFound {
        /// The issuer name sought.
        issuer: String,
    },
    /// The issuer's key does not verify this certificate's signature.
    BadSignature,
    /// The signature algorithm is one this crate cannot verify.
    UnsupportedAlgorithm {
        /// Its OID.
        oid: String,
    },
    /// The time is after notAfter.
    Expired {
        /// notAfter, seconds since the Unix epoch.
        not_after: u64,
    },
    /// The time is before notBefore.
    NotYetValid {
        /// notBefore, seconds since the Unix epoch.
        not_before: u64,
    },
    /// An issuer without a critical basicConstraints extension asserting cA.
    NotACa,
    /// An issuer whose keyUsage lacks keyCertSign (or has no keyUsage at all).
    MissingKeyCertSign,
    /// An issuer whose pathLenConstraint allows fewer intermediates than follow it.
    PathLenExceeded {
        /// The constraint.
        path_len: u8,
        /// The number of intermediate CAs below the issuer on this path.
        intermediates_below: usize,
    },
    /// A critical extension this validator does not understand.
    UnknownCriticalExtension {
        /// Its OID.
        oid: String,
    },
    /// A malformed extension.
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The certificate carries an extendedKeyUsage without the purpose asked for (nor anyExtendedKeyUsage).
    ExtendedKeyUsage {
        /// The purpose asked for.
        required: String,
    },
    /// The path is longer than the validator allows (or loops), or too many candidates were tried.
    TooLong,
}

/// A path validation failure: which certificate (0 = the leaf), its subject, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainError {
    /// Position on the path, 0 for the leaf.
    pub index: usize,
    /// The failing certificate's subject (RFC 4514).
    pub subject: String,
    /// What went wrong.
    pub kind: ChainErrorKind,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who =
            if self.index == 0 { "the certificate".to_owned() } else { format!("chain certificate {}", self.index) };
        write!(f, "{who} ({}): ", self.subject)?;
        match &self.kind {
            ChainErrorKind::IssuerNotFound { issuer } => {
                write!(f, "its issuer ({issuer}) is neither among the intermediates nor a trust anchor")
            }
            ChainErrorKind::BadSignature => f.write_str("signature does not verify with the issuer's key"),
            ChainErrorKind::UnsupportedAlgorithm { oid } => write!(f, "unsupported signature algorithm {oid}"),
            ChainErrorKind::Expired { not_after } => write!(f, "expired (notAfter {})", rfc3339(*not_after)),
            ChainErrorKind::NotYetValid { not_before } => {
                write!(f, "not yet valid (notBefore {})", rfc3339(*not_before))
            }
            ChainErrorKind::NotACa => {
                f.write_str("is used as an issuer but is not a CA (critical basicConstraints cA=true)")
            }
            ChainErrorKind::MissingKeyCertSign => {
                f.write_str("is used as an issuer but its keyUsage lacks keyCertSign")
            }
            ChainErrorKind::PathLenExceeded { path_len, intermediates_below } => write!(
                f,
                "pathLenConstraint {path_len} is exceeded by {intermediates_below} intermediate CA(s) below it"
            ),
            ChainErrorKind::UnknownCriticalExtension { oid } => write!(f, "unknown critical extension {oid}"),
            ChainErrorKind::Malformed { reason } => write!(f, "malformed: {reason}"),
            ChainErrorKind::ExtendedKeyUsage { required } => {
                write!(f, "its extendedKeyUsage does not allow {required}")
            }
            ChainErrorKind::TooLong => {
                write!(f, "no path within {MAX_DEPTH} certificates and {MAX_SIGNATURE_CHECKS} signature checks")
            }
        }
    }
}

impl std::error::Error for ChainError {}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
pub(crate) fn rfc3339(secs: u64) -> String {
    der::DateTime::from_unix_duration(core::time::Duration::from_secs(secs))
        .map(|d| {
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                d.year(),
                d.month(),
                d.day(),
                d.hour(),
                d.minutes(),
                d.seconds()
            )
        })
        .unwrap_or_else(|_| format!("{secs}s after the epoch"))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What a path must satisfy beyond the checks every path gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainOptions {
    /// The purpose the leaf is used for (e.g. [`ExtendedKeyUsage::ServerAuth`]). Every
    /// certificate on the path that carries an extendedKeyUsage must list it or
    /// anyExtendedKeyUsage; a certificate without the extension allows any purpose (RFC 5280).
    pub purpose: Option<ExtendedKeyUsage>,
}

impl ChainOptions {
    /// Requires `purpose` along the path.
    #[must_use]
    pub fn purpose(mut self, purpose: ExtendedKeyUsage) -> Self {
        self.purpose = Some(purpose);
        self
    }
}

/// Builds and validates a path from `leaf` through any of `intermediates` to
/// one of `anchors`, at time `at`. Returns the path, leaf first, anchor last.
/// A leaf that is itself one of the anchors is valid on its own (checked for validity time only).
/// The same as [`verify_chain_with`] without a purpose.
///
/// # Errors
/// A [`ChainError`] naming the failing certificate and the reason.
pub fn verify_chain(
    leaf: &Certificate,
    intermediates: &[Certificate],
    anchors: &[Certificate],
    at: SystemTime,
) -> Result<Vec<Certificate>, ChainError> {
    verify_chain_with(leaf, intermediates, anchors, at, &ChainOptions::default())
}

/// [`verify_chain`] with `options` (e.g. an extended key usage the path must allow).
///
/// Candidate issuers are tried in order (anchors first), and a candidate whose path fails
/// further up is given up for the next one. When no path is valid, the error is the one
/// found furthest from the leaf (the most specific reason).
///
/// # Errors
/// A [`ChainError`] naming the failing certificate and the reason.
pub fn verify_chain_with(
    leaf: &Certificate,
    intermediates: &[Certificate],
    anchors: &[Certificate],
    at: SystemTime,
    options: &ChainOptions,
) -> Result<Vec<Certificate>, ChainError> {
    let mut search = Search { intermediates, anchors, at, options, signature_checks: 0, best: None };
    let mut path = vec![leaf.clone()];
    if search.extend(&mut path) {
        return Ok(path);
    }
    Err(search.best.unwrap_or_else(|| fail(0, leaf, ChainErrorKind::TooLong)))
}

fn fail(index: usize, cert: &Certificate, kind: ChainErrorKind) -> ChainError {
    ChainError { index, subject: cert.subject(), kind }
}

/// A depth-first search for a valid path.
struct Search<'a> {
    intermediates: &'a [Certificate],
    anchors: &'a [Certificate],
    at: SystemTime,
    options: &'a ChainOptions,
    signature_checks: usize,
    /// The failure furthest from the leaf so far.
    best: Option<ChainError>,
}

impl Search<'_> {
    fn record(&mut self, e: ChainError) {
        if self.best.as_ref().is_none_or(|b| e.index > b.index) {
            self.best = Some(e);
        }
    }

    fn is_anchor(&self, cert: &Certificate) -> bool {
        self.anchors.iter().any(|a| a.to_der() == cert.to_der())
    }

    /// Checks the last certificate of `path` in its position, then extends the path to an
    /// anchor; `true` when `path` is now a valid path, `false` (with the failure recorded) if none is.
    fn extend(&mut self, path: &mut Vec<Certificate>) -> bool {
        let index = path.len() - 1;
        if let Err(e) = self.check(index, &path[index]) {
            self.record(e);
            return false;
        }
        if self.is_anchor(&path[index]) {
            return true;
        }
        if path.len() >= MAX_DEPTH {
            self.record(fail(index, &path[index], ChainErrorKind::TooLong));
            return false;
        }
        let wanted = path[index].issuer_der();
        let on_path = |c: &Certificate| path.iter().any(|p| p.to_der() == c.to_der());
        let candidates: Vec<Certificate> = self
            .anchors
            .iter()
            .chain(self.intermediates.iter().filter(|c| !on_path(c)))
            .filter(|c| c.subject_der() == wanted)
            .cloned()
            .collect();
        if candidates.is_empty() {
            let current = &path[index];
            self.record(fail(index, current, ChainErrorKind::IssuerNotFound { issuer: current.issuer() }));
            return false;
        }
        for candidate in candidates {
            if self.signature_checks >= MAX_SIGNATURE_CHECKS {
                self.record(fail(index, &path[index], ChainErrorKind::TooLong));
                return false;
            }
            self.signature_checks += 1;
            match path[index].verify_signed_by(&candidate) {
                Ok(()) => {
                    path.push(candidate);
                    if self.extend(path) {
                        return true;
                    }
                    path.pop();
                }
                Err(Error::UnsupportedAlgorithm { oid }) => {
                    self.record(fail(index, &path[index], ChainErrorKind::UnsupportedAlgorithm { oid }));
                }
                Err(_) => self.record(fail(index, &path[index], ChainErrorKind::BadSignature)),
            }
        }
        false
    }

    /// The checks of one certificate at position `index` (0 = leaf; above it, issuers).
    fn check(&self, index: usize, cert: &Certificate) -> Result<(), ChainError> {
        check_one(index, cert, self.at)?;
        if index > 0 {
            check_issuer(index, cert)?;
        }
        if let Some(purpose) = &self.options.purpose {
            check_purpose(index, cert, purpose)?;
        }
        Ok(())
    }
}

fn check_purpose(index: usize, cert: &Certificate, purpose: &ExtendedKeyUsage) -> Result<(), ChainError> {
    let eku = cert
        .extended_key_usage()
        .map_err(|e| fail(index, cert, ChainErrorKind::Malformed { reason: e.to_string() }))?;
    match eku {
        Some(list) if !list.iter().any(|u| u == purpose || u.oid() == ANY_EXTENDED_KEY_USAGE) => {
            Err(fail(index, cert, ChainErrorKind::ExtendedKeyUsage { required: purpose.to_string() }))
        }
        _ => Ok(()),
    }
}

fn check_one(index: usize, cert: &Certificate, at: SystemTime) -> Result<(), ChainError> {
    if at < cert.not_before() {
        return Err(fail(index, cert, ChainErrorKind::NotYetValid { not_before: unix(cert.not_before()) }));
    }
    if at > cert.not_after() {
        return Err(fail(index, cert, ChainErrorKind::Expired { not_after: unix(cert.not_after()) }));
    }
    let understood = |oid: &ObjectIdentifier| ext_oid::UNDERSTOOD.contains(oid);
    if let Some((oid, _)) = cert.extension_oids().into_iter().find(|(oid, critical)| *critical && !understood(oid)) {
        return Err(fail(index, cert, ChainErrorKind::UnknownCriticalExtension { oid: oid.to_string() }));
    }
    Ok(())
}

fn check_issuer(index: usize, cert: &Certificate) -> Result<(), ChainError> {
    let malformed = |e: Error| fail(index, cert, ChainErrorKind::Malformed { reason: e.to_string() });
    let bc = cert.basic_constraints().map_err(malformed)?;
    let Some(bc) = bc.filter(|bc| bc.ca && bc.critical) else {
        return Err(fail(index, cert, ChainErrorKind::NotACa));
    };
    let ku = cert.key_usage().map_err(malformed)?;
    if !ku.is_some_and(|ku| ku.contains(&KeyUsage::KeyCertSign)) {
        return Err(fail(index, cert, ChainErrorKind::MissingKeyCertSign));
    }
    // Intermediate CAs strictly between this issuer and the leaf (index - 1 of them).
    let intermediates_below = index - 1;
    if let Some(path_len) = bc.path_len
        && usize::from(path_len) < intermediates_below
    {
        return Err(fail(index, cert, ChainErrorKind::PathLenExceeded { path_len, intermediates_below }));
    }
    Ok(())
}
