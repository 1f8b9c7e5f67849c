//! The command API's settings: `config/command-api.toml` (or the file named by `APP_CONFIG`),
//! overridden by `APP_`-prefixed environment variables with `__` between levels, e.g.
//! `APP_DATABASE__URL`, `APP_SERVER__PORT`.

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    #[serde(default)]
    pub writer: WriterSettings,
    #[serde(default)]
    pub idempotency: IdempotencySettings,
    /// Bearer tokens (ADR 11).
    #[serde(default)]
    pub auth: auth::AuthSettings,
    /// Rate limits, counted in Redis.
    #[serde(default)]
    pub rate_limit: auth::limit::LimitSettings,
    /// The Redis the rate limits are counted in; without it nothing is limited.
    #[serde(default)]
    pub redis: Option<RedisSettings>,
    /// Where the relay publishes events. Without it no relay runs in this process.
    #[serde(default)]
    pub kafka: Option<KafkaSettings>,
    #[serde(default)]
    pub log: LogSettings,
    /// OTLP traces (off unless `otlp_endpoint` is set).
    #[serde(default)]
    pub telemetry: service::TelemetrySettings,
}

pub use problem::edge::ServerSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: String,
}

/// How long a stored answer to an `Idempotency-Key` is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencySettings {
    /// Hours after which a key's stored answer is deleted; a retry after that counts as a new
    /// request.
    pub retention_hours: u64,
    /// Seconds between two cleanups.
    pub cleanup_every_seconds: u64,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self {
            retention_hours: 24,
            cleanup_every_seconds: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/db` — a secret: never logged.
    pub url: SecretString,
    /// Pool size. Writes go through one committer task, so few connections serve them; the
    /// rest serve aggregate loads and idempotency look-ups.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_max_connections() -> u32 {
    16
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap servers, e.g. `127.0.0.1:59092`.
    pub brokers: String,
    /// Prefix of the topic names (`promo.` → `promo.coupon`, …).
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// The largest produce request the relay sends, in bytes. The default is what every Kafka
    /// broker accepts out of the box (`message.max.bytes`), and all the relay needs (ADR 13).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: u32,
}

fn default_max_request_bytes() -> u32 {
    relay::DEFAULT_MAX_REQUEST_BYTES
}

fn default_topic_prefix() -> String {
    "promo.".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriterSettings {
    /// Commands that may wait for one aggregate before new ones are refused with 503.
    pub queue_capacity: usize,
    /// Most commands one aggregate decides per batch.
    pub max_batch: usize,
    /// Most aggregate batches one transaction carries (group commit across aggregates).
    pub max_commit_batch: usize,
    /// Seconds an aggregate stays in memory without commands.
    pub idle_seconds: u64,
    /// How often a batch is decided again after losing a race to another writer.
    pub max_attempts: u32,
    /// Writers (aggregates in memory) of one aggregate type at most; past it, a command for
    /// an aggregate not in memory answers 503 until idle writers leave.
    pub max_writers: usize,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            max_batch: 512,
            max_commit_batch: 256,
            idle_seconds: 60,
            max_attempts: 8,
            max_writers: 100_000,
        }
    }
}

pub use service::LogSettings;

impl Settings {
    /// Loads `config/command-api.toml` (or `APP_CONFIG`) and the `APP_` environment.
    pub fn load() -> Result<Self, config::ConfigError> {
        let settings: Self = service::load_settings(
            "config/command-api",
            &[("server.host", "127.0.0.1"), ("server.port", "8080")],
        )?;
        settings.checked()
    }

    /// Refuses values the service cannot run with (a queue of 0 would panic, a retention of
    /// centuries overflow the database's interval), naming the setting.
    pub fn checked(self) -> Result<Self, config::ConfigError> {
        let w = &self.writer;
        for (name, value) in [
            ("writer.queue_capacity", w.queue_capacity),
            ("writer.max_batch", w.max_batch),
            ("writer.max_commit_batch", w.max_commit_batch),
            ("writer.max_writers", w.max_writers),
        ] {
            if value == 0 {
                return Err(config::ConfigError::Message(format!(
                    "{name} must be at least 1"
                )));
            }
        }
        if w.max_attempts == 0 {
            return Err(config::ConfigError::Message(
                "writer.max_attempts must be at least 1".into(),
            ));
        }
        if !(1..=87_600).contains(&self.idempotency.retention_hours) {
            return Err(config::ConfigError::Message(
                "idempotency.retention_hours must be between 1 and 87600 (10 years)".into(),
            ));
        }
        Ok(self)
    }
}
