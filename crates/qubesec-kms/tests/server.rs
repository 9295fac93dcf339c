//! The server in process, over a backend we control: graceful shutdown
//! drains in-flight requests, Status is a cached real round trip, and the
//! HTTP side serves /healthz, /readyz and /metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use qubesec_kms::pb;
use qubesec_kms::server::{self, ServeConfig};
use qubesec_kms::{Backend, Error, KeyId, Sealed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

/// XOR "encryption" with a switchable failure and a delay, counting calls.
struct Test {
    id: KeyId,
    delay: Duration,
    broken: AtomicBool,
    encrypts: AtomicUsize,
}

impl Backend for Test {
    fn kind(&self) -> &'static str {
        "test"
    }
    fn active_key_id(&self) -> qubesec_kms::Result<KeyId> {
        Ok(self.id.clone())
    }
    fn encrypt(&self, plaintext: &[u8]) -> qubesec_kms::Result<Sealed> {
        self.encrypts.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        if self.broken.load(Ordering::SeqCst) {
            return Err(Error::Unavailable("test backend switched off".into()));
        }
        let body: Vec<u8> = plaintext.iter().map(|b| b ^ 0x5a).collect();
        Ok(Sealed { ciphertext: qubesec_kms::envelope::join(&[0; 12], &body), key_id: self.id.clone() })
    }
    fn decrypt(&self, _: &KeyId, ciphertext: &[u8]) -> qubesec_kms::Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(ciphertext[13..].iter().map(|b| b ^ 0x5a).collect()))
    }
    fn refresh(&self) -> qubesec_kms::Result<bool> {
        Ok(false)
    }
}

fn backend(delay: Duration) -> Arc<Test> {
    Arc::new(Test {
        id: KeyId::derive(1, &[1; 16], b"test"),
        delay,
        broken: AtomicBool::new(false),
        encrypts: AtomicUsize::new(0),
    })
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let code = buf.split(' ').nth(1).unwrap().parse().unwrap();
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (code, body)
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kms.sock");
    let b = backend(Duration::from_millis(1500));
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let mut config = ServeConfig::new(&socket);
    config.health_ttl = Duration::from_secs(60);
    let server = tokio::spawn(server::run(config, b, async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    let mut client = loop {
        if let Ok(c) = qubesec_kms::client::connect(&socket).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let in_flight = tokio::spawn(async move {
        client.encrypt(pb::EncryptRequest { plaintext: b"seed".to_vec(), uid: "slow".into() }).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = Instant::now();
    tx.send(true).unwrap();
    let reply = in_flight.await.unwrap().expect("the in-flight request completes during the drain");
    assert_eq!(reply.into_inner().key_id, KeyId::derive(1, &[1; 16], b"test").to_string());
    server.await.unwrap().unwrap();
    assert!(stopped.elapsed() >= Duration::from_millis(900), "shutdown did not wait for the request");
    assert!(!socket.exists(), "socket removed after shutdown");
    assert!(qubesec_kms::client::connect(&socket).await.is_err(), "no new connections after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_a_cached_round_trip_and_http_reports_health() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kms.sock");
    let b = backend(Duration::ZERO);
    let addr = free_addr();
    let mut config = ServeConfig::new(&socket);
    config.metrics_addr = Some(addr);
    config.health_ttl = Duration::from_millis(800);
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(server::run(config, Arc::clone(&b), async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    let mut client = loop {
        if let Ok(c) = qubesec_kms::client::connect(&socket).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let s = client.status(pb::StatusRequest {}).await.unwrap().into_inner();
    assert_eq!((s.version.as_str(), s.healthz.as_str()), ("v2", "ok"));
    let probes = b.encrypts.load(Ordering::SeqCst);
    assert_eq!(probes, 1, "Status ran one encrypt/decrypt round trip");
    for _ in 0..5 {
        client.status(pb::StatusRequest {}).await.unwrap();
    }
    assert_eq!(b.encrypts.load(Ordering::SeqCst), 1, "cached within the ttl");
    assert_eq!(http_get(addr, "/healthz").await, (200, "ok".to_owned()));
    assert_eq!(http_get(addr, "/readyz").await.0, 200);

    // The backend breaks: after the ttl Status and /healthz say so.
    b.broken.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let s = client.status(pb::StatusRequest {}).await.unwrap().into_inner();
    assert!(s.healthz.starts_with("unhealthy") && s.healthz.contains("switched off"), "{}", s.healthz);
    assert!(!s.key_id.is_empty());
    assert_eq!(http_get(addr, "/healthz").await.0, 503);
    assert_eq!(http_get(addr, "/readyz").await.0, 503);
    let err = client.encrypt(pb::EncryptRequest { plaintext: b"x".to_vec(), uid: String::new() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);

    b.broken.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(client.status(pb::StatusRequest {}).await.unwrap().into_inner().healthz, "ok");
    let (code, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    for needle in [
        r#"qubesec_kms_requests_total{method="Status",code="Ok"}"#,
        r#"qubesec_kms_requests_total{method="Encrypt",code="Unavailable"} 1"#,
        "qubesec_kms_request_duration_seconds_bucket",
        r#"qubesec_kms_active_key{key_id="qubesec-kms/v1/"#,
        r#"qubesec_kms_backend_errors_total{backend="test",operation="encrypt"} 1"#,
        "qubesec_kms_healthy 1",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    tx.send(true).unwrap();
    server.await.unwrap().unwrap();
}
