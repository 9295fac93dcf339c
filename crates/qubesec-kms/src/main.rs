//! The `qubesec-kms` binary: serve the KMS v2 plugin and manage its keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use qubesec_kms::backend::Backend;
use qubesec_kms::backend::pkcs11::{Pkcs11Backend, Pkcs11Config};
use qubesec_kms::backend::software::SoftwareBackend;
use qubesec_kms::keystore::{Argon2Params, KeySet, Keystore, MasterKeySource};
use qubesec_kms::logging::{self, LogFormat};
use qubesec_kms::server::{self, ServeConfig};

#[derive(Parser)]
#[command(
    name = "qubesec-kms",
    version,
    about = "Kubernetes KMS v2 provider: PKCS#11 HSMs or a sealed software keystore"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    log_format: Format,
    /// Log filter (`info`, `debug`, `qubesec_kms=debug`); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Software keystore management.
    Keystore {
        #[command(subcommand)]
        command: KeystoreCommand,
    },
    /// Serve the KMS v2 gRPC API on a unix socket.
    Serve(ServeArgs),
    /// Add a new active KEK version (old versions stay for Decrypt).
    Rotate {
        #[command(flatten)]
        keys: KeySource,
    },
    /// Remove a KEK version for good (refuses the active one).
    Retire {
        #[command(flatten)]
        keys: KeySource,
        /// The version to remove.
        #[arg(long)]
        version: u32,
    },
    /// Seal the keystore's KEKs to another node's ML-KEM-1024 or X-Wing public key.
    Export {
        #[command(flatten)]
        keystore: KeystoreArgs,
        /// The other node's public key (PEM SubjectPublicKeyInfo).
        #[arg(long)]
        recipient: PathBuf,
        /// Where to write the bundle.
        #[arg(long)]
        out: PathBuf,
    },
    /// Install a bundle: create the keystore, or merge into it.
    Import {
        #[command(flatten)]
        keystore: KeystoreArgs,
        /// This node's private key (PEM PKCS#8) the bundle was sealed to.
        #[arg(long)]
        identity: PathBuf,
        /// The bundle.
        #[arg(long = "in")]
        bundle: PathBuf,
    },
    /// Call Status on a running plugin and print it.
    Status {
        /// The plugin's socket.
        #[arg(long)]
        socket: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeystoreCommand {
    /// Create a keystore with one KEK (and the master key file if missing).
    Init(KeystoreArgs),
    /// List the KEK versions and their key ids.
    List(KeystoreArgs),
}

#[derive(Args)]
struct KeystoreArgs {
    /// The keystore directory.
    #[arg(long)]
    keystore: PathBuf,
    #[command(flatten)]
    master: MasterArgs,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct MasterArgs {
    /// A file of exactly 32 random bytes (`keystore init` creates it, mode 0600, if missing).
    #[arg(long)]
    master_key_file: Option<PathBuf>,
    /// A file holding a passphrase (Argon2id derives the master key).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

impl MasterArgs {
    fn source(&self) -> anyhow::Result<MasterKeySource> {
        match (&self.master_key_file, &self.passphrase_file) {
            (Some(f), None) => Ok(MasterKeySource::KeyFile(f.clone())),
            (None, Some(f)) => Ok(MasterKeySource::PassphraseFile(f.clone())),
            _ => bail!("give exactly one of --master-key-file and --passphrase-file"),
        }
    }
}

/// Either a software keystore or a PKCS#11 token.
#[derive(Args)]
struct KeySource {
    /// The keystore directory (software backend).
    #[arg(long, conflicts_with = "pkcs11_module")]
    keystore: Option<PathBuf>,
    /// A file of exactly 32 random bytes.
    #[arg(long, conflicts_with = "passphrase_file")]
    master_key_file: Option<PathBuf>,
    /// A file holding a passphrase.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
    /// The PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so).
    #[arg(long, requires_all = ["token_label", "pin_file", "key_label"])]
    pkcs11_module: Option<PathBuf>,
    /// The token label.
    #[arg(long)]
    token_label: Option<String>,
    /// A file holding the user PIN.
    #[arg(long)]
    pin_file: Option<PathBuf>,
    /// The KEK label prefix; versions are `<label>/v<N>`.
    #[arg(long)]
    key_label: Option<String>,
}

enum Source {
    Software(Keystore, MasterKeySource),
    Pkcs11(Pkcs11Config),
}

impl KeySource {
    fn resolve(&self) -> anyhow::Result<Source> {
        if let Some(module) = &self.pkcs11_module {
            let (Some(token_label), Some(pin_file), Some(key_label)) =
                (&self.token_label, &self.pin_file, &self.key_label)
            else {
                bail!("--pkcs11-module needs --token-label, --pin-file and --key-label");
            };
            return Ok(Source::Pkcs11(Pkcs11Config {
                module: module.clone(),
                token_label: token_label.clone(),
                pin_file: pin_file.clone(),
                key_label: key_label.clone(),
                pool_size: 4,
            }));
        }
        let Some(dir) = &self.keystore else { bail!("give --keystore DIR (software) or --pkcs11-module (PKCS#11)") };
        let master =
            MasterArgs { master_key_file: self.master_key_file.clone(), passphrase_file: self.passphrase_file.clone() };
        Ok(Source::Software(Keystore::at(dir), master.source()?))
    }
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    keys: KeySource,
    /// The unix socket to serve on.
    #[arg(long)]
    socket: PathBuf,
    /// Address for /metrics, /healthz and /readyz (e.g. 127.0.0.1:9464).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Seconds between keystore change checks / backend reconnects.
    #[arg(long, default_value_t = 2)]
    refresh_seconds: u64,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        Format::Text => LogFormat::Text,
        Format::Json => LogFormat::Json,
    };
    if let Err(e) = logging::init(format, &cli.log_level) {
        eprintln!("qubesec-kms: logging: {e}");
        return std::process::ExitCode::from(2);
    }
    match run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "failed");
            eprintln!("qubesec-kms: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Keystore { command: KeystoreCommand::Init(args) } => {
            let source = args.master.source()?;
            let ks = Keystore::at(&args.keystore);
            let opened = ks.init(&source, Argon2Params::default())?;
            println!("created {} with {}", ks.path().display(), opened.keys.active()?.key_id());
            Ok(())
        }
        Command::Keystore { command: KeystoreCommand::List(args) } => {
            let opened = Keystore::at(&args.keystore).open(&args.master.source()?)?;
            let active = opened.keys.active_version();
            for kek in opened.keys.versions() {
                let mark = if kek.version() == active { " (active)" } else { "" };
                println!("{}\t{}\tcreated {}{mark}", kek.version(), kek.key_id(), kek.created_unix());
            }
            Ok(())
        }
        Command::Serve(args) => serve(args),
        Command::Rotate { keys } => match keys.resolve()? {
            Source::Software(ks, source) => {
                let (version, opened) = ks.update(&source, KeySet::rotate)?;
                let id = opened.keys.get(version).map(|k| k.key_id().to_string()).unwrap_or_default();
                println!("rotated: version {version} is active, key id {id}");
                Ok(())
            }
            Source::Pkcs11(config) => {
                let backend = Pkcs11Backend::connect(config)?;
                let id = backend.rotate()?;
                println!("rotated: version {} is active, key id {id}", id.version());
                Ok(())
            }
        },
        Command::Retire { keys, version } => match keys.resolve()? {
            Source::Software(ks, source) => {
                ks.update(&source, |k| k.retire(version))?;
                println!("retired version {version}");
                Ok(())
            }
            Source::Pkcs11(config) => {
                Pkcs11Backend::connect(config)?.retire(version)?;
                println!("retired version {version}");
                Ok(())
            }
        },
        Command::Export { keystore, recipient, out } => {
            let opened = Keystore::at(&keystore.keystore).open(&keystore.master.source()?)?;
            let pem = std::fs::read(&recipient).with_context(|| format!("reading {}", recipient.display()))?;
            let bundle = qubesec_kms::bundle::export(&opened.keys, &pem)?;
            write_private(&out, &bundle)?;
            println!("exported {} key versions to {}", opened.keys.versions().count(), out.display());
            Ok(())
        }
        Command::Import { keystore, identity, bundle } => {
            let pem = zeroize::Zeroizing::new(
                std::fs::read(&identity).with_context(|| format!("reading {}", identity.display()))?,
            );
            let bytes = std::fs::read(&bundle).with_context(|| format!("reading {}", bundle.display()))?;
            let keys = qubesec_kms::bundle::import(&bytes, &pem)?;
            let ks = Keystore::at(&keystore.keystore);
            let added = ks.import(&keystore.master.source()?, Argon2Params::default(), keys)?;
            println!("imported: {added} new key versions into {}", ks.path().display());
            Ok(())
        }
        Command::Status { socket } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let mut client = qubesec_kms::client::connect(&socket).await?;
                let resp = client
                    .status(qubesec_kms::pb::StatusRequest {})
                    .await
                    .map_err(|s| anyhow::anyhow!("Status: {:?}: {}", s.code(), s.message()))?
                    .into_inner();
                println!("version: {}\nhealthz: {}\nkey_id: {}", resp.version, resp.healthz, resp.key_id);
                if resp.healthz != "ok" {
                    bail!("plugin is unhealthy");
                }
                Ok(())
            })
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServeConfig::new(&args.socket);
    config.metrics_addr = args.metrics_addr;
    config.refresh_interval = Duration::from_secs(args.refresh_seconds.max(1));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.keys.resolve()? {
        Source::Software(ks, source) => {
            let backend = Arc::new(SoftwareBackend::open(ks, &source)?);
            run_server(&rt, config, backend)
        }
        Source::Pkcs11(p) => {
            let backend = Arc::new(Pkcs11Backend::connect(p)?);
            run_server(&rt, config, backend)
        }
    }
}

fn run_server<B: Backend>(rt: &tokio::runtime::Runtime, config: ServeConfig, backend: Arc<B>) -> anyhow::Result<()> {
    rt.block_on(server::run(config, backend, server::shutdown_signal()))?;
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).with_context(|| format!("writing {}", path.display()))
}
