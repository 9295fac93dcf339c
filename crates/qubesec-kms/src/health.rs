//! Health is a real encrypt/decrypt round trip through the backend, cached
//! for a few seconds so the apiserver's polling costs nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::keyid::KeyId;
use crate::metrics::Metrics;

/// How long a probe result is reused.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3);

/// The result of one probe.
#[derive(Clone, Debug)]
pub struct Report {
    /// The key id the round trip used, when it succeeded.
    pub key_id: Option<KeyId>,
    /// `None` when healthy; otherwise why not (no secret bytes).
    pub problem: Option<String>,
}

impl Report {
    /// Whether the round trip succeeded.
    pub fn healthy(&self) -> bool {
        self.problem.is_none() && self.key_id.is_some()
    }
}

/// A cached health probe over a backend.
pub struct Health {
    backend: Arc<dyn Backend>,
    metrics: Arc<Metrics>,
    ttl: Duration,
    cache: tokio::sync::Mutex<Option<(Instant, Report)>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").field("backend", &self.backend.kind()).field("ttl", &self.ttl).finish()
    }
}

impl Health {
    /// A probe over `backend` whose results live `ttl`.
    pub fn new(backend: Arc<dyn Backend>, metrics: Arc<Metrics>, ttl: Duration) -> Self {
        Self { backend, metrics, ttl, cache: tokio::sync::Mutex::new(None) }
    }

    /// The cached report, or a fresh probe when it is older than the ttl.
    /// Concurrent callers share one probe.
    pub async fn check(&self) -> Report {
        let mut cache = self.cache.lock().await;
        if let Some((at, report)) = cache.as_ref()
            && at.elapsed() < self.ttl
        {
            return report.clone();
        }
        let backend = Arc::clone(&self.backend);
        let report = match tokio::task::spawn_blocking(move || probe(backend.as_ref())).await {
            Ok(Ok(key_id)) => Report { key_id: Some(key_id), problem: None },
            Ok(Err(e)) => {
                self.metrics.backend_error(self.backend.kind(), "health");
                tracing::warn!(error = %e, "health round trip failed");
                Report { key_id: self.backend.active_key_id().ok(), problem: Some(e.to_string()) }
            }
            Err(e) => Report { key_id: None, problem: Some(format!("health probe task failed: {e}")) },
        };
        self.metrics.set_healthy(report.healthy());
        if let Some(id) = report.key_id.as_ref().filter(|_| report.healthy()) {
            self.metrics.set_active_key(id.as_str());
        }
        *cache = Some((Instant::now(), report.clone()));
        report
    }

    /// Forgets the cached report (after a key change).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }
}

/// Encrypts 32 random bytes and decrypts them again.
fn probe(backend: &dyn Backend) -> Result<KeyId> {
    let seed = qubesec_core::rand::bytes(32).map_err(|e| Error::Internal(format!("randomness: {e}")))?;
    let sealed = backend.encrypt(&seed)?;
    let back = backend.decrypt(&sealed.key_id, &sealed.ciphertext)?;
    if !bool::from(back.as_slice().ct_eq(seed.as_slice())) {
        return Err(Error::Internal("health round trip returned different bytes".into()));
    }
    Ok(sealed.key_id)
}
