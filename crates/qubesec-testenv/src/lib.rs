//! A real Kubernetes control plane for QubeSec's end-to-end tests and demos.
//!
//! **Dev-only.** [`ControlPlane`] runs etcd, kube-apiserver and, on request,
//! kube-controller-manager as child processes in a temp directory, all on
//! free ports on 127.0.0.1. It generates its own PKI (CA, serving cert, an
//! admin client cert in `system:masters`, service-account keys) with `rcgen`,
//! writes a kubeconfig, waits for `/readyz`, and hands out a [`kube::Client`].
//! It can restart the apiserver with other flags while etcd keeps the data,
//! and read raw etcd values to check encryption at rest.
//!
//! The binaries are built from Go module sources by `cargo xtask testenv
//! build` into `<workspace>/target/testenv/` (override with
//! `QUBESEC_TESTENV_DIR`); see `docs/testenv.md`. Without them,
//! [`ControlPlane::start_default`] fails with an error that says so: tests fail,
//! they do not skip. The same build provides kubectl and helm for the
//! deployment tests ([`kubectl_path`], [`helm_path`]) and an older
//! kube-apiserver ([`legacy_apiserver_path`], [`LEGACY_APISERVER_VERSION`]),
//! with the same policy. A second kube-apiserver on the same etcd
//! ([`ControlPlane::start_extra_apiserver`]) gives tests an HA shape.
//!
//! Every process started is stopped by pid (SIGTERM, then SIGKILL) when the
//! [`ControlPlane`] is stopped or dropped, including when a test panics; then
//! the tail of each component's log is printed and the directory is kept.
//!
//! ```no_run
//! # async fn demo() -> Result<(), qubesec_testenv::Error> {
//! use k8s_openapi::api::core::v1::Namespace;
//! use kube::api::{Api, PostParams};
//!
//! let cp = qubesec_testenv::ControlPlane::builder()
//!     .controller_manager(true)
//!     .start()
//!     .await?;
//! let namespaces: Api<Namespace> = Api::all(cp.client());
//! let mut ns = Namespace::default();
//! ns.metadata.name = Some("demo".into());
//! namespaces.create(&PostParams::default(), &ns).await?;
//! let raw = cp.etcd_get("/registry/namespaces/demo").await?;
//! assert!(raw.is_some());
//! # Ok(()) }
//! ```

mod certs;
mod control_plane;
mod error;
mod etcd;
pub mod layout;
mod process;

pub use control_plane::{ControlPlane, ControlPlaneBuilder, DEFAULT_READY_TIMEOUT, KEEP_DIR_ENV};
pub use error::{Error, Result};
pub use layout::{
    Binaries, ETCD_VERSION, HELM_VERSION, KUBERNETES_VERSION, LEGACY_APISERVER_VERSION, helm_path, kubectl_path,
    legacy_apiserver_path,
};
pub use process::process_alive;
