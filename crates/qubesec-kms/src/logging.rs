//! `tracing` setup: human-readable or JSON lines on stderr.
//!
//! Nothing in this crate logs secret bytes: requests are logged by uid and
//! key id only, errors carry no plaintext or key material.
//!
//! One extra layer watches h2's own debug events for a request whose
//! `:authority` is not a valid authority (a unix socket path): kube-apiserver
//! before 1.32 sends that, h2 resets the stream before our service sees it,
//! and without this layer the plugin would stay silent about why.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The warning printed (at most once a minute) for pre-1.32 clients.
pub const LEGACY_AUTHORITY_WARNING: &str = "a client sent an invalid HTTP/2 :authority (a unix socket path?) and h2 \
     reset the request: kube-apiserver before 1.32 does this; qubesec-kms needs Kubernetes 1.32 or later";

/// Installs the global subscriber. `filter` is an `EnvFilter` directive
/// (`info`, `qubesec_kms=debug`, ...); `RUST_LOG` overrides it when set.
///
/// # Errors
/// A bad filter directive or a subscriber already installed.
pub fn init(format: LogFormat, filter: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(env)?,
        _ => EnvFilter::try_new(filter)?,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt: Box<dyn Layer<_> + Send + Sync> = match format {
        LogFormat::Text => Box::new(fmt.with_filter(filter)),
        LogFormat::Json => Box::new(fmt.json().with_filter(filter)),
    };
    let watch = LegacyAuthorityWatch { format, last: Mutex::new(None) }
        .with_filter(Targets::new().with_target("h2::server", tracing::Level::DEBUG));
    tracing_subscriber::registry().with(fmt).with(watch).try_init()?;
    Ok(())
}

struct LegacyAuthorityWatch {
    format: LogFormat,
    last: Mutex<Option<Instant>>,
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for LegacyAuthorityWatch {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        if !m.0.contains("malformed authority") {
            return;
        }
        let Ok(mut last) = self.last.lock() else { return };
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
            return;
        }
        *last = Some(Instant::now());
        // Written directly, not through `tracing`: emitting an event from
        // inside a layer's callback would re-enter the subscriber.
        match self.format {
            LogFormat::Text => eprintln!("WARN qubesec_kms: {LEGACY_AUTHORITY_WARNING}"),
            LogFormat::Json => eprintln!(
                "{{\"level\":\"WARN\",\"target\":\"qubesec_kms::logging\",\"fields\":{{\"message\":\"{LEGACY_AUTHORITY_WARNING}\"}}}}"
            ),
        }
    }
}
