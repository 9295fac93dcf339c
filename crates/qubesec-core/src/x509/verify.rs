//! Certification path validation: from a leaf through intermediates to a trust anchor.
//!
//! Checks, for every certificate on the path: its signature by the next one
//! (the anchor signs itself or is trusted as given), validity at the given
//! time, name chaining (issuer = next subject, compared as DER), no unknown
//! critical extension; for every issuer: critical basicConstraints with cA,
//! keyUsage with keyCertSign, and its pathLenConstraint. Not covered:
//! revocation, name constraints and policies (certificates with such critical
//! extensions are rejected as unknown critical extensions).

use core::fmt;
use std::time::SystemTime;

use der::asn1::ObjectIdentifier;

use super::{Certificate, KeyUsage, ext_oid};
use crate::error::Error;

/// The longest path tried (leaf + intermediates + anchor).
const MAX_DEPTH: usize = 16;

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
    /// The path is longer than the validator allows (or loops).
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
            ChainErrorKind::TooLong => write!(f, "no path within {MAX_DEPTH} certificates"),
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

/// Builds and validates a path from `leaf` through any of `intermediates` to
/// one of `anchors`, at time `at`. Returns the path, leaf first, anchor last.
/// A leaf that is itself one of the anchors is valid on its own (checked for validity time only).
///
/// # Errors
/// A [`ChainError`] naming the failing certificate and the reason.
pub fn verify_chain(
    leaf: &Certificate,
    intermediates: &[Certificate],
    anchors: &[Certificate],
    at: SystemTime,
) -> Result<Vec<Certificate>, ChainError> {
    let path = build_path(leaf, intermediates, anchors)?;
    for (i, cert) in path.iter().enumerate() {
        check_one(i, cert, at)?;
        if i > 0 {
            check_issuer(i, cert)?;
        }
    }
    Ok(path)
}

fn fail(index: usize, cert: &Certificate, kind: ChainErrorKind) -> ChainError {
    ChainError { index, subject: cert.subject(), kind }
}

/// Walks up by name, preferring candidates whose key verifies the signature.
fn build_path(
    leaf: &Certificate,
    intermediates: &[Certificate],
    anchors: &[Certificate],
) -> Result<Vec<Certificate>, ChainError> {
    let mut path = vec![leaf.clone()];
    loop {
        let index = path.len() - 1;
        let current = &path[index];
        if anchors.iter().any(|a| a.to_der() == current.to_der()) {
            return Ok(path);
        }
        if path.len() >= MAX_DEPTH {
            return Err(fail(index, current, ChainErrorKind::TooLong));
        }
        let wanted = current.issuer_der();
        let by_name = |c: &&Certificate| c.subject_der() == wanted;
        let anchor_candidates: Vec<&Certificate> = anchors.iter().filter(by_name).collect();
        let inter_candidates: Vec<&Certificate> =
            intermediates.iter().filter(by_name).filter(|c| !path.iter().any(|p| p.to_der() == c.to_der())).collect();
        if anchor_candidates.is_empty() && inter_candidates.is_empty() {
            return Err(fail(index, current, ChainErrorKind::IssuerNotFound { issuer: current.issuer() }));
        }
        let mut last_error = None;
        let mut next = None;
        for candidate in anchor_candidates.iter().chain(inter_candidates.iter()) {
            match current.verify_signed_by(candidate) {
                Ok(()) => {
                    next = Some((*candidate).clone());
                    break;
                }
                Err(Error::UnsupportedAlgorithm { oid }) => {
                    last_error = Some(ChainErrorKind::UnsupportedAlgorithm { oid });
                }
                Err(_) => {
                    last_error.get_or_insert(ChainErrorKind::BadSignature);
                }
            }
        }
        match next {
            Some(issuer) => {
                let is_anchor = anchors.iter().any(|a| a.to_der() == issuer.to_der());
                path.push(issuer);
                if is_anchor {
                    return Ok(path);
                }
            }
            None => return Err(fail(index, current, last_error.unwrap_or(ChainErrorKind::BadSignature))),
        }
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
