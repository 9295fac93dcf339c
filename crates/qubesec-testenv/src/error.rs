//! The crate's error type.

use std::path::PathBuf;
use std::time::Duration;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong starting, using or stopping a control plane.
///
/// `Debug` prints the message and its causes (not the struct), so a test's
/// `.unwrap()` shows what to do, e.g. "run `cargo xtask testenv build`".
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The etcd / Kubernetes / kubectl / helm binaries have not been built (or the build is stale).
    #[error(
        "test-environment binaries not found (or out of date) in {}: run `cargo xtask testenv build` \
         first (or point QUBESEC_TESTENV_DIR at a directory that holds them)",
        dir.display()
    )]
    MissingBinaries {
        /// The versioned directory that lacks a complete, stamped build.
        dir: PathBuf,
    },

    /// A file-system or process operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Certificate or key generation failed.
    #[error("could not generate test certificates")]
    Certificate(#[from] rcgen::Error),

    /// A component exited while it should have been running.
    #[error("{component} exited unexpectedly ({status})\n{logs}")]
    Exited {
        /// Which component (`etcd`, `kube-apiserver`, ...).
        component: &'static str,
        /// Its exit status.
        status: String,
        /// The tails of every component's log.
        logs: String,
    },

    /// A component did not become ready in time.
    #[error("{component} was not ready within {timeout:?}; last error: {last_error}\n{logs}")]
    NotReady {
        /// Which component.
        component: &'static str,
        /// How long we waited.
        timeout: Duration,
        /// The last readiness probe's failure.
        last_error: String,
        /// The tails of every component's log.
        logs: String,
    },

    /// The generated kubeconfig could not be loaded.
    #[error("could not load the generated kubeconfig")]
    Kubeconfig(#[from] kube::config::KubeconfigError),

    /// Building a Kubernetes client failed.
    #[error("could not build a Kubernetes client")]
    Kube(#[from] kube::Error),

    /// A request to etcd's JSON gateway failed or returned something unexpected.
    #[error("etcd request failed: {0}")]
    Etcd(String),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, "\ncaused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }

    /// Whether a component died because its port was taken (another process
    /// grabbed a port between our pick and its bind); such a start is retried.
    pub(crate) fn is_port_conflict(&self) -> bool {
        match self {
            Self::Exited { logs, .. } | Self::NotReady { logs, .. } => logs.contains("address already in use"),
            _ => false,
        }
    }
}
