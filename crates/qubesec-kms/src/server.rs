//! Serving the KMS v2 service on a unix socket, with graceful shutdown.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};

use nix::sys::stat::{Mode, umask};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;

use crate::authority::NormalizeAuthority;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::service::KmsService;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The unix socket path.
    pub socket: PathBuf,
    /// Where to serve `/metrics`, `/healthz`, `/readyz` (none: no HTTP server).
    pub metrics_addr: Option<SocketAddr>,
    /// How often to look for keystore changes or reconnect the backend.
    pub refresh_interval: Duration,
    /// How long a health round trip is reused.
    pub health_ttl: Duration,
    /// How long in-flight requests get after SIGTERM/SIGINT.
    pub drain_timeout: Duration,
}

impl ServeConfig {
    /// Defaults: refresh every 2 s, health cached 3 s, 10 s to drain.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            metrics_addr: None,
            refresh_interval: Duration::from_secs(2),
            health_ttl: crate::health::DEFAULT_TTL,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Binds the socket: creates the parent directory (0700 when it creates
/// it), removes a stale socket (one nobody answers on) but refuses a live one
/// or a non-socket file, and binds under umask 0177 so the socket is born
/// 0600 (never chmod-ed afterwards, so there is no moment when it is open to
/// others). The umask is process-wide: it is restored right after `bind`.
///
/// # Errors
/// [`Error::Socket`] explaining what is in the way.
pub async fn bind_socket(path: &Path) -> Result<UnixListener> {
    let fail = |reason: String| Error::Socket { path: path.to_path_buf(), reason };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| fail(format!("creating the parent directory: {e}")))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match tokio::net::UnixStream::connect(path).await {
            Ok(_) => return Err(fail("another process is serving on this socket; refusing to replace it".into())),
            Err(_) => {
                tracing::info!(socket = %path.display(), "removing a stale socket");
                std::fs::remove_file(path).map_err(|e| fail(format!("removing the stale socket: {e}")))?;
            }
        },
        Ok(_) => return Err(fail("exists and is not a socket; refusing to remove it".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    let previous = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(previous);
    bound.map_err(|e| fail(format!("bind: {e}")))
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = term => tracing::info!("SIGTERM: draining"),
        r = tokio::signal::ctrl_c() => match r {
            Ok(()) => tracing::info!("SIGINT: draining"),
            Err(e) => { tracing::error!(error = %e, "cannot listen for SIGINT"); std::future::pending::<()>().await }
        },
    }
}

/// Serves until `shutdown` resolves, then drains in-flight requests (up to
/// the drain timeout) and removes the socket.
///
/// # Errors
/// Socket setup errors, transport errors.
pub async fn run<B: Backend>(
    config: ServeConfig,
    backend: Arc<B>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let metrics = Arc::new(Metrics::new());
    let dyn_backend: Arc<dyn Backend> = backend.clone();
    let health = Arc::new(Health::new(dyn_backend.clone(), Arc::clone(&metrics), config.health_ttl));
    // The metrics port first: failing there must not leave a socket behind.
    let tcp = match config.metrics_addr {
        Some(addr) => Some((
            addr,
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Error::Socket { path: PathBuf::from(addr.to_string()), reason: e.to_string() })?,
        )),
        None => None,
    };
    // One attempt to open the backend before the socket exists, so a first
    // Status finds it ready when it can be; a failure is not fatal (the
    // refresh loop retries with backoff and Status reports why).
    let first = Arc::clone(&backend);
    let _ = tokio::task::spawn_blocking(move || first.refresh()).await;
    let listener = bind_socket(&config.socket).await?;
    let ready = Arc::new(AtomicBool::new(false));

    match backend.active_key_id() {
        Ok(id) => {
            metrics.set_active_key(id.as_str());
            tracing::info!(socket = %config.socket.display(), backend = backend.kind(), key_id = %id, "serving KMS v2");
        }
        Err(e) => tracing::warn!(error = %e, backend = backend.kind(), "serving KMS v2, backend not ready yet"),
    }

    let refresher =
        tokio::spawn(refresh_loop(dyn_backend, Arc::clone(&health), Arc::clone(&metrics), config.refresh_interval));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http = match tcp {
        Some((addr, tcp)) => {
            tracing::info!(addr = %addr, "metrics and health on http://{addr}/metrics, /healthz, /readyz");
            let state = crate::http::HttpState {
                metrics: Arc::clone(&metrics),
                health: Arc::clone(&health),
                ready: Arc::clone(&ready),
            };
            let mut rx = stop_rx.clone();
            Some(tokio::spawn(crate::http::serve(tcp, state, async move {
                let _ = rx.wait_for(|stop| *stop).await;
            })))
        }
        None => None,
    };

    let service = KmsService::new(backend, health, metrics).into_server();
    let mut rx = stop_rx.clone();
    let incoming = UnixListenerStream::new(listener).map(|conn| conn.map(NormalizeAuthority::new));
    let server = tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming_shutdown(
        incoming,
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        },
    ));
    ready.store(true, Ordering::SeqCst);

    let mut server = server;
    let early = tokio::select! {
        () = shutdown => None,
        r = &mut server => Some(r),
    };
    ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let result = match early {
        Some(r) => r,
        None => match tokio::time::timeout(config.drain_timeout, &mut server).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!("in-flight requests did not finish within the drain timeout");
                server.abort();
                Ok(Ok(()))
            }
        },
    };
    refresher.abort();
    if let Some(h) = http {
        let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
    }
    let _ = std::fs::remove_file(&config.socket);
    tracing::info!("stopped");
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Socket { path: config.socket, reason: format!("gRPC server: {e}") }),
        Err(e) => Err(Error::Internal(format!("server task: {e}"))),
    }
}

async fn refresh_loop(backend: Arc<dyn Backend>, health: Arc<Health>, metrics: Arc<Metrics>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        tick.tick().await;
        let b = Arc::clone(&backend);
        let out = tokio::task::spawn_blocking(move || b.refresh().map(|changed| (changed, b.active_key_id()))).await;
        match out {
            Ok(Ok((changed, id))) => {
                if last_error.take().is_some() {
                    tracing::info!(backend = backend.kind(), "backend refresh recovered");
                    health.invalidate().await;
                }
                if changed {
                    health.invalidate().await;
                    if let Ok(id) = id {
                        metrics.set_active_key(id.as_str());
                        tracing::info!(key_id = %id, "key set changed");
                    }
                }
            }
            Ok(Err(e)) => {
                metrics.backend_error(backend.kind(), "refresh");
                let msg = e.to_string();
                if last_error.as_deref() != Some(&msg) {
                    tracing::warn!(error = %msg, backend = backend.kind(), "backend refresh failed; keeping the previous keys");
                }
                last_error = Some(msg);
                health.invalidate().await;
            }
            Err(e) => tracing::error!(error = %e, "refresh task failed"),
        }
    }
}
