//! `cargo xtask testenv`: build and run a real control plane (issue 4).
//!
//! `build` compiles kube-apiserver, kube-controller-manager and etcd, plus
//! kubectl and helm for the deployment tests (`deploy/`), from the Go module
//! proxy's sources into `target/testenv/` (see `docs/testenv.md`);
//! `up` starts them for a person until Ctrl-C. The layout and the versions
//! live in `qubesec_testenv::layout`, shared with the test harness.

pub(crate) mod gobuild;

use std::time::Instant;

use anyhow::Context as _;
use clap::Subcommand;
use qubesec_testenv::ControlPlane;

/// Test-environment subcommands.
#[derive(Subcommand)]
pub(crate) enum Command {
    /// Build etcd, kube-apiserver, kube-controller-manager, kubectl, helm and kube-apiserver 1.31 into target/testenv.
    Build {
        /// Rebuild even if the stamp says the binaries are up to date.
        #[arg(long)]
        force: bool,
    },
    /// Start a control plane for a person and keep it up until Ctrl-C.
    Up {
        /// Keep the temp directory (etcd data, PKI, kubeconfig, logs) afterwards.
        #[arg(long)]
        keep: bool,
    },
}

pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Build { force } => gobuild::build(gobuild::Set::All, force),
        Command::Up { keep } => {
            gobuild::build(gobuild::Set::ControlPlane, false)?;
            up(keep)
        }
    }
}

/// Runs the control plane (with kube-controller-manager) until Ctrl-C.
fn up(keep: bool) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("could not start a tokio runtime")?;
    runtime.block_on(async {
        let started = Instant::now();
        eprintln!("testenv: starting etcd, kube-apiserver and kube-controller-manager...");
        let mut cp = ControlPlane::builder()
            .controller_manager(true)
            .keep_dir(keep)
            .start()
            .await
            .context("could not start the control plane")?;
        let kubeconfig = cp.kubeconfig_path().display().to_string();
        eprintln!(
            "testenv: ready in {:.1} s\n\
             \n  apiserver:  {}\n  etcd:       {}\n  logs:       {}\n  kubeconfig: {kubeconfig}\n",
            started.elapsed().as_secs_f64(),
            cp.apiserver_url(),
            cp.etcd_url(),
            cp.dir().join("logs").display(),
        );
        if let Ok(kubectl) = qubesec_testenv::kubectl_path() {
            eprintln!("  kubectl:    {}", kubectl.display());
        }
        println!("export KUBECONFIG={kubeconfig}");
        eprintln!("\ntestenv: press Ctrl-C to stop");
        tokio::signal::ctrl_c().await.context("could not wait for Ctrl-C")?;
        eprintln!("testenv: stopping...");
        cp.stop();
        drop(cp);
        eprintln!("testenv: stopped");
        anyhow::Ok(())
    })
}
