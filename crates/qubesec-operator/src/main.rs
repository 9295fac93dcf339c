//! The `qubesec-operator` binary: runs the controllers, or prints the CRDs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::time::Duration;

use qubesec_operator::leader::{LeaderElector, LeaseConfig};
use qubesec_operator::{Config, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers (the default).
    Run,
    /// Write the CRD manifests (one file per kind) into a directory, or print them.
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
    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
    let config = Config { allow_cross_namespace_refs: cli.allow_cross_namespace_refs, namespace: cli.namespace };
    let ctx = Context::new(client, config);
    let listener = tokio::net::TcpListener::bind(cli.metrics_addr).await.context("binding the metrics address")?;
    tracing::info!(addr = %cli.metrics_addr, "qubesec-operator starting");
    let controllers = {
        let ctx = ctx.clone();
        let leader = cli.leader_elect.then(|| {
            let config = LeaseConfig {
                namespace: cli
                    .lease_namespace
                    .clone()
                    .or_else(|| std::env::var("POD_NAMESPACE").ok())
                    .unwrap_or_else(|| "qubesec-system".to_owned()),
                name: cli.lease_name.clone(),
                identity: std::env::var("POD_NAME")
                    .unwrap_or_else(|_| format!("qubesec-operator-{}", std::process::id())),
                duration: Duration::from_secs(15),
                retry_every: Duration::from_secs(4),
            };
            LeaderElector::new(ctx.client.clone(), config)
        });
        async move {
            match leader {
                Some(elector) => {
                    let ctx = ctx.clone();
                    elector.run(move || qubesec_operator::controllers::run(ctx.clone())).await;
                }
                None => qubesec_operator::controllers::run(ctx).await,
            }
        }
    };
    tokio::select! {
        () = controllers => {}
        r = serve(listener, ctx) => r?,
        r = tokio::signal::ctrl_c() => { r?; tracing::info!("shutting down"); }
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
        }
        None => {
            for (_, yaml) in manifests {
                println!("---\n{yaml}");
            }
        }
    }
    Ok(())
}

/// A tiny HTTP/1.1 endpoint: `/metrics`, `/healthz` (process up), `/readyz` (an API server round trip).
async fn serve(listener: tokio::net::TcpListener, ctx: Arc<Context>) -> anyhow::Result<()> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (code, body) = match path {
                "/metrics" => ("200 OK", ctx.metrics.render()),
                "/healthz" => ("200 OK", "ok\n".to_owned()),
                "/readyz" => match ctx.client.apiserver_version().await {
                    Ok(_) => ("200 OK", "ok\n".to_owned()),
                    Err(e) => ("503 Service Unavailable", format!("{e}\n")),
                },
                _ => ("404 Not Found", "not found\n".to_owned()),
            };
            let resp = format!(
                "HTTP/1.1 {code}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(resp.as_bytes()).await;
        });
    }
}
