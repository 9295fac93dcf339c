//! Helpers shared by the integration tests: run the built `qubesec-kms`
//! binary, make SoftHSM2 tokens, talk to the socket.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use qubesec_kms::pb;
use qubesec_kms::pb::key_management_service_client::KeyManagementServiceClient;
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_qubesec-kms");
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const SO_PIN: &str = "5555";
pub const USER_PIN: &str = "246810";

/// Runs the binary to completion, panicking with its output on failure.
pub fn run_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(args, env);
    assert!(out.status.success(), "qubesec-kms {args:?} failed:\n{}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Where the plugin's keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    Software { keystore: PathBuf, master_key: PathBuf },
    Passphrase { keystore: PathBuf, passphrase: PathBuf },
    SoftHsm(SoftHsm),
}

impl KeySource {
    /// A fresh software keystore in `dir`.
    pub fn software(dir: &Path) -> Self {
        let keystore = dir.join("keystore");
        let master_key = dir.join("master.key");
        run_ok(
            &[
                "keystore",
                "init",
                "--keystore",
                keystore.to_str().unwrap(),
                "--master-key-file",
                master_key.to_str().unwrap(),
            ],
            &[],
        );
        KeySource::Software { keystore, master_key }
    }

    pub fn args(&self) -> Vec<String> {
        match self {
            KeySource::Software { keystore, master_key } => vec![
                "--keystore".into(),
                keystore.display().to_string(),
                "--master-key-file".into(),
                master_key.display().to_string(),
            ],
            KeySource::Passphrase { keystore, passphrase } => vec![
                "--keystore".into(),
                keystore.display().to_string(),
                "--passphrase-file".into(),
                passphrase.display().to_string(),
            ],
            KeySource::SoftHsm(h) => h.args(),
        }
    }

    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            KeySource::Software { .. } | KeySource::Passphrase { .. } => vec![],
            KeySource::SoftHsm(h) => vec![("SOFTHSM2_CONF".into(), h.conf.display().to_string())],
        }
    }

    /// `qubesec-kms rotate` with this source; returns its stdout.
    pub fn rotate(&self) -> String {
        self.cli(&["rotate"])
    }

    pub fn cli(&self, head: &[&str]) -> String {
        let mut args: Vec<String> = head.iter().map(|s| s.to_string()).collect();
        args.extend(self.args());
        let env = self.env();
        let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
        let env_ref: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        run_ok(&args_ref, &env_ref)
    }
}

/// A SoftHSM2 configuration and token in a temp directory.
#[derive(Clone, Debug)]
pub struct SoftHsm {
    pub conf: PathBuf,
    pub tokendir: PathBuf,
    pub pin_file: PathBuf,
    pub label: String,
    pub state_dir: PathBuf,
}

impl SoftHsm {
    pub fn new(dir: &Path, label: &str) -> Self {
        assert!(Path::new(SOFTHSM_MODULE).exists(), "SoftHSM2 is not installed (apt-get install softhsm2)");
        let tokendir = dir.join("tokens");
        std::fs::create_dir_all(&tokendir).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokendir.display()),
        )
        .unwrap();
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label, "--so-pin", SO_PIN, "--pin", USER_PIN])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect("softhsm2-util runs");
        assert!(out.status.success(), "softhsm2-util: {}{}", stdout(&out), stderr(&out));
        let pin_file = dir.join("pin");
        write_secret(&pin_file, format!("{USER_PIN}\n").as_bytes());
        let state_dir = dir.join("state");
        SoftHsm { conf, tokendir, pin_file, label: label.to_owned(), state_dir }
    }

    pub fn args(&self) -> Vec<String> {
        vec![
            "--pkcs11-module".into(),
            SOFTHSM_MODULE.into(),
            "--token-label".into(),
            self.label.clone(),
            "--pin-file".into(),
            self.pin_file.display().to_string(),
            "--key-label".into(),
            "qubesec-kek".into(),
            "--state-dir".into(),
            self.state_dir.display().to_string(),
        ]
    }
}

/// Writes a secret file with mode 0600 (the plugin refuses anything looser).
pub fn write_secret(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Waits until Status reports something other than "ok" containing `needle`.
pub async fn wait_unhealthy(plugin: &mut Plugin, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = plugin.status().await
            && s.healthz != "ok"
            && s.healthz.contains(needle)
        {
            return s.healthz;
        }
        if let Ok(Some(code)) = plugin.child.try_wait() {
            panic!("plugin exited with {code}:\n{}", plugin.log_text());
        }
        assert!(Instant::now() < deadline, "Status never reported {needle:?}:\n{}", plugin.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running `qubesec-kms serve`, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Plugin {
    pub child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Plugin {
    pub async fn start(source: &KeySource, socket: &Path, log: &Path, extra: &[&str]) -> Plugin {
        let mut plugin = Self::spawn(source, socket, log, extra).await;
        plugin.wait_healthy(Duration::from_secs(30)).await;
        plugin
    }

    /// Starts `serve` and waits only for its socket (not for health).
    pub async fn spawn(source: &KeySource, socket: &Path, log: &Path, extra: &[&str]) -> Plugin {
        let mut args: Vec<String> = vec!["serve".into(), "--socket".into(), socket.display().to_string()];
        args.extend(source.args());
        args.extend(extra.iter().map(|s| s.to_string()));
        let logfile = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(&args).stdout(Stdio::null()).stderr(logfile);
        for (k, v) in source.env() {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while qubesec_kms::client::connect(socket).await.is_err() {
            if let Ok(Some(code)) = child.try_wait() {
                panic!("plugin exited with {code}:\n{}", std::fs::read_to_string(log).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "plugin socket not up in 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Plugin { child, socket: socket.to_path_buf(), log: log.to_path_buf() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn client(&self) -> KeyManagementServiceClient<Channel> {
        qubesec_kms::client::connect(&self.socket).await.unwrap()
    }

    pub async fn status(&self) -> Option<pb::StatusResponse> {
        let mut c = qubesec_kms::client::connect(&self.socket).await.ok()?;
        c.status(pb::StatusRequest {}).await.ok().map(tonic::Response::into_inner)
    }

    pub async fn wait_healthy(&mut self, timeout: Duration) -> pb::StatusResponse {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.status().await
                && s.healthz == "ok"
            {
                return s;
            }
            if let Ok(Some(code)) = self.child.try_wait() {
                panic!("plugin exited with {code}:\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "plugin not healthy in {timeout:?}:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM and wait for the exit; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// The `keyID` (field 2) of a KMS v2 `EncryptedObject` stored after the etcd prefix.
pub fn encrypted_object_key_id(protobuf: &[u8]) -> String {
    #[derive(Clone, PartialEq, prost::Message)]
    struct EncryptedObject {
        #[prost(bytes = "vec", tag = "1")]
        encrypted_data: Vec<u8>,
        #[prost(string, tag = "2")]
        key_id: String,
        #[prost(bytes = "vec", tag = "3")]
        encrypted_dek_source: Vec<u8>,
    }
    <EncryptedObject as prost::Message>::decode(protobuf).expect("an EncryptedObject").key_id
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A node's KEM key pair for receiving bundles: PEM files and the fingerprint
/// compared out of band.
#[derive(Clone, Debug)]
pub struct Receiver {
    pub key: PathBuf,
    pub public: PathBuf,
    pub fingerprint: String,
}

impl Receiver {
    pub fn new(dir: &Path, alg: qubesec_core::KemAlgorithm) -> Receiver {
        let sk = qubesec_core::PrivateKey::generate(qubesec_core::Algorithm::Kem(alg)).unwrap();
        let pk = sk.public_key().unwrap();
        let key = dir.join("node.key.pem");
        write_secret(&key, sk.to_pkcs8_pem().unwrap().as_bytes());
        let public = dir.join("node.pub.pem");
        std::fs::write(&public, pk.to_spki_pem().unwrap()).unwrap();
        let fingerprint = qubesec_core::Fingerprint::of_public_key(&pk).unwrap().to_string();
        Receiver { key, public, fingerprint }
    }
}

impl KeySource {
    /// `export` to `to`, checked against its fingerprint; returns stdout.
    pub fn export_to(&self, to: &Receiver, out: &Path) -> String {
        self.cli(&[
            "export",
            "--recipient",
            to.public.to_str().unwrap(),
            "--recipient-fingerprint",
            &to.fingerprint,
            "--out",
            out.to_str().unwrap(),
        ])
    }

    /// The node identity fingerprint `keystore status` prints.
    pub fn identity_fingerprint(&self) -> String {
        let out = self.cli(&["keystore", "status"]);
        out.lines().find_map(|l| l.strip_prefix("identity: ")).expect(&out).split(' ').next().unwrap().to_owned()
    }

    /// `import` arguments for a bundle sealed to `me` and signed by `trusted`.
    pub fn import_args(&self, me: &Receiver, trusted: &str, bundle: &Path) -> Vec<String> {
        let mut args = vec!["import".to_owned(), "--recipient-key".into(), me.key.display().to_string()];
        args.extend(["--trusted-signer".into(), trusted.to_owned(), "--in".into(), bundle.display().to_string()]);
        args.extend(self.args());
        args
    }
}

/// The forms a leaked secret could take in text: raw, hex, HEX, base64.
pub fn secret_forms(bytes: &[u8]) -> [(&'static str, Vec<u8>); 4] {
    use base64::Engine;
    [
        ("raw", bytes.to_vec()),
        ("hex", hex::encode(bytes).into_bytes()),
        ("HEX", hex::encode_upper(bytes).into_bytes()),
        ("base64", base64::engine::general_purpose::STANDARD.encode(bytes).into_bytes()),
    ]
}
