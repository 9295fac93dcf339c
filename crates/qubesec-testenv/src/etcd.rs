//! Raw reads from etcd through its gRPC-gateway JSON API (`/v3/kv/range`),
//! over plain HTTP on the loopback client port.
//!
//! The `etcd-client` crate compiles etcd's protos in its build script and so
//! needs `protoc`; the JSON gateway needs no code generation at all.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP/1.0 request to `127.0.0.1:port`; returns (status, body).
async fn request(port: u16, method: &str, path: &str, body: &str) -> Result<(u16, Vec<u8>)> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        // HTTP/1.0: the server closes the connection after the response and
        // sends no chunked encoding, so the body is everything after the headers.
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(response)
    };
    let response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| Error::Etcd(format!("{method} {path}: timed out")))?
        .map_err(|e| Error::Etcd(format!("{method} {path}: {e}")))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Error::Etcd(format!("{method} {path}: malformed HTTP response")))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| Error::Etcd(format!("{method} {path}: no HTTP status in {head:?}")))?;
    Ok((status, response[split + 4..].to_vec()))
}

/// `POST /v3/kv/range` with a JSON body; returns the parsed response.
async fn range(port: u16, body: serde_json::Value) -> Result<serde_json::Value> {
    let (status, bytes) = request(port, "POST", "/v3/kv/range", &body.to_string()).await?;
    if status != 200 {
        return Err(Error::Etcd(format!("/v3/kv/range returned HTTP {status}: {}", String::from_utf8_lossy(&bytes))));
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::Etcd(format!("/v3/kv/range: bad JSON: {e}")))
}

fn decode(field: &serde_json::Value, what: &str) -> Result<Vec<u8>> {
    let text = field.as_str().unwrap_or_default();
    STANDARD.decode(text).map_err(|e| Error::Etcd(format!("bad base64 in {what}: {e}")))
}

/// The raw value stored at `key`, or `None` when there is no such key.
pub(crate) async fn get(port: u16, key: &str) -> Result<Option<Vec<u8>>> {
    let json = range(port, serde_json::json!({ "key": STANDARD.encode(key) })).await?;
    match json.get("kvs").and_then(|kvs| kvs.get(0)) {
        None => Ok(None),
        // An empty value is omitted from the JSON.
        Some(kv) => match kv.get("value") {
            None => Ok(Some(Vec::new())),
            Some(v) => decode(v, "value").map(Some),
        },
    }
}

/// Every key that starts with `prefix`, sorted.
pub(crate) async fn keys(port: u16, prefix: &str) -> Result<Vec<String>> {
    let json = range(
        port,
        serde_json::json!({
            "key": STANDARD.encode(prefix),
            "range_end": STANDARD.encode(prefix_end(prefix.as_bytes())),
            "keys_only": true,
        }),
    )
    .await?;
    let mut out = Vec::new();
    if let Some(kvs) = json.get("kvs").and_then(|k| k.as_array()) {
        for kv in kvs {
            let key = decode(kv.get("key").unwrap_or(&serde_json::Value::Null), "key")?;
            out.push(String::from_utf8_lossy(&key).into_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Whether etcd answers `GET /health` with `"health":"true"`.
pub(crate) async fn healthy(port: u16) -> Result<()> {
    let (status, body) = request(port, "GET", "/health", "").await?;
    let body = String::from_utf8_lossy(&body);
    if status == 200 && body.contains("\"health\":\"true\"") {
        Ok(())
    } else {
        Err(Error::Etcd(format!("/health: HTTP {status}: {body}")))
    }
}

/// The smallest key greater than every key with this prefix (etcd's `range_end`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): every key from `prefix` on.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/registry/secrets/"), b"/registry/secrets0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }
}
