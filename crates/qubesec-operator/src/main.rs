//! The `qubesec-operator` binary: runs the controllers, or prints the CRDs.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::time::Duration;

use qubesec_operator::leader::{LeaderElector, LeaseConfig};
use qubesec_operator::{Config, Context};

#[derive(Parser)]
#[command(name = "qubesec-operator", version, about = "Post-quantum custom resources for Kubernetes")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Allow references (`...Ref.namespace`) into other namespaces.
    #[arg(long)]
    allow_cross_namespace_refs: bool,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long)]
    namespace: Option<String>,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Run the controllers only while holding a Lease (for several replicas).
    #[arg(long)]
    leader_elect: bool,
    /// Namespace of the leader-election Lease (default: $POD_NAMESPACE, else qubesec-system).
    #[arg(long)]
    lease_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "qubesec-operator")]
    lease_name: String,
    /// How many objects of one kind are reconciled at the same time.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_reconciles: u16,
    /// Threads for key generation, signing, verification and issuance (16 MiB stacks);
    /// default: the CPUs available.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    crypto_workers: Option<u16>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers (the default).
    Run,
    /// Write the CRD manifests (one file per kind, and a `Kustomization`) into a directory, or print them.
    Crds {
        /// Directory to write `<plural>.<group>.yaml` files into; prints to stdout when absent.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Crds { out_dir }) = &cli.command {
        return crds(out_dir.as_deref());
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    if cli.log_json {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let kube_config = kube::Config::infer().await.context("reading the Kubernetes client configuration")?;
    let metrics = qubesec_operator::Metrics::new();
    let client = kube::client::ClientBuilder::try_from(kube_config)
        .context("building the Kubernetes client")?
        .with_layer(&metrics.request_layer())
        .build();
    let config = Config {
        allow_cross_namespace_refs: cli.allow_cross_namespace_refs,
        namespace: cli.namespace,
        max_concurrent_reconciles: cli.max_concurrent_reconciles,
        crypto_workers: cli.crypto_workers.map_or_else(qubesec_operator::crypto::default_workers, usize::from),
    };
    tracing::info!(
        crypto_workers = config.crypto_workers,
        max_concurrent_reconciles = config.max_concurrent_reconciles,
        "qubesec-operator configuration"
    );
    let ctx = Context::with_metrics(client, config, metrics);
    let listener = tokio::net::TcpListener::bind(cli.metrics_addr).await.context("binding the metrics address")?;
    tracing::info!(addr = %cli.metrics_addr, "qubesec-operator starting");
    let elector = cli.leader_elect.then(|| {
        let config = LeaseConfig {
            namespace: cli
                .lease_namespace
                .clone()
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .unwrap_or_else(|| "qubesec-system".to_owned()),
            name: cli.lease_name.clone(),
            identity: std::env::var("POD_NAME").unwrap_or_else(|_| format!("qubesec-operator-{}", std::process::id())),
            duration: Duration::from_secs(15),
            retry_every: Duration::from_secs(4),
        };
        let metrics_ctx = ctx.clone();
        LeaderElector::new(ctx.client.clone(), config).observe(move |leading| metrics_ctx.metrics.set_leader(leading))
    });
    let controllers = {
        let ctx = ctx.clone();
        let elector = elector.clone();
        async move {
            match elector {
                Some(elector) => {
                    let ctx = ctx.clone();
                    elector.run(move || qubesec_operator::controllers::run(ctx.clone())).await;
                }
                None => {
                    ctx.metrics.set_leader(true);
                    qubesec_operator::controllers::run(ctx).await;
                }
            }
        }
    };
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(qubesec_operator::http::serve(listener, ctx.clone(), async {
        let _ = http_stopped.await;
    }));
    tokio::select! {
        () = controllers => tracing::warn!("the controllers stopped"),
        r = shutdown_signal() => {
            r?;
            tracing::info!("shutting down: stopping the controllers");
        }
    }
    // The controllers are dropped here; give the Lease back so another replica takes over at once
    // (bounded: a hanging API server must not eat the pod's termination grace period).
    if let Some(elector) = &elector {
        match tokio::time::timeout(Duration::from_secs(5), elector.release()).await {
            Ok(Ok(())) => tracing::info!("released the lease"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not release the lease; another replica takes over when it expires");
            }
            Err(_) => tracing::warn!("releasing the lease timed out; another replica takes over when it expires"),
        }
    }
    let _ = stop_http.send(());
    match http.await {
        Ok(r) => r.context("serving /metrics")?,
        Err(e) => tracing::warn!(error = %e, "the metrics server task failed"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM (what the kubelet sends) or Ctrl-C.
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn crds(out_dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let manifests = qubesec_operator::crd::manifests()?;
    match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (file, yaml) in manifests {
                let path = dir.join(file);
                std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
            }
            let path = dir.join("Kustomization");
            std::fs::write(&path, qubesec_operator::crd::kustomization())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            for (_, yaml) in manifests {
                println!("---\n{yaml}");
            }
        }
    }
    Ok(())
}
