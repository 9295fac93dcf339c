//! `/metrics`, `/livez`, `/readyz` and `/healthz` on the metrics address.
//!
//! `/livez` answers from the process alone and never touches the backend:
//! an HSM outage must not make the kubelet restart the plugin (each restart
//! would log in again). `/readyz` and `/healthz` run the cached backend round
//! trip, like Status.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::health::Health;
use crate::metrics::Metrics;

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct HttpState {
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The cached backend round trip.
    pub health: Arc<Health>,
    /// Set while the gRPC socket is serving.
    pub ready: Arc<AtomicBool>,
}

/// The router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves until `shutdown` resolves.
///
/// # Errors
/// I/O errors from the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.encode())
}

/// Alive: the runtime answers. Nothing else is checked, on purpose.
async fn livez() -> impl IntoResponse {
    (StatusCode::OK, "ok")
}

async fn healthz(State(s): State<HttpState>) -> impl IntoResponse {
    let report = s.health.check().await;
    match report.problem {
        None if report.healthy() => (StatusCode::OK, "ok".to_owned()),
        None => (StatusCode::SERVICE_UNAVAILABLE, "unhealthy: no active key".to_owned()),
        Some(p) => (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {p}")),
    }
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    if !s.ready.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not serving".to_owned());
    }
    let report = s.health.check().await;
    if report.healthy() {
        (StatusCode::OK, "ok".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "backend unhealthy".to_owned())
    }
}
