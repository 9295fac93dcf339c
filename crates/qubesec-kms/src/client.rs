//! A KMS v2 client over a unix socket (for `qubesec-kms status`, tests and benchmarks).

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{Error, Result};
use crate::pb::key_management_service_client::KeyManagementServiceClient;

/// Connects to the plugin's socket.
///
/// # Errors
/// [`Error::Socket`] if nothing answers there.
pub async fn connect(socket: impl Into<PathBuf>) -> Result<KeyManagementServiceClient<Channel>> {
    let socket = socket.into();
    let path = socket.clone();
    let channel = Endpoint::try_from("http://localhost")
        .map_err(|e| Error::Internal(e.to_string()))?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { tokio::net::UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|e| Error::Socket { path: socket, reason: format!("connect: {e}") })?;
    Ok(KeyManagementServiceClient::new(channel))
}
