//! The projector's settings: `config/projector.toml` (or `APP_CONFIG`), overridden by `APP_`
//! environment variables (`APP_DATABASE__URL`, `APP_REDIS__URL`, `APP_SCHEMA`, …).

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: Database,
    pub redis: Redis,
    /// The base PostgreSQL schema of the read models (`rm`): it names the deployment, whose
    /// current generation (schema and Redis prefix; replay-tools builds new ones) the
    /// projector writes to (ADR 7).
    #[serde(default = "default_schema")]
    pub schema: String,
    #[serde(default)]
    pub log: service::LogSettings,
    /// OTLP traces (off unless `otlp_endpoint` is set).
    #[serde(default)]
    pub telemetry: service::TelemetrySettings,
    /// Where `/health` and `/ready` answer.
    pub server: ServerSettings,
}

pub use problem::edge::ServerSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The event log's database, which holds the read models too: the projector reads the
    /// log and writes the read models in one place.
    pub url: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    pub url: String,
    /// Prefix of every key this projector writes.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Longest wait, in milliseconds, for Redis to take a batch's writes; past it the
    /// projector goes on without Redis (reads fall back to PostgreSQL) and rewrites Redis from
    /// the read models once it answers again.
    #[serde(default = "default_redis_timeout")]
    pub timeout_ms: u64,
}

fn default_schema() -> String {
    "rm".into()
}
fn default_redis_timeout() -> u64 {
    250
}
fn default_prefix() -> String {
    "promo:".into()
}

impl Settings {
    pub fn load() -> Result<Self, config::ConfigError> {
        service::load_settings(
            "config/projector",
            &[("server.host", "127.0.0.1"), ("server.port", "8082")],
        )
    }
}
