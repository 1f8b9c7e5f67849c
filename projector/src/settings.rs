//! The projector's settings: `config/projector.toml` (or `APP_CONFIG`), overridden by `APP_`
//! environment variables (`APP_DATABASE__URL`, `APP_REDIS__URL`, `APP_KAFKA__BROKERS`, …).

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database: Database,
    pub redis: Redis,
    pub kafka: Kafka,
    /// The PostgreSQL schema of the read models (`rm`; replay-tools builds others).
    #[serde(default = "default_schema")]
    pub schema: String,
    #[serde(default)]
    pub log: Log,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Database {
    /// Read models live in the event log's database (the watermark reads the log).
    pub url: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Redis {
    pub url: String,
    /// Prefix of every key this projector writes.
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Kafka {
    pub brokers: String,
    /// The consumer group; every projector instance of one deployment shares it.
    #[serde(default = "default_group")]
    pub group: String,
    /// Prefix of the topic names (`promo.` → `promo.coupon`, …).
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
}

fn default_topic_prefix() -> String {
    "promo.".into()
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
fn default_prefix() -> String {
    "promo:".into()
}
fn default_group() -> String {
    "promo-projector".into()
}

impl Settings {
    pub fn load() -> Result<Self, config::ConfigError> {
        let file = std::env::var("APP_CONFIG").unwrap_or_else(|_| "config/projector".into());
        config::Config::builder()
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
