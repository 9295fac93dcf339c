//! Reconcile errors and their categories.

use std::time::Duration;

/// What kind of failure an [`Error`] is; decides requeue, Events and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// The spec (or a referenced object) is wrong: `Failed`, a Warning event, no retry until something changes.
    User,
    /// The API server or a dependency failed: retried with exponential backoff.
    Transient,
    /// An invariant broke inside the operator: `Failed`, a Warning event, a slow retry.
    Bug,
}

impl Category {
    /// Lower-case label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Transient => "transient",
            Self::Bug => "bug",
        }
    }
}

/// A reconcile failure. Messages never carry secret material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec or a referenced object cannot be used as it is.
    #[error("{message}")]
    User {
        /// CamelCase reason for the condition and event.
        reason: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Something else that may succeed on retry.
    #[error("{0}")]
    Transient(String),
    /// An internal invariant broke.
    #[error("internal error: {0}")]
    Bug(String),
    /// What the operator saw is older than what it wrote, or a write lost a race with another
    /// writer (a `resourceVersion` precondition failed): look again shortly, writing nothing.
    #[error("stale view: {0}")]
    Stale(String),
}

impl Error {
    /// A user error with a reason.
    pub fn user(reason: &'static str, message: impl Into<String>) -> Self {
        Self::User { reason, message: message.into() }
    }

    /// A bug.
    pub fn bug(message: impl Into<String>) -> Self {
        Self::Bug(message.into())
    }

    /// The category.
    pub fn category(&self) -> Category {
        match self {
            Self::User { .. } => Category::User,
            Self::Kube(_) | Self::Transient(_) | Self::Stale(_) => Category::Transient,
            Self::Bug(_) => Category::Bug,
        }
    }

    /// Whether this is [`Error::Stale`], or an API answer that means the same: 409 Conflict
    /// (a `resourceVersion` precondition failed) or 404 on a write to an object seen a moment ago.
    pub fn is_stale(&self) -> bool {
        matches!(self, Self::Stale(_)) || matches!(self, Self::Kube(kube::Error::Api(s)) if s.code == 409)
    }

    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::User { reason, .. } => reason,
            Self::Kube(_) | Self::Transient(_) | Self::Stale(_) => "TransientError",
            Self::Bug(_) => "InternalError",
        }
    }
}

/// Backoff for the `n`th consecutive transient failure (n starts at 1): 5 s doubling to 5 min.
pub fn backoff(n: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << n.saturating_sub(1).min(10));
    Duration::from_secs(secs.min(300))
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(40), Duration::from_secs(300));
    }

    #[test]
    fn categories() {
        assert_eq!(Error::user("X", "m").category(), Category::User);
        assert_eq!(Error::Transient("t".into()).category(), Category::Transient);
        assert_eq!(Error::bug("b").category(), Category::Bug);
        assert_eq!(Error::user("InvalidSpec", "m").reason(), "InvalidSpec");
    }
}
