//! Building the control-plane binaries, kubectl and helm from Go module sources.
//!
//! For each of Kubernetes, etcd, kubectl and helm we generate a throwaway Go
//! module under `target/testenv/gomod/` that requires the upstream module,
//! `go mod tidy` it, and `go build` the commands out of the module cache.
//! Kubernetes points its staging modules (`k8s.io/api`, `k8s.io/apiserver`,
//! ...) at local directories, which a dependent module cannot use, so we add a
//! `replace` for each one to its published `v0.X.Y` version; the list comes
//! from k8s.io/kubernetes's own go.mod. kubectl comes from the same
//! k8s.io/kubernetes module, in its own module directory and versioned output
//! directory, so its stamp is independent of the apiserver's; so is the
//! older kube-apiserver (1.31) the KMS tests run against.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use qubesec_testenv::layout::{
    self, ETCD_VERSION, HELM_VERSION, KUBERNETES_VERSION, LEGACY_APISERVER_VERSION, STAMP_FILE, is_up_to_date,
    stamp_key,
};

/// How often a long `go build` reports that it is still running.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

const K8S_BINARIES: [&str; 2] = ["kube-apiserver", "kube-controller-manager"];

/// Which binaries a command needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Set {
    /// etcd, kube-apiserver and kube-controller-manager: what the demo runs.
    ControlPlane,
    /// The control plane plus kubectl and helm, which the deployment tests
    /// use, and the older kube-apiserver the KMS tests use.
    All,
}

/// One thing to build, in the order printed as `[i/n]`.
struct Component {
    label: &'static str,
    build: fn(&Path, bool) -> anyhow::Result<()>,
}

const CONTROL_PLANE: [Component; 2] = [
    Component { label: "Kubernetes (kube-apiserver, kube-controller-manager)", build: build_kubernetes },
    Component { label: "etcd", build: build_etcd },
];
const TOOLS: [Component; 3] = [
    Component { label: "kubectl", build: build_kubectl },
    Component { label: "helm", build: build_helm },
    Component { label: "kube-apiserver 1.31 (KMS test of older apiservers)", build: build_legacy_apiserver },
];

/// Builds whatever of `set` is missing or stale; a warm run only checks the stamps.
/// Prints which component of how many it is on, and the elapsed time.
pub(crate) fn build(set: Set, force: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let cache = layout::cache_dir();
    let _lock = lock_cache(&cache)?;
    let components: Vec<&Component> = match set {
        Set::ControlPlane => CONTROL_PLANE.iter().collect(),
        Set::All => CONTROL_PLANE.iter().chain(TOOLS.iter()).collect(),
    };
    let total = components.len();
    for (i, component) in components.into_iter().enumerate() {
        eprintln!(
            "testenv: [{}/{total}] {} ({:.0} s elapsed)",
            i + 1,
            component.label,
            started.elapsed().as_secs_f64()
        );
        (component.build)(&cache, force)?;
    }
    eprintln!("testenv: binaries ready in {} ({:.1} s)", cache.display(), started.elapsed().as_secs_f64());
    Ok(())
}

/// Holds an exclusive lock on `<cache>/.build.lock` until dropped, so two builds (a test run
/// and a demo, say) never write the same `.partial` file; the second waits, then finds the
/// stamps current.
fn lock_cache(cache: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(cache).with_context(|| format!("could not create {}", cache.display()))?;
    let path = cache.join(".build.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("could not open {}", path.display()))?;
    if file.try_lock().is_err() {
        eprintln!("testenv: another build holds {}; waiting for it", path.display());
        file.lock().with_context(|| format!("could not lock {}", path.display()))?;
    }
    Ok(file)
}

fn build_kubernetes(cache: &Path, force: bool) -> anyhow::Result<()> {
    let version = KUBERNETES_VERSION;
    let out = layout::kubernetes_dir(cache);
    let key = stamp_key("kubernetes", version);
    let Some(go) = toolchain_if_stale(&out, &key, &K8S_BINARIES, force, &format!("Kubernetes v{version}"))? else {
        return Ok(());
    };
    let work = cache.join("gomod").join(format!("k8s-v{version}"));
    prepare_kubernetes_module(&go, &work, "kubernetes", version, &K8S_BINARIES)?;
    let ldflags = kubernetes_ldflags(version)?;
    start_fresh(&out)?;
    let mut timings = Vec::new();
    for bin in K8S_BINARIES {
        let package = format!("k8s.io/kubernetes/cmd/{bin}");
        let secs = go.build(&work, &package, &ldflags, &out.join(bin), bin)?;
        timings.push(format!("{bin}: {secs:.0} s"));
    }
    write_stamp(&out, &key, &go, &timings)
}

/// kubectl from `k8s.io/kubernetes/cmd/kubectl`, at the apiserver's version.
fn build_kubectl(cache: &Path, force: bool) -> anyhow::Result<()> {
    let version = KUBERNETES_VERSION;
    let out = layout::kubectl_dir(cache);
    let key = stamp_key("kubectl", version);
    let Some(go) = toolchain_if_stale(&out, &key, &["kubectl"], force, &format!("kubectl v{version}"))? else {
        return Ok(());
    };
    let work = cache.join("gomod").join(format!("kubectl-v{version}"));
    prepare_kubernetes_module(&go, &work, "kubectl", version, &["kubectl"])?;
    let ldflags = kubernetes_ldflags(version)?;
    start_fresh(&out)?;
    let secs = go.build(&work, "k8s.io/kubernetes/cmd/kubectl", &ldflags, &out.join("kubectl"), "kubectl")?;
    write_stamp(&out, &key, &go, &[format!("kubectl: {secs:.0} s")])
}

/// kube-apiserver alone at [`LEGACY_APISERVER_VERSION`] (1.31), for the KMS
/// test of an apiserver that sends a socket path as `:authority`. Only this
/// one command, so its cold build stays short (712 s measured on the 2-core
/// development machine under load; seconds when Go's caches are warm).
fn build_legacy_apiserver(cache: &Path, force: bool) -> anyhow::Result<()> {
    let version = LEGACY_APISERVER_VERSION;
    let out = layout::legacy_apiserver_dir(cache);
    let key = stamp_key("kube-apiserver", version);
    let label = format!("kube-apiserver v{version}");
    let Some(go) = toolchain_if_stale(&out, &key, &["kube-apiserver"], force, &label)? else {
        return Ok(());
    };
    let work = cache.join("gomod").join(format!("kube-apiserver-v{version}"));
    prepare_kubernetes_module(&go, &work, "kube-apiserver-legacy", version, &["kube-apiserver"])?;
    let ldflags = kubernetes_ldflags(version)?;
    start_fresh(&out)?;
    let secs =
        go.build(&work, "k8s.io/kubernetes/cmd/kube-apiserver", &ldflags, &out.join("kube-apiserver"), &label)?;
    write_stamp(&out, &key, &go, &[format!("kube-apiserver: {secs:.0} s")])
}

/// helm from `helm.sh/helm/v3/cmd/helm`, with the version flags its Makefile sets.
fn build_helm(cache: &Path, force: bool) -> anyhow::Result<()> {
    let version = HELM_VERSION;
    let out = layout::helm_dir(cache);
    let key = stamp_key("helm", version);
    let Some(go) = toolchain_if_stale(&out, &key, &["helm"], force, &format!("helm v{version}"))? else {
        return Ok(());
    };
    let work = cache.join("gomod").join(format!("helm-v{version}"));
    let gomod = format!(
        "// Generated by `cargo xtask testenv build`; not part of the project's sources.\n\
         module qubesec.local/testenv/helm\n\ngo {}\n\n\
         require helm.sh/helm/v3 v{version}\n\ntool helm.sh/helm/v3/cmd/helm\n",
        go.language_version()
    );
    go.prepare_module(&work, &gomod)?;
    // What helm's Makefile passes: the version, and the Kubernetes version its
    // client-go is (used as `.Capabilities.KubeVersion` by `helm template`).
    let client_go = go.module_version(&work, "k8s.io/client-go")?;
    let (kube_major, kube_minor) = kube_version_of_client_go(&client_go)?;
    let mut ldflags = format!(
        "-s -w -X helm.sh/helm/v3/internal/version.version=v{version} \
         -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    );
    for pkg in ["helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"] {
        let _ = write!(ldflags, " -X {pkg}.k8sVersionMajor={kube_major} -X {pkg}.k8sVersionMinor={kube_minor}");
    }
    start_fresh(&out)?;
    let secs = go.build(&work, "helm.sh/helm/v3/cmd/helm", &ldflags, &out.join("helm"), "helm")?;
    write_stamp(&out, &key, &go, &[format!("helm: {secs:.0} s (client-go {client_go})")])
}

/// Writes and tidies a module that requires k8s.io/kubernetes at `version`,
/// with its staging modules replaced by their published versions and
/// `commands` (under `k8s.io/kubernetes/cmd/`) as tools.
fn prepare_kubernetes_module(
    go: &GoToolchain,
    work: &Path,
    name: &str,
    version: &str,
    commands: &[&str],
) -> anyhow::Result<()> {
    // Where k8s.io/kubernetes's go.mod is: `go mod download -json` fetches it.
    let upstream_gomod = go.download_gomod("k8s.io/kubernetes", version)?;
    let upstream = std::fs::read_to_string(&upstream_gomod)
        .with_context(|| format!("could not read {}", upstream_gomod.display()))?;
    let staging = staging_modules(&upstream);
    ensure!(
        !staging.is_empty(),
        "found no `k8s.io/... => ./staging/...` replace lines in {}",
        upstream_gomod.display()
    );
    let staging_version = staging_version(version)?;
    let mut gomod = format!(
        "// Generated by `cargo xtask testenv build`; not part of the project's sources.\n\
         module qubesec.local/testenv/{name}\n\ngo {}\n\n\
         require k8s.io/kubernetes v{version}\n\ntool (\n",
        go.language_version()
    );
    for bin in commands {
        let _ = writeln!(gomod, "\tk8s.io/kubernetes/cmd/{bin}");
    }
    gomod.push_str(")\n\nreplace (\n");
    for module in &staging {
        let _ = writeln!(gomod, "\t{module} => {module} {staging_version}");
    }
    gomod.push_str(")\n");
    go.prepare_module(work, &gomod)
}

/// `-ldflags` that make Kubernetes commands report `version` (not `v0.0.0-master`).
fn kubernetes_ldflags(version: &str) -> anyhow::Result<String> {
    let mut ldflags = String::from("-s -w");
    let (major, minor) = major_minor(version)?;
    for pkg in ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"] {
        let _ = write!(
            ldflags,
            " -X {pkg}.gitVersion=v{version} -X {pkg}.gitMajor={major} \
             -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"
        );
    }
    Ok(ldflags)
}

/// client-go `v0.X.Y` belongs to Kubernetes `1.X` (helm's Makefile does the same sum).
fn kube_version_of_client_go(client_go: &str) -> anyhow::Result<(u32, u32)> {
    let mut parts = client_go.strip_prefix('v').unwrap_or(client_go).split('.').map(str::parse::<u32>);
    let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
        bail!("unexpected client-go version {client_go}");
    };
    Ok((major + 1, minor))
}

fn build_etcd(cache: &Path, force: bool) -> anyhow::Result<()> {
    let version = ETCD_VERSION;
    let out = layout::etcd_dir(cache);
    let key = stamp_key("etcd", version);
    let Some(go) = toolchain_if_stale(&out, &key, &["etcd"], force, &format!("etcd v{version}"))? else {
        return Ok(());
    };
    let work = cache.join("gomod").join(format!("etcd-v{version}"));
    let gomod = format!(
        "// Generated by `cargo xtask testenv build`; not part of the project's sources.\n\
         module qubesec.local/testenv/etcd\n\ngo {}\n\n\
         require go.etcd.io/etcd/server/v3 v{version}\n\ntool go.etcd.io/etcd/server/v3\n",
        go.language_version()
    );
    go.prepare_module(&work, &gomod)?;
    start_fresh(&out)?;
    let secs = go.build(&work, "go.etcd.io/etcd/server/v3", "-s -w", &out.join("etcd"), "etcd")?;
    write_stamp(&out, &key, &go, &[format!("etcd: {secs:.0} s")])
}

/// The module paths that k8s.io/kubernetes's go.mod replaces with `./staging/...`.
fn staging_modules(gomod: &str) -> Vec<String> {
    let mut modules = Vec::new();
    for line in gomod.lines() {
        let line = line.split("//").next().unwrap_or_default().trim();
        let line = line.strip_prefix("replace ").unwrap_or(line).trim();
        let Some((from, to)) = line.split_once("=>") else {
            continue;
        };
        if !to.trim().starts_with("./staging/") {
            continue;
        }
        if let Some(module) = from.split_whitespace().next()
            && !modules.iter().any(|m| m == module)
        {
            modules.push(module.to_owned());
        }
    }
    modules.sort();
    modules
}

/// Kubernetes `1.X.Y` publishes its staging modules as `v0.X.Y`.
fn staging_version(version: &str) -> anyhow::Result<String> {
    let rest = version.strip_prefix("1.").with_context(|| format!("unexpected Kubernetes version {version}"))?;
    Ok(format!("v0.{rest}"))
}

fn major_minor(version: &str) -> anyhow::Result<(&str, &str)> {
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        _ => bail!("unexpected version {version}"),
    }
}

/// The Go toolchain to build `label` with, or `None` when `out` already holds a current build.
fn toolchain_if_stale(
    out: &Path,
    key: &str,
    binaries: &[&str],
    force: bool,
    label: &str,
) -> anyhow::Result<Option<GoToolchain>> {
    if !force && is_up_to_date(out, key, binaries) {
        eprintln!("testenv: {label} is up to date in {}", out.display());
        return Ok(None);
    }
    let go = GoToolchain::detect()?;
    eprintln!("testenv: building {label} with {}", go.version);
    Ok(Some(go))
}

/// Removes an old stamp so an interrupted build never looks complete.
fn start_fresh(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("could not create {}", out.display()))?;
    match std::fs::remove_file(out.join(STAMP_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("could not remove the stamp in {}", out.display()))
        }
        _ => Ok(()),
    }
}

fn write_stamp(out: &Path, key: &str, go: &GoToolchain, timings: &[String]) -> anyhow::Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let stamp = format!("{key}\ngo: {}\nbuilt at (unix): {now}\nbuild times: {}\n", go.version, timings.join(", "));
    let path = out.join(STAMP_FILE);
    std::fs::write(&path, stamp).with_context(|| format!("could not write {}", path.display()))
}

/// The local Go toolchain, used with `GOTOOLCHAIN=local` (never downloads another).
struct GoToolchain {
    /// e.g. `go1.26.8`.
    version: String,
}

impl GoToolchain {
    fn detect() -> anyhow::Result<Self> {
        let output = Command::new("go")
            .args(["env", "GOVERSION"])
            .env("GOTOOLCHAIN", "local")
            .output()
            .context("could not run `go`: install a Go toolchain (Kubernetes 1.37 needs Go 1.26 or newer)")?;
        ensure!(output.status.success(), "`go env GOVERSION` failed");
        let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Ok(Self { version })
    }

    /// The `go` directive for generated modules: the local toolchain's version.
    fn language_version(&self) -> &str {
        self.version.strip_prefix("go").unwrap_or(&self.version)
    }

    fn command(&self, dir: &Path) -> Command {
        self.command_with(dir, &[])
    }

    /// `go` in `dir` with our environment, run through `wrapper` (e.g. `nice -n 10`).
    fn command_with(&self, dir: &Path, wrapper: &[&str]) -> Command {
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg("go");
                cmd
            }
            None => Command::new("go"),
        };
        cmd.current_dir(dir)
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0")
            // The module's go.mod and go.sum are ours to update.
            .env("GOFLAGS", "-mod=mod -buildvcs=false");
        cmd
    }

    /// Downloads `module@vversion` into the module cache; returns its go.mod path.
    fn download_gomod(&self, module: &str, version: &str) -> anyhow::Result<PathBuf> {
        let dir = std::env::temp_dir();
        let output = self
            .command(&dir)
            .args(["mod", "download", "-json", &format!("{module}@v{version}")])
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("could not run `go mod download {module}`"))?;
        let json: serde_json::Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("`go mod download -json {module}` printed no JSON"))?;
        if let Some(err) = json.get("Error").and_then(|e| e.as_str()) {
            bail!("go mod download {module}@v{version}: {err}");
        }
        ensure!(output.status.success(), "go mod download {module}@v{version} failed");
        let gomod = json
            .get("GoMod")
            .and_then(|p| p.as_str())
            .with_context(|| format!("`go mod download -json {module}` gave no GoMod path"))?;
        Ok(PathBuf::from(gomod))
    }

    /// The version of `module` selected in the module at `dir` (after `prepare_module`).
    fn module_version(&self, dir: &Path, module: &str) -> anyhow::Result<String> {
        let output = self
            .command(dir)
            .args(["list", "-m", "-f", "{{.Version}}", module])
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("could not run `go list -m {module}`"))?;
        ensure!(output.status.success(), "`go list -m {module}` failed in {}", dir.display());
        let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        ensure!(!version.is_empty(), "`go list -m {module}` printed no version in {}", dir.display());
        Ok(version)
    }

    /// Writes `gomod` into `dir` and lets `go mod tidy` resolve the rest.
    fn prepare_module(&self, dir: &Path, gomod: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
        std::fs::write(dir.join("go.mod"), gomod)
            .with_context(|| format!("could not write {}/go.mod", dir.display()))?;
        let started = Instant::now();
        eprintln!("testenv: resolving and downloading modules in {} (minutes on a cold module cache)", dir.display());
        let status = self.command(dir).args(["mod", "tidy"]).status().context("could not run `go mod tidy`")?;
        ensure!(status.success(), "`go mod tidy` failed in {}", dir.display());
        eprintln!("testenv: resolved modules in {} ({:.1} s)", dir.display(), started.elapsed().as_secs_f64());
        Ok(())
    }

    /// `nice -n 10 go build -trimpath` of one command, printing progress every
    /// 30 s; writes to a temp name and renames, so `output` is never partial.
    fn build(&self, dir: &Path, package: &str, ldflags: &str, output: &Path, label: &str) -> anyhow::Result<f64> {
        let partial = output.with_extension("partial");
        let args = [
            "build".to_owned(),
            "-trimpath".to_owned(),
            format!("-ldflags={ldflags}"),
            "-o".to_owned(),
            partial.display().to_string(),
            package.to_owned(),
        ];
        // Low priority: the machine is shared with cargo builds.
        let nice = Command::new("nice").arg("--version").output().is_ok();
        let mut cmd = self.command_with(dir, if nice { &["nice", "-n", "10"] } else { &[] });
        cmd.args(&args);
        eprintln!("testenv: building {label} ({package})");
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("could not start `go build {package}`"))?;
        let mut next_report = PROGRESS_EVERY;
        let status = loop {
            if let Some(status) = child.try_wait().context("could not wait for `go build`")? {
                break status;
            }
            if started.elapsed() >= next_report {
                eprintln!("testenv: still building {label}: {} s elapsed", started.elapsed().as_secs());
                next_report += PROGRESS_EVERY;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        ensure!(status.success(), "`go build {package}` failed ({status}) with {}; see the output above", self.version);
        std::fs::rename(&partial, output)
            .with_context(|| format!("could not move the build to {}", output.display()))?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!("testenv: built {label} in {secs:.0} s");
        Ok(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_modules_come_from_the_replace_block() {
        let gomod = "module k8s.io/kubernetes\n\nrequire (\n\tk8s.io/api v0.0.0\n\tgithub.com/x/y v1.0.0\n)\n\n\
                     replace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\
                     \tk8s.io/kms => ./staging/src/k8s.io/kms // comment\n\
                     \tgithub.com/x/y => github.com/x/y v1.0.1\n)\n\
                     replace k8s.io/apimachinery v0.0.0 => ./staging/src/k8s.io/apimachinery\n";
        assert_eq!(staging_modules(gomod), ["k8s.io/api", "k8s.io/apimachinery", "k8s.io/kms"]);
    }

    #[test]
    fn helm_reports_the_kubernetes_version_of_its_client_go() {
        assert_eq!(kube_version_of_client_go("v0.37.0").unwrap(), (1, 37));
        assert_eq!(kube_version_of_client_go("v0.36.4").unwrap(), (1, 36));
        assert!(kube_version_of_client_go("vX").is_err());
    }

    #[test]
    fn kubernetes_ldflags_set_the_version() {
        let flags = kubernetes_ldflags("1.37.2").unwrap();
        assert!(flags.starts_with("-s -w "), "{flags}");
        assert!(flags.contains("-X k8s.io/component-base/version.gitVersion=v1.37.2"), "{flags}");
        assert!(flags.contains("-X k8s.io/client-go/pkg/version.gitMinor=37"), "{flags}");
    }

    #[test]
    fn versions_split() {
        assert_eq!(staging_version("1.37.2").unwrap(), "v0.37.2");
        assert_eq!(major_minor("1.37.2").unwrap(), ("1", "37"));
        assert!(staging_version("2.0.0").is_err());
    }
}
