//! `/metrics`, `/healthz` and `/readyz` on the metrics address.
//!
//! `/healthz` answers while the process runs; `/readyz` needs an API server round trip,
//! so a replica cut off from the API server is taken out of its Service.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::context::Context;

/// The router over the shared context.
pub fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(ctx)
}

/// Serves until `shutdown` resolves.
///
/// # Errors
/// I/O errors from the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(ctx)).with_graceful_shutdown(shutdown).await
}

async fn metrics(State(ctx): State<Arc<Context>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], ctx.metrics.encode())
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok")
}

async fn readyz(State(ctx): State<Arc<Context>>) -> impl IntoResponse {
    match ctx.client.apiserver_version().await {
        Ok(_) => (StatusCode::OK, "ok".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("API server unreachable: {e}")),
    }
}
