//! The query API's settings: `config/query-api.toml` (or `APP_CONFIG`), overridden by `APP_`
//! environment variables (`APP_SERVER__PORT`, `APP_DATABASE__URL`, `APP_REDIS__URL`, …).

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: Database,
    pub redis: Redis,
    /// The base PostgreSQL schema of the read models; it names the deployment, whose current
    /// generation (schema and Redis prefix) the query API follows (ADR 7).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// How often, in milliseconds, the generation pointer is re-read.
    #[serde(default = "default_generation_poll")]
    pub generation_poll_ms: u64,
    /// Longest wait, in milliseconds, for `X-Min-Position` before answering 503.
    #[serde(default = "default_wait")]
    pub consistency_wait_ms: u64,
    /// Bearer tokens (ADR 11).
    #[serde(default)]
    pub auth: auth::AuthSettings,
    /// Rate limits, counted in the Redis above.
    #[serde(default)]
    pub rate_limit: auth::limit::LimitSettings,
    #[serde(default)]
    pub log: service::LogSettings,
    /// OTLP traces (off unless `otlp_endpoint` is set).
    #[serde(default)]
    pub telemetry: service::TelemetrySettings,
}

pub use problem::edge::ServerSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub url: SecretString,
    #[serde(default = "default_connections")]
    pub max_connections: u32,
    /// Longest wait, in milliseconds, for a read of PostgreSQL (a connection from the pool
    /// included); past it the read answers 503, and reads skip the database until it answers
    /// a probe (once a second).
    #[serde(default = "default_database_timeout")]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    pub url: String,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Longest wait, in milliseconds, for Redis to answer a read before the read falls back to
    /// PostgreSQL (and later reads skip Redis until it answers a probe, once a second).
    #[serde(default = "default_redis_timeout")]
    pub timeout_ms: u64,
}

fn default_schema() -> String {
    "rm".into()
}
fn default_generation_poll() -> u64 {
    100
}
fn default_wait() -> u64 {
    2_000
}
fn default_connections() -> u32 {
    16
}
fn default_database_timeout() -> u64 {
    2_000
}
fn default_redis_timeout() -> u64 {
    // A hundred times a loopback round trip; short enough that a read that misses it and
    // falls back to PostgreSQL stays within 50 ms (the read bound of issue 23).
    25
}
fn default_prefix() -> String {
    "promo:".into()
}

impl Settings {
    pub fn load() -> Result<Self, config::ConfigError> {
        let settings: Self = service::load_settings(
            "config/query-api",
            &[("server.host", "127.0.0.1"), ("server.port", "8081")],
        )?;
        settings.checked()
    }

    /// Refuses waits the request deadline would cut short: a read-your-writes wait (the read
    /// would answer `TIMEOUT` where `NOT_YET_CONSISTENT` is due), and a database read (a hung
    /// database would never be found out: its breaker opens at the read's deadline).
    pub fn checked(self) -> Result<Self, config::ConfigError> {
        for (name, wait) in [
            ("consistency_wait_ms", self.consistency_wait_ms),
            ("database.timeout_ms", self.database.timeout_ms),
        ] {
            if wait >= self.server.request_timeout_ms {
                return Err(config::ConfigError::Message(format!(
                    "{name} ({wait}) must be below server.request_timeout_ms ({})",
                    self.server.request_timeout_ms
                )));
            }
        }
        Ok(self)
    }
}
