//! Where the built binaries live, and which versions they are.
//!
//! `cargo xtask testenv build` writes them; [`Binaries::locate`] finds the
//! control plane, [`kubectl_path`] and [`helm_path`] the two clients the
//! deployment tests drive. Both sides use this module, so the layout has one
//! definition.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The Kubernetes release whose kube-apiserver and kube-controller-manager we build.
pub const KUBERNETES_VERSION: &str = "1.37.2";

/// An older kube-apiserver, built alone, for tests of clients that older
/// apiservers are (kube-apiserver before 1.32 sends a unix socket's path as
/// the HTTP/2 `:authority` to KMS plugins): the newest 1.31 patch release
/// on the Go module proxy.
pub const LEGACY_APISERVER_VERSION: &str = "1.31.14";

/// The etcd release we build (`go.etcd.io/etcd/server/v3`).
pub const ETCD_VERSION: &str = "3.6.16";

/// The Helm release we build (`helm.sh/helm/v3`), to render and lint `deploy/helm/qubesec`.
///
/// kubectl is built at [`KUBERNETES_VERSION`], matching the apiserver it talks to.
pub const HELM_VERSION: &str = "3.22.0";

/// Environment variable that overrides the binary cache directory
/// (default: `<workspace>/target/testenv`).
pub const TESTENV_DIR_ENV: &str = "QUBESEC_TESTENV_DIR";

/// Name of the stamp file written last by a successful build, inside each
/// versioned directory.
pub const STAMP_FILE: &str = "stamp";

/// Bumped whenever the build recipe changes in a way that needs a rebuild.
const RECIPE: u32 = 1;

/// The binary cache directory: `$QUBESEC_TESTENV_DIR`, or `<workspace>/target/testenv`.
///
/// The workspace root is derived from this crate's manifest directory, so the
/// cache does not move when `CARGO_TARGET_DIR` points elsewhere.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(TESTENV_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    workspace_root().join("target").join("testenv")
}

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// The directory holding kube-apiserver and kube-controller-manager, e.g.
/// `target/testenv/k8s-v1.37.2`.
pub fn kubernetes_dir(cache: &Path) -> PathBuf {
    cache.join(format!("k8s-v{KUBERNETES_VERSION}"))
}

/// The directory holding etcd, e.g. `target/testenv/etcd-v3.6.16`.
pub fn etcd_dir(cache: &Path) -> PathBuf {
    cache.join(format!("etcd-v{ETCD_VERSION}"))
}

/// The directory holding kubectl, e.g. `target/testenv/kubectl-v1.37.2`.
///
/// Separate from [`kubernetes_dir`], with its own stamp, so adding kubectl did
/// not invalidate an existing apiserver build.
pub fn kubectl_dir(cache: &Path) -> PathBuf {
    cache.join(format!("kubectl-v{KUBERNETES_VERSION}"))
}

/// The directory holding the older kube-apiserver, e.g. `target/testenv/kube-apiserver-v1.31.14`.
pub fn legacy_apiserver_dir(cache: &Path) -> PathBuf {
    cache.join(format!("kube-apiserver-v{LEGACY_APISERVER_VERSION}"))
}

/// The directory holding helm, e.g. `target/testenv/helm-v3.22.0`.
pub fn helm_dir(cache: &Path) -> PathBuf {
    cache.join(format!("helm-v{HELM_VERSION}"))
}

/// The first line of the stamp file for a component built at a version.
///
/// A build is up to date when its stamp file starts with this line; the
/// lines after it are informational (Go version, build time).
pub fn stamp_key(component: &str, version: &str) -> String {
    format!("qubesec-testenv recipe {RECIPE}: {component} v{version}")
}

/// Whether `dir` holds a complete build: a stamp starting with `key` and every
/// file in `binaries`.
pub fn is_up_to_date(dir: &Path, key: &str, binaries: &[&str]) -> bool {
    let stamp_ok = std::fs::read_to_string(dir.join(STAMP_FILE)).is_ok_and(|s| s.lines().next() == Some(key));
    stamp_ok && binaries.iter().all(|b| dir.join(b).is_file())
}

/// Paths of the three control-plane binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// The etcd server.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// kube-controller-manager.
    pub kube_controller_manager: PathBuf,
}

impl Binaries {
    /// Finds the binaries in [`cache_dir`].
    ///
    /// # Errors
    /// [`Error::MissingBinaries`] when a build is missing or incomplete; its
    /// message says to run `cargo xtask testenv build`.
    pub fn locate() -> Result<Self> {
        Self::locate_in(&cache_dir())
    }

    /// Finds the binaries under `cache`, laid out as `cargo xtask testenv build` writes them.
    ///
    /// # Errors
    /// [`Error::MissingBinaries`] when a build is missing or incomplete.
    pub fn locate_in(cache: &Path) -> Result<Self> {
        let k8s = kubernetes_dir(cache);
        let etcd = etcd_dir(cache);
        let checks = [
            (&k8s, stamp_key("kubernetes", KUBERNETES_VERSION), &["kube-apiserver", "kube-controller-manager"][..]),
            (&etcd, stamp_key("etcd", ETCD_VERSION), &["etcd"][..]),
        ];
        for (dir, key, bins) in checks {
            if !is_up_to_date(dir, &key, bins) {
                return Err(Error::MissingBinaries { dir: dir.clone() });
            }
        }
        Ok(Self {
            etcd: etcd.join("etcd"),
            kube_apiserver: k8s.join("kube-apiserver"),
            kube_controller_manager: k8s.join("kube-controller-manager"),
        })
    }
}

/// kubectl (at [`KUBERNETES_VERSION`]) in [`cache_dir`].
///
/// # Errors
/// [`Error::MissingBinaries`] when it has not been built; the message says to
/// run `cargo xtask testenv build`.
pub fn kubectl_path() -> Result<PathBuf> {
    kubectl_path_in(&cache_dir())
}

/// kubectl under `cache`, laid out as `cargo xtask testenv build` writes it.
///
/// # Errors
/// [`Error::MissingBinaries`] when the build is missing or incomplete.
pub fn kubectl_path_in(cache: &Path) -> Result<PathBuf> {
    locate_one(&kubectl_dir(cache), &stamp_key("kubectl", KUBERNETES_VERSION), "kubectl")
}

/// helm (at [`HELM_VERSION`]) in [`cache_dir`].
///
/// # Errors
/// [`Error::MissingBinaries`] when it has not been built; the message says to
/// run `cargo xtask testenv build`.
pub fn helm_path() -> Result<PathBuf> {
    helm_path_in(&cache_dir())
}

/// helm under `cache`, laid out as `cargo xtask testenv build` writes it.
///
/// # Errors
/// [`Error::MissingBinaries`] when the build is missing or incomplete.
pub fn helm_path_in(cache: &Path) -> Result<PathBuf> {
    locate_one(&helm_dir(cache), &stamp_key("helm", HELM_VERSION), "helm")
}

/// kube-apiserver at [`LEGACY_APISERVER_VERSION`] in [`cache_dir`].
///
/// # Errors
/// [`Error::MissingBinaries`] when it has not been built; the message says to
/// run `cargo xtask testenv build`.
pub fn legacy_apiserver_path() -> Result<PathBuf> {
    legacy_apiserver_path_in(&cache_dir())
}

/// The older kube-apiserver under `cache`, laid out as `cargo xtask testenv build` writes it.
///
/// # Errors
/// [`Error::MissingBinaries`] when the build is missing or incomplete.
pub fn legacy_apiserver_path_in(cache: &Path) -> Result<PathBuf> {
    locate_one(&legacy_apiserver_dir(cache), &stamp_key("kube-apiserver", LEGACY_APISERVER_VERSION), "kube-apiserver")
}

fn locate_one(dir: &Path, key: &str, binary: &str) -> Result<PathBuf> {
    if is_up_to_date(dir, key, &[binary]) {
        Ok(dir.join(binary))
    } else {
        Err(Error::MissingBinaries { dir: dir.to_path_buf() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_say_how_to_build_them() {
        let dir = tempfile::tempdir().unwrap();
        let err = Binaries::locate_in(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("cargo xtask testenv build"), "{msg}");
        assert!(msg.contains(&format!("k8s-v{KUBERNETES_VERSION}")), "{msg}");
    }

    #[test]
    fn a_stamped_build_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let k8s = kubernetes_dir(dir.path());
        let etcd = etcd_dir(dir.path());
        for (d, key, bins) in [
            (&k8s, stamp_key("kubernetes", KUBERNETES_VERSION), &["kube-apiserver", "kube-controller-manager"][..]),
            (&etcd, stamp_key("etcd", ETCD_VERSION), &["etcd"][..]),
        ] {
            std::fs::create_dir_all(d).unwrap();
            for b in bins {
                std::fs::write(d.join(b), b"").unwrap();
            }
            std::fs::write(d.join(STAMP_FILE), format!("{key}\ngo: test\n")).unwrap();
        }
        let found = Binaries::locate_in(dir.path()).unwrap();
        assert_eq!(found.kube_apiserver, k8s.join("kube-apiserver"));
        assert_eq!(found.etcd, etcd.join("etcd"));
        // A stamp from another recipe or version is not up to date.
        std::fs::write(etcd.join(STAMP_FILE), "qubesec-testenv recipe 0: etcd v0\n").unwrap();
        assert!(Binaries::locate_in(dir.path()).is_err());
    }

    #[test]
    fn kubectl_and_helm_have_their_own_stamps() {
        let dir = tempfile::tempdir().unwrap();
        for err in [kubectl_path_in(dir.path()).unwrap_err(), helm_path_in(dir.path()).unwrap_err()] {
            let msg = err.to_string();
            assert!(msg.contains("cargo xtask testenv build"), "{msg}");
        }
        assert!(
            kubectl_path_in(dir.path()).unwrap_err().to_string().contains(&format!("kubectl-v{KUBERNETES_VERSION}"))
        );
        assert!(helm_path_in(dir.path()).unwrap_err().to_string().contains(&format!("helm-v{HELM_VERSION}")));
        let legacy = legacy_apiserver_path_in(dir.path()).unwrap_err().to_string();
        assert!(legacy.contains(&format!("kube-apiserver-v{LEGACY_APISERVER_VERSION}")), "{legacy}");
        for (d, key, bin) in [
            (kubectl_dir(dir.path()), stamp_key("kubectl", KUBERNETES_VERSION), "kubectl"),
            (helm_dir(dir.path()), stamp_key("helm", HELM_VERSION), "helm"),
        ] {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(bin), b"").unwrap();
            std::fs::write(d.join(STAMP_FILE), format!("{key}\ngo: test\n")).unwrap();
        }
        assert_eq!(kubectl_path_in(dir.path()).unwrap(), kubectl_dir(dir.path()).join("kubectl"));
        assert_eq!(helm_path_in(dir.path()).unwrap(), helm_dir(dir.path()).join("helm"));
        // The control plane is still missing: the client builds do not stand in for it.
        assert!(Binaries::locate_in(dir.path()).is_err());
        // A helm stamp does not vouch for kubectl.
        std::fs::write(kubectl_dir(dir.path()).join(STAMP_FILE), stamp_key("helm", HELM_VERSION)).unwrap();
        assert!(kubectl_path_in(dir.path()).is_err());
    }

    #[test]
    fn default_cache_is_under_the_workspace_target() {
        let root = workspace_root();
        assert!(root.join("Cargo.toml").is_file(), "{}", root.display());
    }
}
