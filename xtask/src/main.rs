//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.

mod bench_operator;
mod ci;
mod cluster_demo;
mod demo;
mod fuzz;
mod testenv;
mod tidy;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "QubeSec project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything CI checks: fmt, clippy, tidy, all tests, docs.
    Ci,
    /// Check the dependency direction between project crates.
    Tidy,
    /// The main job: a local control plane with the KMS plugin encrypting Secrets and the
    /// operator reconciling deploy/samples, then a report. `--cli` walks through the CLI instead.
    Demo {
        /// Leave the control plane, plugin and operator running (until Ctrl-C).
        #[arg(long)]
        keep: bool,
        /// Walk through the `qubesec` CLI instead (keys, encapsulation, signatures, certificates).
        #[arg(long, conflicts_with = "keep")]
        cli: bool,
    },
    /// Run every cargo-fuzz target for a short while (needs nightly + cargo-fuzz).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Regenerate `deploy/crds/` (and the Helm chart's copy) from the operator's Rust types
    /// (a test fails when they are stale).
    Crdgen,
    /// Run the criterion benchmarks (core against peer implementations), or `bench operator`.
    Bench {
        #[command(subcommand)]
        what: Option<BenchCommand>,
    },
    /// Build and run a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager).
    Testenv {
        #[command(subcommand)]
        command: testenv::Command,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The operator at scale on a real control plane: 1,000 key pairs + 200 certificates, then
    /// the same with 5,000 unrelated 100 KiB Secrets, then idle writes (docs/benchmarks.md).
    Operator {
        /// A smoke run: a tenth of the resources and Secrets, 30 s idle.
        #[arg(long)]
        quick: bool,
        /// Idle seconds after the first phase (default 300, or 30 with --quick).
        #[arg(long)]
        idle: Option<u64>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Ci => ci::run(),
        Command::Tidy => tidy::run(),
        Command::Demo { cli: true, .. } => demo::run(),
        Command::Demo { keep, .. } => cluster_demo::run(keep),
        Command::Fuzz { seconds } => fuzz::run(seconds),
        Command::Crdgen => crdgen(),
        Command::Bench { what: None } => util::cargo(&["bench", "-p", "qubesec-benches"]),
        Command::Bench { what: Some(BenchCommand::Operator { quick, idle }) } => {
            let mut sizes = if quick { bench_operator::Sizes::quick() } else { bench_operator::Sizes::full() };
            if let Some(s) = idle {
                sizes.idle = s;
            }
            bench_operator::run(sizes)
        }
        Command::Testenv { command } => testenv::run(command),
    }
}

/// Writes the operator's CRDs into `deploy/crds/`, replacing what was there,
/// with the `Kustomization` listing them (`qubesec_operator::crd::kustomization`),
/// and copies them into the Helm chart's `crds/`.
fn crdgen() -> anyhow::Result<()> {
    use anyhow::Context as _;

    let dir = util::root().join("deploy").join("crds");
    let chart_crds = util::root().join("deploy").join("helm").join("qubesec").join("crds");
    for d in [&dir, &chart_crds] {
        if d.exists() {
            for entry in std::fs::read_dir(d)? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "yaml") {
                    std::fs::remove_file(&path)?;
                }
            }
        }
    }
    let out = dir.to_string_lossy().into_owned();
    util::cargo(&[
        "run",
        "--quiet",
        "-p",
        "qubesec-operator",
        "--bin",
        "qubesec-operator",
        "--",
        "crds",
        "--out-dir",
        &out,
    ])?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") {
            files.push(name);
        }
    }
    std::fs::create_dir_all(&chart_crds).with_context(|| format!("could not create {}", chart_crds.display()))?;
    for name in &files {
        std::fs::copy(dir.join(name), chart_crds.join(name))
            .with_context(|| format!("could not copy {name} into {}", chart_crds.display()))?;
    }
    eprintln!("crdgen: {} CRDs in {} (with Kustomization) and {}", files.len(), dir.display(), chart_crds.display());
    Ok(())
}
