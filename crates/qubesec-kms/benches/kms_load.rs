//! Load bench: Encrypt and Decrypt over the unix socket at 1, 16 and 64
//! concurrent clients, against the software keystore, SoftHSM2 (PKCS#11) and
//! a no-op backend on the same server (the ceiling: gRPC + socket cost only).
//!
//! `cargo bench -p qubesec-kms --bench kms_load` (env `KMS_BENCH_SECONDS`,
//! default 3, per cell). Prints a Markdown table for docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qubesec_kms::backend::software::SoftwareBackend;
use qubesec_kms::keystore::{Argon2Params, Keystore, MasterKeySource};
use qubesec_kms::pb;
use qubesec_kms::server::{self, ServeConfig};
use qubesec_kms::{Backend, KeyId, Sealed};
use zeroize::Zeroizing;

/// Returns its input: what the server costs without any cryptography.
struct Noop(KeyId);

impl Backend for Noop {
    fn kind(&self) -> &'static str {
        "noop"
    }
    fn active_key_id(&self) -> qubesec_kms::Result<KeyId> {
        Ok(self.0.clone())
    }
    fn encrypt(&self, plaintext: &[u8]) -> qubesec_kms::Result<Sealed> {
        Ok(Sealed { ciphertext: qubesec_kms::envelope::join(&[0; 12], plaintext), key_id: self.0.clone() })
    }
    fn decrypt(&self, _: &KeyId, ciphertext: &[u8]) -> qubesec_kms::Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(ciphertext[13..].to_vec()))
    }
    fn refresh(&self) -> qubesec_kms::Result<bool> {
        Ok(false)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Encrypt,
    Decrypt,
}

struct Cell {
    ops_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

async fn load(socket: &Path, op: Op, clients: usize, secs: f64) -> Cell {
    let mut c = qubesec_kms::client::connect(socket).await.unwrap();
    let seed = vec![7u8; 32];
    let sealed =
        c.encrypt(pb::EncryptRequest { plaintext: seed.clone(), uid: String::new() }).await.unwrap().into_inner();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let socket = socket.to_path_buf();
        let (seed, sealed) = (seed.clone(), sealed.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = qubesec_kms::client::connect(socket).await.unwrap();
            let mut lat = Vec::with_capacity(100_000);
            while Instant::now() < deadline {
                let t = Instant::now();
                match op {
                    Op::Encrypt => {
                        c.encrypt(pb::EncryptRequest { plaintext: seed.clone(), uid: String::new() }).await.unwrap();
                    }
                    Op::Decrypt => {
                        c.decrypt(pb::DecryptRequest {
                            ciphertext: sealed.ciphertext.clone(),
                            uid: String::new(),
                            key_id: sealed.key_id.clone(),
                            annotations: Default::default(),
                        })
                        .await
                        .unwrap();
                    }
                }
                lat.push(t.elapsed().as_nanos() as u64);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
    Cell { ops_per_s: all.len() as f64 / elapsed, p50_us: pct(0.50), p99_us: pct(0.99) }
}

fn spawn_softhsm(dir: &Path) -> Option<(Child, PathBuf)> {
    let module = "/usr/lib/softhsm/libsofthsm2.so";
    if !Path::new(module).exists() {
        return None;
    }
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
    )
    .unwrap();
    let ok = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "bench", "--so-pin", "1111", "--pin", "2222"])
        .env("SOFTHSM2_CONF", &conf)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    std::fs::write(dir.join("pin"), "2222").unwrap();
    let socket = dir.join("hsm.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_qubesec-kms"))
        .args(["--log-level", "warn", "serve", "--socket", socket.to_str().unwrap(), "--pkcs11-module", module])
        .args(["--token-label", "bench", "--pin-file", dir.join("pin").to_str().unwrap(), "--key-label", "kek"])
        .env("SOFTHSM2_CONF", &conf)
        .spawn()
        .unwrap();
    Some((child, socket))
}

fn main() {
    let secs: f64 = std::env::var("KMS_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = MasterKeySource::KeyFile(dir.path().join("master.key"));
    let ks = Keystore::at(dir.path().join("ks"));
    ks.init(&source, Argon2Params::default()).unwrap();
    let software = Arc::new(SoftwareBackend::open(ks, &source).unwrap());
    let noop = Arc::new(Noop(KeyId::derive(1, &[0; 16], b"noop")));

    let soft_sock = dir.path().join("soft.sock");
    let noop_sock = dir.path().join("noop.sock");
    let hsm = spawn_softhsm(dir.path());
    let rows = rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let s1 = tokio::spawn(server::run(ServeConfig::new(&soft_sock), software, stop(rx.clone())));
        let s2 = tokio::spawn(server::run(ServeConfig::new(&noop_sock), noop, stop(rx.clone())));
        let mut targets = vec![("no-op (ceiling)", noop_sock.clone()), ("software keystore", soft_sock.clone())];
        if let Some((_, s)) = &hsm {
            targets.push(("PKCS#11 SoftHSM2", s.clone()));
        }
        for (_, s) in &targets {
            for _ in 0..100 {
                if qubesec_kms::client::connect(s).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let mut rows = Vec::new();
        for (name, sock) in &targets {
            for op in [Op::Encrypt, Op::Decrypt] {
                for clients in [1, 16, 64] {
                    let cell = load(sock, op, clients, secs).await;
                    let opname = if op == Op::Encrypt { "Encrypt" } else { "Decrypt" };
                    eprintln!(
                        "{name:18} {opname} c={clients:2}: {:9.0} ops/s  p50 {:7.1} µs  p99 {:7.1} µs",
                        cell.ops_per_s, cell.p50_us, cell.p99_us
                    );
                    rows.push((name.to_string(), opname, clients, cell));
                }
            }
        }
        let _ = tx.send(true);
        let _ = s1.await;
        let _ = s2.await;
        rows
    });
    if let Some((mut child, _)) = hsm {
        let _ = child.kill();
        let _ = child.wait();
    }
    println!("| backend | op | clients | ops/s | p50 (µs) | p99 (µs) |\n|---|---|---|---|---|---|");
    for (name, op, clients, c) in rows {
        println!("| {name} | {op} | {clients} | {:.0} | {:.1} | {:.1} |", c.ops_per_s, c.p50_us, c.p99_us);
    }
}
