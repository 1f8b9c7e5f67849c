//! What every service binary (command-api, projector, query-api) shares: settings from a
//! file plus `APP_` environment variables, structured JSON logs, the shutdown signal, and the
//! memory allocator.

pub mod breaker;
pub mod metrics;
pub mod telemetry;

pub use telemetry::{Telemetry, TelemetrySettings};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use tracing_subscriber::{fmt, EnvFilter};

/// mimalloc for every service binary: a flash-sale profile showed ~37 % of command-api's CPU
/// in glibc malloc/free; mimalloc took it to ~11 % and throughput up 8–23 % (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `[log]` of every service's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `json` (default) or `pretty`.
    pub format: String,
    /// A tracing filter, e.g. `info,command_api=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: "json".into(),
            level: "info".into(),
        }
    }
}

/// Loads settings: `defaults`, then the file named by `APP_CONFIG` (else `default_file`; a
/// missing file is fine), then `APP_`-prefixed variables with `__` between levels
/// (`APP_DATABASE__URL` → `database.url`). The settings types refuse keys they do not have
/// (`deny_unknown_fields`): a misspelt key, in the file or the environment, is a start-up
/// error naming it, not a setting silently left at its default.
pub fn load_settings<T: DeserializeOwned>(
    default_file: &str,
    defaults: &[(&str, &str)],
) -> Result<T, config::ConfigError> {
    let file = std::env::var("APP_CONFIG").unwrap_or_else(|_| default_file.to_owned());
    let mut builder = config::Config::builder();
    for (key, value) in defaults {
        builder = builder.set_default(*key, *value)?;
    }
    // `APP_CONFIG` names the file; it is not a setting.
    let variables = std::env::vars()
        .filter(|(name, _)| name.starts_with("APP_") && name != "APP_CONFIG")
        .collect();
    builder
        .add_source(config::File::with_name(&file).required(false))
        .add_source(
            config::Environment::with_prefix("APP")
                .prefix_separator("_")
                .separator("__")
                .source(Some(variables)),
        )
        .build()?
        .try_deserialize()
        .map_err(|e| {
            config::ConfigError::Message(format!(
                "settings: {e} (from {file}.toml or an APP_ variable: [section] key is \
                 APP_SECTION__KEY)"
            ))
        })
}

/// Structured logs: JSON lines (or pretty, for a terminal).
pub fn init_logging(settings: &LogSettings) {
    let _ = init_observability(settings, &TelemetrySettings::default(), "promo");
}

/// Structured logs, and OTLP traces when `telemetry.otlp_endpoint` is set (ADR 12): every
/// `tracing` span is then exported too. Keep the guard until the end of `main`: dropping it
/// flushes the last spans. A bad endpoint is a start-up error.
pub fn init_observability(
    log: &LogSettings,
    telemetry: &TelemetrySettings,
    process: &'static str,
) -> Result<Telemetry, String> {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let provider = telemetry::provider(telemetry, process)?;
    let lines = if log.format == "pretty" {
        fmt::layer().with_target(true).pretty().boxed()
    } else {
        fmt::layer()
            .with_target(true)
            .json()
            .flatten_event(true)
            .boxed()
    };
    match &provider {
        // Without traces, one global filter: every callsite it disables is disabled for good
        // (an absent layer would make each one be asked again at every hit).
        None => {
            let _ = tracing_subscriber::registry()
                .with(lines)
                .with(filter)
                .try_init();
        }
        // Each layer its own filter: a quieter log level (`RUST_LOG=warn`) keeps the traces.
        Some(provider) => {
            let traces = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(process))
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
            let _ = tracing_subscriber::registry()
                .with(lines.with_filter(filter))
                .with(traces)
                .try_init();
        }
    }
    Ok(telemetry::guard(provider))
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutdown signal received; finishing the work in flight");
}
