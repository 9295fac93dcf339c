//! The KMS v2 gRPC service, generic over a [`Backend`].
//!
//! Proto messages are converted to domain requests once, at the edge
//! ([`EncryptInput`], [`DecryptInput`]); errors become gRPC codes only in
//! [`crate::grpc`].

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use crate::backend::{Backend, Sealed};
use crate::envelope;
use crate::error::{Error, Result};
use crate::health::Health;
use crate::keyid::KeyId;
use crate::metrics::Metrics;
use crate::pb;

/// The KMS API version Status reports.
pub const API_VERSION: &str = "v2";

/// A validated Encrypt request. `Debug` shows the plaintext's length only.
pub struct EncryptInput {
    /// The DEK seed (wiped on drop).
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The apiserver's request uid (for logs).
    pub uid: String,
}

impl std::fmt::Debug for EncryptInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptInput")
            .field("plaintext", &format_args!("<{} bytes redacted>", self.plaintext.len()))
            .field("uid", &self.uid)
            .finish()
    }
}

impl TryFrom<pb::EncryptRequest> for EncryptInput {
    type Error = Error;

    fn try_from(req: pb::EncryptRequest) -> Result<Self> {
        let plaintext = Zeroizing::new(req.plaintext);
        envelope::check_plaintext(&plaintext)?;
        Ok(Self { plaintext, uid: req.uid })
    }
}

/// A validated Decrypt request.
#[derive(Debug)]
pub struct DecryptInput {
    /// The ciphertext (layout checked).
    pub ciphertext: Vec<u8>,
    /// The key id stored with it.
    pub key_id: KeyId,
    /// The apiserver's request uid (for logs).
    pub uid: String,
}

impl TryFrom<pb::DecryptRequest> for DecryptInput {
    type Error = Error;

    fn try_from(req: pb::DecryptRequest) -> Result<Self> {
        envelope::split(&req.ciphertext)?;
        let key_id = KeyId::parse(&req.key_id)?;
        Ok(Self { ciphertext: req.ciphertext, key_id, uid: req.uid })
    }
}

/// The gRPC service.
pub struct KmsService<B: Backend> {
    backend: Arc<B>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

impl<B: Backend> Clone for KmsService<B> {
    fn clone(&self) -> Self {
        Self {
            backend: Arc::clone(&self.backend),
            health: Arc::clone(&self.health),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

impl<B: Backend> std::fmt::Debug for KmsService<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsService").field("backend", &self.backend.kind()).finish_non_exhaustive()
    }
}

impl<B: Backend> KmsService<B> {
    /// A service over `backend`, sharing health and metrics with the HTTP side.
    pub fn new(backend: Arc<B>, health: Arc<Health>, metrics: Arc<Metrics>) -> Self {
        Self { backend, health, metrics }
    }

    /// The tonic server wrapper.
    pub fn into_server(self) -> pb::key_management_service_server::KeyManagementServiceServer<Self> {
        pb::key_management_service_server::KeyManagementServiceServer::new(self)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&B) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let backend = Arc::clone(&self.backend);
        let out = tokio::task::spawn_blocking(move || f(&backend))
            .await
            .map_err(|e| Error::Internal(format!("backend task failed: {e}")))?;
        if let Err(e) = &out
            && matches!(e, Error::Unavailable(_) | Error::Pkcs11(_) | Error::Internal(_) | Error::Keystore(_))
        {
            self.metrics.backend_error(self.backend.kind(), op);
        }
        out
    }

    fn finish<T>(
        &self,
        method: &'static str,
        started: Instant,
        out: Result<T>,
    ) -> std::result::Result<Response<T>, Status> {
        let out = out.map(Response::new).map_err(Status::from);
        let code = out.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics.observe(method, code, started.elapsed().as_secs_f64());
        if let Err(status) = &out {
            tracing::debug!(method, code = ?status.code(), message = status.message(), "request failed");
        }
        out
    }
}

#[tonic::async_trait]
impl<B: Backend> pb::key_management_service_server::KeyManagementService for KmsService<B> {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> std::result::Result<Response<pb::StatusResponse>, Status> {
        let started = Instant::now();
        let report = self.health.check().await;
        let healthz = match &report.problem {
            None if report.key_id.is_some() => "ok".to_owned(),
            None => "unhealthy: no active key".to_owned(),
            Some(problem) => format!("unhealthy: {problem}"),
        };
        // The apiserver requires a non-empty key id even from an unhealthy plugin.
        let key_id = report.key_id.map_or_else(|| "unavailable".to_owned(), |k| k.to_string());
        self.finish("Status", started, Ok(pb::StatusResponse { version: API_VERSION.to_owned(), healthz, key_id }))
    }

    async fn encrypt(
        &self,
        request: Request<pb::EncryptRequest>,
    ) -> std::result::Result<Response<pb::EncryptResponse>, Status> {
        let started = Instant::now();
        let out = async {
            let input = EncryptInput::try_from(request.into_inner())?;
            let uid = input.uid.clone();
            let Sealed { ciphertext, key_id } = self.blocking("encrypt", move |b| b.encrypt(&input.plaintext)).await?;
            tracing::debug!(uid, key_id = %key_id, "encrypted");
            Ok(pb::EncryptResponse { ciphertext, key_id: key_id.to_string(), annotations: Default::default() })
        }
        .await;
        self.finish("Encrypt", started, out)
    }

    async fn decrypt(
        &self,
        request: Request<pb::DecryptRequest>,
    ) -> std::result::Result<Response<pb::DecryptResponse>, Status> {
        let started = Instant::now();
        let out = async {
            let input = DecryptInput::try_from(request.into_inner())?;
            let uid = input.uid.clone();
            let key_id = input.key_id.clone();
            let plaintext = self.blocking("decrypt", move |b| b.decrypt(&input.key_id, &input.ciphertext)).await?;
            tracing::debug!(uid, key_id = %key_id, "decrypted");
            // prost needs an owned Vec; this copy is not wiped (see docs/decisions.md).
            Ok(pb::DecryptResponse { plaintext: plaintext.to_vec() })
        }
        .await;
        self.finish("Decrypt", started, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_input_debug_redacts_the_dek_seed() {
        let input =
            EncryptInput::try_from(pb::EncryptRequest { plaintext: vec![0xAB; 32], uid: "u-1".into() }).unwrap();
        let text = format!("{input:?}");
        assert!(text.contains("<32 bytes redacted>") && text.contains("u-1"), "{text}");
        assert!(!text.contains("171") && !text.to_lowercase().contains("ab, "), "{text}");
    }
}
