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
use qubesec_kms::keystore::{Argon2Params, Kdf, KeySet, Keystore, MasterKeySource};
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
    /// Add a KEK version. `--stage` adds it inactive (several control-plane
    /// nodes: replicate it, then `activate` it on every node); without
    /// `--stage` it becomes active at once, which is only safe on a single node.
    Rotate {
        #[command(flatten)]
        keys: KeySource,
        /// Add the new version inactive; `activate` it once every node has it.
        #[arg(long)]
        stage: bool,
    },
    /// Make a KEK version the one Encrypt uses (after `rotate --stage` and replication).
    Activate {
        #[command(flatten)]
        keys: KeySource,
        /// The version to activate.
        #[arg(long)]
        version: u32,
        /// Allow going back to a version older than the active one.
        #[arg(long)]
        allow_older: bool,
    },
    /// Remove a KEK version for good (refuses the active one).
    Retire {
        #[command(flatten)]
        keys: KeySource,
        /// The version to remove.
        #[arg(long)]
        version: u32,
    },
    /// Seal the keystore's KEKs to another node's ML-KEM-1024 or X-Wing
    /// public key, signed with this node's identity.
    Export {
        #[command(flatten)]
        keystore: KeystoreArgs,
        /// The other node's public key (PEM SubjectPublicKeyInfo).
        #[arg(long)]
        recipient: PathBuf,
        /// The fingerprint of that key (`sha256:...`), as compared with the
        /// receiving node's operator out of band; a different key is refused.
        #[arg(long)]
        recipient_fingerprint: String,
        /// Where to write the bundle.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify and install a bundle: add its versions (inactive), or create
    /// the keystore from it. Never changes the active version.
    Import {
        #[command(flatten)]
        keystore: KeystoreArgs,
        /// This node's KEM private key (PEM PKCS#8) the bundle was sealed to.
        #[arg(long, alias = "identity")]
        recipient_key: PathBuf,
        /// A node allowed to sign bundles: its identity public key (PEM file)
        /// or fingerprint (`sha256:...`). Repeat for several nodes.
        #[arg(long, required = true)]
        trusted_signer: Vec<String>,
        /// The bundle.
        #[arg(long = "in")]
        bundle: PathBuf,
        #[command(flatten)]
        argon2: Argon2Args,
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
    /// Create a keystore with one KEK and a node identity (and the master key file if missing).
    Init {
        #[command(flatten)]
        keystore: KeystoreArgs,
        #[command(flatten)]
        argon2: Argon2Args,
    },
    /// Create the node identity of a keystore made before identities existed.
    Identity(KeystoreArgs),
    /// Show the keystore: versions (active, staged), identity fingerprint and public key, imports.
    Status {
        #[command(flatten)]
        keystore: KeystoreArgs,
        /// Also write the identity public key (PEM) to this file.
        #[arg(long)]
        identity_out: Option<PathBuf>,
    },
    /// List the KEK versions and their key ids.
    List(KeystoreArgs),
}

/// Argon2id costs for a new passphrase keystore (ignored for key files).
#[derive(Args)]
struct Argon2Args {
    /// Argon2id memory, MiB.
    #[arg(long, default_value_t = 64)]
    argon2_memory_mib: u32,
    /// Argon2id passes.
    #[arg(long, default_value_t = 3)]
    argon2_passes: u32,
    /// Argon2id lanes.
    #[arg(long, default_value_t = 1)]
    argon2_lanes: u32,
}

impl Argon2Args {
    fn params(&self) -> anyhow::Result<Argon2Params> {
        Argon2Params::for_init(self.argon2_memory_mib, self.argon2_passes, self.argon2_lanes)
            .map_err(anyhow::Error::msg)
    }
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
    /// Where PKCS#11 login state is kept (the digest of a PIN the token
    /// refused, so no process tries it again); must survive restarts.
    #[arg(long, default_value = "/var/lib/qubesec-kms")]
    state_dir: PathBuf,
    /// Let the token generate each AES-GCM IV (for HSMs in FIPS mode that
    /// refuse caller-supplied IVs).
    #[arg(long)]
    token_generated_iv: bool,
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
                state_dir: self.state_dir.clone(),
                token_generated_iv: self.token_generated_iv,
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
        Command::Keystore { command } => keystore_command(command),
        Command::Serve(args) => serve(args),
        Command::Rotate { keys, stage } => match keys.resolve()? {
            Source::Software(ks, source) => {
                let change = if stage { KeySet::stage } else { KeySet::rotate };
                let (version, opened) = ks.update(&source, change)?;
                let id = opened.keys.get(version).map(|k| k.key_id().to_string()).unwrap_or_default();
                report_rotation(stage, version, &id);
                Ok(())
            }
            Source::Pkcs11(config) => {
                let backend = Pkcs11Backend::connect(config)?;
                let id = backend.add_version(!stage)?;
                report_rotation(stage, id.version(), id.as_str());
                Ok(())
            }
        },
        Command::Activate { keys, version, allow_older } => {
            let previous = match keys.resolve()? {
                Source::Software(ks, source) => ks.update(&source, |k| k.activate(version, allow_older))?.0,
                Source::Pkcs11(config) => Pkcs11Backend::connect(config)?.activate(version, allow_older)?,
            };
            if previous == version {
                println!("version {version} was already active");
            } else {
                println!("activated version {version} (was {previous}); the plugin picks it up within seconds");
            }
            Ok(())
        }
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
        Command::Export { keystore, recipient, recipient_fingerprint, out } => {
            let ks = Keystore::at(&keystore.keystore);
            let opened = ks.open(&keystore.master.source()?)?;
            let signer = ks.identity(&opened.master)?;
            let pem = std::fs::read(&recipient).with_context(|| format!("reading {}", recipient.display()))?;
            let recipient = qubesec_kms::bundle::Recipient::from_pem(&pem, &recipient_fingerprint)?;
            let created_ms = now_ms();
            let bundle = qubesec_kms::bundle::export(
                opened.keys.versions(),
                opened.keys.active_version(),
                &recipient,
                &signer,
                created_ms,
            )?;
            write_private(&out, &bundle)?;
            println!(
                "exported {} key versions to {} for {}, signed by {}",
                opened.keys.versions().count(),
                out.display(),
                recipient.fingerprint(),
                signer.fingerprint()
            );
            Ok(())
        }
        Command::Import { keystore, recipient_key, trusted_signer, bundle, argon2 } => {
            let mut trusted = qubesec_kms::bundle::TrustedSigners::new();
            for spec in &trusted_signer {
                if spec.starts_with("sha256:") {
                    trusted.add(spec.as_bytes())?;
                } else {
                    let pem = std::fs::read(spec).with_context(|| format!("reading --trusted-signer {spec}"))?;
                    trusted.add(&pem).with_context(|| format!("--trusted-signer {spec}"))?;
                }
            }
            let pem = qubesec_kms::keystore::master::read_secret_file(&recipient_key)?;
            let kem = qubesec_kms::bundle::recipient_key_from_pem(&pem)?;
            let bytes = std::fs::read(&bundle).with_context(|| format!("reading {}", bundle.display()))?;
            let verified = qubesec_kms::bundle::verify(&bytes, &trusted, &kem)?;
            let ks = Keystore::at(&keystore.keystore);
            let imported = ks.import_with(
                &keystore.master.source()?,
                argon2.params()?,
                verified.signer,
                verified.created_ms,
                verified.exporter_active,
                || verified.open(&kem),
            )?;
            let ids: Vec<String> = imported.merged.added.iter().map(ToString::to_string).collect();
            let active = imported.opened.keys.active_version();
            if imported.created {
                println!("created {} from the bundle; active version {active}", ks.path().display());
            }
            println!("imported: {} new key versions into {}", ids.len(), ks.path().display());
            for id in &ids {
                let staged = if imported.opened.keys.is_staged(id_version(id)) { " (staged)" } else { "" };
                println!("  added {id}{staged}");
            }
            if !imported.created {
                println!("active version unchanged: {active}");
            }
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

fn id_version(id: &str) -> u32 {
    qubesec_kms::KeyId::parse(id).map(|k| k.version()).unwrap_or(0)
}

fn report_rotation(stage: bool, version: u32, id: &str) {
    if stage {
        println!(
            "staged: version {version} added inactive, key id {id}; replicate it to every node, then \
             `qubesec-kms activate --version {version}` on each"
        );
    } else {
        println!(
            "rotated: version {version} is active, key id {id} (single-node rotation; with several \
             control-plane nodes use `rotate --stage`, replicate, then `activate`)"
        );
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

fn keystore_command(command: KeystoreCommand) -> anyhow::Result<()> {
    match command {
        KeystoreCommand::Init { keystore, argon2 } => {
            let source = keystore.master.source()?;
            let ks = Keystore::at(&keystore.keystore);
            let opened = ks.init(&source, argon2.params()?)?;
            let id = ks.identity(&opened.master)?;
            println!("created {} with {}", ks.path().display(), opened.keys.active()?.key_id());
            println!("node identity {}", id.fingerprint());
            Ok(())
        }
        KeystoreCommand::Identity(args) => {
            let ks = Keystore::at(&args.keystore);
            let (id, created) = ks.ensure_identity(&args.master.source()?)?;
            let verb = if created { "created" } else { "existing" };
            println!("{verb} node identity {} in {}", id.fingerprint(), ks.identity_path().display());
            Ok(())
        }
        KeystoreCommand::Status { keystore, identity_out } => {
            let ks = Keystore::at(&keystore.keystore);
            let opened = ks.open(&keystore.master.source()?)?;
            println!("keystore: {}", ks.path().display());
            println!("format: {}  generation: {}", opened.header.format, opened.header.generation);
            match opened.header.kdf {
                Kdf::KeyFile => println!("master key: key file"),
                Kdf::Argon2id { params, .. } => println!(
                    "master key: passphrase, Argon2id {} MiB, {} passes, {} lanes",
                    params.m_cost / 1024,
                    params.t_cost,
                    params.p_cost
                ),
            }
            print_versions(&opened.keys);
            match ks.identity(&opened.master) {
                Ok(id) => {
                    println!("identity: {} (ML-DSA-65)", id.fingerprint());
                    let pem = id.public_pem()?;
                    print!("{pem}");
                    if let Some(out) = identity_out {
                        std::fs::write(&out, &pem).with_context(|| format!("writing {}", out.display()))?;
                    }
                }
                Err(e) => println!("identity: none ({e})"),
            }
            for rec in opened.keys.imports() {
                println!("imported from sha256:{}: newest bundle created {} ms", hex_of(&rec.signer), rec.created_ms);
            }
            Ok(())
        }
        KeystoreCommand::List(args) => {
            let opened = Keystore::at(&args.keystore).open(&args.master.source()?)?;
            print_versions(&opened.keys);
            Ok(())
        }
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn print_versions(keys: &KeySet) {
    let active = keys.active_version();
    for kek in keys.versions() {
        let mark = if kek.version() == active {
            " (active)"
        } else if keys.is_staged(kek.version()) {
            " (staged)"
        } else {
            ""
        };
        println!("{}\t{}\tcreated {}{mark}", kek.version(), kek.key_id(), kek.created_unix());
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServeConfig::new(&args.socket);
    config.metrics_addr = args.metrics_addr;
    config.refresh_interval = Duration::from_secs(args.refresh_seconds.max(1));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // Never exits because the backend is unavailable: it opens (or
    // connects) in the refresh loop and Status says why until it does.
    match args.keys.resolve()? {
        Source::Software(ks, source) => run_server(&rt, config, Arc::new(SoftwareBackend::new(ks, source))),
        Source::Pkcs11(p) => run_server(&rt, config, Arc::new(Pkcs11Backend::new(p))),
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
