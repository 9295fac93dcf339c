//! Starting, restarting and stopping etcd, kube-apiserver and kube-controller-manager.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::certs::{self, PkiFiles};
use crate::error::{Error, Result};
use crate::etcd;
use crate::layout::Binaries;
use crate::process::{Component, STOP_GRACE};

/// Default time allowed for etcd plus kube-apiserver to become ready.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Environment variable: when set to `1`, the temp directory (data, PKI, logs)
/// is kept after the control plane stops.
pub const KEEP_DIR_ENV: &str = "QUBESEC_TESTENV_KEEP";

/// How many log lines per component an error or a failing test shows.
const LOG_TAIL_LINES: usize = 40;

/// How often a start is retried when a picked port was taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// Configures and starts a [`ControlPlane`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ControlPlaneBuilder {
    controller_manager: bool,
    apiserver_args: Vec<String>,
    ready_timeout: Duration,
    binaries: Option<Binaries>,
    keep_dir: bool,
}

impl Default for ControlPlaneBuilder {
    fn default() -> Self {
        Self {
            controller_manager: false,
            apiserver_args: Vec::new(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
            binaries: None,
            keep_dir: std::env::var(KEEP_DIR_ENV).is_ok_and(|v| v == "1"),
        }
    }
}

impl ControlPlaneBuilder {
    /// Also start kube-controller-manager (garbage collector and namespace
    /// controllers), e.g. for owner-reference garbage collection.
    pub fn controller_manager(mut self, enabled: bool) -> Self {
        self.controller_manager = enabled;
        self
    }

    /// Adds a flag to kube-apiserver's command line, e.g.
    /// `--encryption-provider-config=/path`. Later flags win over the defaults.
    pub fn apiserver_arg(mut self, arg: impl Into<String>) -> Self {
        self.apiserver_args.push(arg.into());
        self
    }

    /// How long to wait for etcd and for kube-apiserver's `/readyz`
    /// (default [`DEFAULT_READY_TIMEOUT`]).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Uses these binaries instead of [`Binaries::locate`].
    pub fn binaries(mut self, binaries: Binaries) -> Self {
        self.binaries = Some(binaries);
        self
    }

    /// Keeps the temp directory (etcd data, PKI, kubeconfig, logs) after
    /// stopping. Also on with `QUBESEC_TESTENV_KEEP=1`, and always after a panic.
    pub fn keep_dir(mut self, keep: bool) -> Self {
        self.keep_dir = keep;
        self
    }

    /// Starts etcd and kube-apiserver (and kube-controller-manager if asked),
    /// and waits until the apiserver's `/readyz` passes.
    ///
    /// # Errors
    /// [`Error::MissingBinaries`] when `cargo xtask testenv build` has not
    /// run; [`Error::NotReady`] / [`Error::Exited`] (with every component's
    /// log tail) when a component fails to come up; I/O errors.
    pub async fn start(self) -> Result<ControlPlane> {
        let binaries = match &self.binaries {
            Some(b) => b.clone(),
            None => Binaries::locate()?,
        };
        let mut attempt = 1;
        loop {
            match ControlPlane::start(&self, binaries.clone()).await {
                Err(e) if e.is_port_conflict() && attempt < START_ATTEMPTS => attempt += 1,
                other => return other,
            }
        }
    }
}

/// Loopback ports of one control plane.
#[derive(Debug, Clone, Copy)]
struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
}

/// A running etcd + kube-apiserver (+ kube-controller-manager) in a temp directory.
///
/// Everything listens on 127.0.0.1 on ports picked at start. Dropping it stops
/// every process it started (SIGTERM, then SIGKILL after a grace period); when
/// the drop happens during a panic (a failing test), it prints the tail of each
/// component's log and keeps the directory.
pub struct ControlPlane {
    binaries: Binaries,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    keep_dir: bool,
    ready_timeout: Duration,
    ports: Ports,
    pki: PkiFiles,
    kubeconfig: PathBuf,
    apiserver_args: Vec<String>,
    etcd: Option<Component>,
    apiserver: Option<Component>,
    controller_manager: Option<Component>,
    /// More kube-apiservers on the same etcd ([`ControlPlane::start_extra_apiserver`]).
    extra_apiservers: Vec<Component>,
    started_pids: Vec<u32>,
    client: kube::Client,
}

impl ControlPlane {
    /// A builder with defaults: no controller manager, 90 s ready timeout.
    pub fn builder() -> ControlPlaneBuilder {
        ControlPlaneBuilder::default()
    }

    /// Starts etcd and kube-apiserver with defaults; see [`ControlPlaneBuilder::start`].
    ///
    /// # Errors
    /// As [`ControlPlaneBuilder::start`].
    pub async fn start_default() -> Result<Self> {
        Self::builder().start().await
    }

    async fn start(opts: &ControlPlaneBuilder, binaries: Binaries) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("qubesec-testenv-")
            .tempdir()
            .map_err(|e| Error::io("could not create a temp directory", e))?;
        let path = dir.path().to_path_buf();
        for sub in ["pki", "logs", "etcd"] {
            std::fs::create_dir_all(path.join(sub))
                .map_err(|e| Error::io(format!("could not create {sub}/ in the temp dir"), e))?;
        }
        let pki = certs::generate(&path.join("pki"))?;
        let ports = pick_ports()?;
        let kubeconfig = path.join("kubeconfig");
        certs::write(&kubeconfig, &pki.kubeconfig(&format!("https://127.0.0.1:{}", ports.apiserver)))?;
        let etcd =
            Component::spawn("etcd", &binaries.etcd, &etcd_args(&path, ports), &path.join("logs").join("etcd.log"))?;
        let started_pids = vec![etcd.pid()];
        // A placeholder client until the apiserver runs; building one needs
        // only the kubeconfig, not a live server.
        let client = client_for(&kubeconfig).await?;
        let mut cp = Self {
            binaries,
            dir: Some(dir),
            path,
            keep_dir: opts.keep_dir,
            ready_timeout: opts.ready_timeout,
            ports,
            pki,
            kubeconfig,
            apiserver_args: opts.apiserver_args.clone(),
            etcd: Some(etcd),
            apiserver: None,
            controller_manager: None,
            extra_apiservers: Vec::new(),
            started_pids,
            client,
        };
        cp.wait_for_etcd().await?;
        cp.start_apiserver().await?;
        if opts.controller_manager {
            cp.start_controller_manager()?;
        }
        Ok(cp)
    }

    /// A client authenticated as a `system:masters` user.
    ///
    /// After [`restart_apiserver`](Self::restart_apiserver), take a new one:
    /// the old one's pooled connections went to the old process.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Path of the kubeconfig (admin user, certificates embedded).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The temp directory holding `pki/`, `logs/`, `etcd/` and `kubeconfig`.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The apiserver's URL, `https://127.0.0.1:PORT`.
    pub fn apiserver_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.apiserver)
    }

    /// etcd's client URL, `http://127.0.0.1:PORT` (plain HTTP, loopback only).
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.etcd_client)
    }

    /// Path of the CA certificate that signed the apiserver's serving certificate.
    pub fn ca_cert_path(&self) -> &Path {
        &self.pki.ca_cert
    }

    /// The extra flags the running kube-apiserver got.
    pub fn apiserver_args(&self) -> &[String] {
        &self.apiserver_args
    }

    /// The pids of every process this control plane has started, including
    /// ones already stopped (e.g. an apiserver replaced by a restart).
    pub fn started_pids(&self) -> &[u32] {
        &self.started_pids
    }

    /// The running kube-apiserver's pid.
    pub fn apiserver_pid(&self) -> Option<u32> {
        self.apiserver.as_ref().map(Component::pid)
    }

    /// The log files of the components, by name.
    pub fn log_files(&self) -> Vec<(&'static str, PathBuf)> {
        self.components().map(|c| (c.name(), c.log_path().to_path_buf())).collect()
    }

    /// The last `lines` lines of every component's log, with headings.
    pub fn log_tails(&self, lines: usize) -> String {
        self.components().map(|c| c.log_tail(lines)).collect::<Vec<_>>().join("")
    }

    /// The raw bytes etcd stores at `key` (e.g. `/registry/secrets/NS/NAME`),
    /// bypassing the apiserver, or `None` if there is no such key.
    ///
    /// # Errors
    /// [`Error::Etcd`] when etcd cannot be reached or answers oddly.
    pub async fn etcd_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        etcd::get(self.ports.etcd_client, key).await
    }

    /// Every etcd key under `prefix` (e.g. `/registry/secrets/`), sorted.
    ///
    /// # Errors
    /// [`Error::Etcd`] when etcd cannot be reached or answers oddly.
    pub async fn etcd_keys(&self, prefix: &str) -> Result<Vec<String>> {
        etcd::keys(self.ports.etcd_client, prefix).await
    }

    /// Stops kube-apiserver and starts it again on the same port with the same
    /// etcd (so all data stays) and `extra_args` replacing the previous extra
    /// flags; waits for `/readyz` and replaces [`client`](Self::client).
    ///
    /// # Errors
    /// As [`ControlPlaneBuilder::start`].
    pub async fn restart_apiserver<I, S>(&mut self, extra_args: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        if let Some(mut old) = self.apiserver.take() {
            old.stop(STOP_GRACE);
        }
        self.apiserver_args = extra_args.into_iter().map(Into::into).collect();
        self.start_apiserver().await
    }

    /// Starts one more kube-apiserver on the same etcd, as a second
    /// control-plane node would run it: its own loopback port and log, the
    /// same PKI and default flags, plus `extra_args` (e.g. its own
    /// `--encryption-provider-config`). Waits for its `/readyz` and returns a
    /// client for it. It is stopped with the control plane. `binary` picks
    /// another kube-apiserver build (e.g. an older version); `None` uses the
    /// control plane's.
    ///
    /// # Errors
    /// I/O errors starting it; [`Error::NotReady`] / [`Error::Exited`].
    pub async fn start_extra_apiserver<I, S>(&mut self, binary: Option<&Path>, extra_args: I) -> Result<kube::Client>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let port = pick_ports()?.apiserver;
        let n = self.extra_apiservers.len() + 2;
        let kubeconfig = self.path.join(format!("kubeconfig-apiserver-{n}"));
        certs::write(&kubeconfig, &self.pki.kubeconfig(&format!("https://127.0.0.1:{port}")))?;
        let mut args = self.default_apiserver_args();
        args.retain(|a| !a.starts_with("--secure-port="));
        args.push(format!("--secure-port={port}"));
        args.extend(extra_args.into_iter().map(Into::into));
        let name = "kube-apiserver (extra)";
        let log = self.path.join("logs").join(format!("kube-apiserver-{n}.log"));
        let bin = binary.map_or_else(|| self.binaries.kube_apiserver.clone(), Path::to_path_buf);
        let component = Component::spawn(name, &bin, &args, &log)?;
        self.started_pids.push(component.pid());
        self.extra_apiservers.push(component);
        let client = client_for(&kubeconfig).await?;
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            self.check_running()?;
            let probe = client.request_text(
                http::Request::get("/readyz")
                    .body(Vec::new())
                    .map_err(|e| Error::io("bad /readyz request", std::io::Error::other(e.to_string())))?,
            );
            let last_error = match tokio::time::timeout(Duration::from_secs(5), probe).await {
                Ok(Ok(_)) => return Ok(client),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "/readyz timed out".to_owned(),
            };
            if Instant::now() >= deadline {
                return Err(self.not_ready(name, last_error));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts kube-controller-manager (garbage collector and namespace
    /// controllers) if it is not running.
    ///
    /// # Errors
    /// I/O errors starting it.
    pub fn start_controller_manager(&mut self) -> Result<()> {
        if self.controller_manager.is_some() {
            return Ok(());
        }
        let args = vec![
            format!("--kubeconfig={}", self.kubeconfig.display()),
            "--controllers=garbagecollector,namespace".to_owned(),
            "--leader-elect=false".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            // No serving endpoint: nothing needs it, and it saves a port.
            "--secure-port=0".to_owned(),
            "--use-service-account-credentials=false".to_owned(),
        ];
        let kcm = Component::spawn(
            "kube-controller-manager",
            &self.binaries.kube_controller_manager,
            &args,
            &self.path.join("logs").join("kube-controller-manager.log"),
        )?;
        self.started_pids.push(kcm.pid());
        self.controller_manager = Some(kcm);
        Ok(())
    }

    /// Stops every running component (controller manager and apiserver first,
    /// then etcd), each by pid: SIGTERM, then SIGKILL after 10 s. Idempotent.
    ///
    /// After it returns, none of [`started_pids`](Self::started_pids) is alive.
    pub fn stop(&mut self) {
        let deadline = Instant::now() + STOP_GRACE;
        let mut front: Vec<Component> =
            [self.controller_manager.take(), self.apiserver.take()].into_iter().flatten().collect();
        front.append(&mut self.extra_apiservers);
        for c in &mut front {
            c.terminate();
        }
        for c in &mut front {
            c.wait_or_kill(deadline);
        }
        if let Some(mut etcd) = self.etcd.take() {
            etcd.stop(STOP_GRACE);
        }
    }

    /// Whether every component that should run is running.
    ///
    /// # Errors
    /// [`Error::Exited`] naming the first component that has exited.
    pub fn check_running(&mut self) -> Result<()> {
        let mut dead = None;
        let main = [self.etcd.as_mut(), self.apiserver.as_mut(), self.controller_manager.as_mut()];
        for c in main.into_iter().flatten().chain(self.extra_apiservers.iter_mut()) {
            if let Some(status) = c.exit_status() {
                dead = Some((c.name(), status));
                break;
            }
        }
        match dead {
            None => Ok(()),
            Some((component, status)) => Err(Error::Exited { component, status, logs: self.log_tails(LOG_TAIL_LINES) }),
        }
    }

    fn components(&self) -> impl Iterator<Item = &Component> {
        [self.etcd.as_ref(), self.apiserver.as_ref(), self.controller_manager.as_ref()]
            .into_iter()
            .flatten()
            .chain(self.extra_apiservers.iter())
    }

    async fn wait_for_etcd(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            self.check_running()?;
            let last_error = match etcd::healthy(self.ports.etcd_client).await {
                Ok(()) => return Ok(()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(self.not_ready("etcd", last_error));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn start_apiserver(&mut self) -> Result<()> {
        let log = self.path.join("logs").join("kube-apiserver.log");
        let mut args = self.default_apiserver_args();
        args.extend(self.apiserver_args.iter().cloned());
        let apiserver = Component::spawn("kube-apiserver", &self.binaries.kube_apiserver, &args, &log)?;
        self.started_pids.push(apiserver.pid());
        self.apiserver = Some(apiserver);
        self.client = client_for(&self.kubeconfig).await?;
        self.wait_for_apiserver().await
    }

    async fn wait_for_apiserver(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            self.check_running()?;
            let probe = self.client.request_text(
                http::Request::get("/readyz")
                    .body(Vec::new())
                    .map_err(|e| Error::io("bad /readyz request", std::io::Error::other(e.to_string())))?,
            );
            let last_error = match tokio::time::timeout(Duration::from_secs(5), probe).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "/readyz timed out".to_owned(),
            };
            if Instant::now() >= deadline {
                return Err(self.not_ready("kube-apiserver", last_error));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn not_ready(&self, component: &'static str, last_error: String) -> Error {
        Error::NotReady { component, timeout: self.ready_timeout, last_error, logs: self.log_tails(LOG_TAIL_LINES) }
    }

    fn default_apiserver_args(&self) -> Vec<String> {
        let p = &self.pki;
        vec![
            format!("--etcd-servers={}", self.etcd_url()),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={}", self.ports.apiserver),
            format!("--tls-cert-file={}", p.serving_cert.display()),
            format!("--tls-private-key-file={}", p.serving_key.display()),
            format!("--client-ca-file={}", p.ca_cert.display()),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--authorization-mode=RBAC".to_owned(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!("--service-account-key-file={}", p.sa_pub.display()),
            format!("--service-account-signing-key-file={}", p.sa_key.display()),
            "--disable-admission-plugins=ServiceAccount".to_owned(),
            "--allow-privileged=true".to_owned(),
            // The `kubernetes` Service's endpoints would be 127.0.0.1, which
            // Endpoints validation rejects; nothing here routes to it anyway.
            "--endpoint-reconciler-type=none".to_owned(),
        ]
    }
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("dir", &self.path)
            .field("apiserver", &self.apiserver_url())
            .field("etcd", &self.etcd_url())
            .field("apiserver_args", &self.apiserver_args)
            .field("started_pids", &self.started_pids)
            .finish_non_exhaustive()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!(
                "qubesec-testenv: a test failed; component logs (full logs in {}):\n{}",
                self.path.display(),
                self.log_tails(LOG_TAIL_LINES)
            );
        }
        self.stop();
        if (panicking || self.keep_dir)
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("qubesec-testenv: kept {}", kept.display());
        }
    }
}

/// Builds a client from the generated kubeconfig.
async fn client_for(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn etcd_args(dir: &Path, ports: Ports) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        "--name=testenv".to_owned(),
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=testenv={peer}"),
        "--initial-cluster-state=new".to_owned(),
        // Test data is throwaway: skip fsync, which dominates write latency.
        "--unsafe-no-fsync=true".to_owned(),
        "--log-level=warn".to_owned(),
    ]
}

/// Ports handed out by this process and not to be handed out again.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Picks three free loopback ports. All listeners are held until the three
/// are chosen (so they differ), and a port is never handed out twice by one
/// process (so parallel control planes in one test binary do not collide).
/// Another process could still take one before our component binds it;
/// [`ControlPlaneBuilder::start`] retries then.
fn pick_ports() -> Result<Ports> {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let handed_out = guard.get_or_insert_with(HashSet::new);
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < 3 {
        let l =
            TcpListener::bind(("127.0.0.1", 0)).map_err(|e| Error::io("could not bind a free port on 127.0.0.1", e))?;
        let port = l.local_addr().map_err(|e| Error::io("could not read a bound port", e))?.port();
        if handed_out.insert(port) {
            ports.push(port);
        }
        listeners.push(l);
    }
    match ports[..] {
        [etcd_client, etcd_peer, apiserver] => Ok(Ports { etcd_client, etcd_peer, apiserver }),
        _ => Err(Error::io("could not pick ports", std::io::Error::other("unreachable"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_ports_are_distinct_across_calls() {
        let mut seen = HashSet::new();
        for _ in 0..10 {
            let p = pick_ports().unwrap();
            for port in [p.etcd_client, p.etcd_peer, p.apiserver] {
                assert!(seen.insert(port), "port {port} handed out twice");
            }
        }
    }
}
