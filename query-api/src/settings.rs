//! The query API's settings: `config/query-api.toml` (or `APP_CONFIG`), overridden by `APP_`
//! environment variables (`APP_SERVER__PORT`, `APP_DATABASE__URL`, `APP_REDIS__URL`, …).

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: Server,
    pub database: Database,
    pub redis: Redis,
    /// The PostgreSQL schema of the read models.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Longest wait, in milliseconds, for `X-Min-Position` before answering 503.
    #[serde(default = "default_wait")]
    pub consistency_wait_ms: u64,
    #[serde(default)]
    pub log: Log,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Server {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Database {
    pub url: SecretString,
    #[serde(default = "default_connections")]
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Redis {
    pub url: String,
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Log {
    pub format: String,
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: "json".into(),
            level: "info".into(),
        }
    }
}

fn default_schema() -> String {
    "rm".into()
}
fn default_wait() -> u64 {
    2_000
}
fn default_connections() -> u32 {
    16
}
fn default_prefix() -> String {
    "promo:".into()
}

impl Settings {
    pub fn load() -> Result<Self, config::ConfigError> {
        let file = std::env::var("APP_CONFIG").unwrap_or_else(|_| "config/query-api".into());
        config::Config::builder()
            .set_default("server.host", "127.0.0.1")?
            .set_default("server.port", 8081)?
            .add_source(config::File::with_name(&file).required(false))
            .add_source(
                config::Environment::with_prefix("APP")
                    .prefix_separator("_")
                    .separator("__"),
            )
            .build()?
            .try_deserialize()
    }
}
