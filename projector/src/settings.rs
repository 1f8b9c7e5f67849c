//! The projector's settings: `config/projector.toml` (or `APP_CONFIG`), overridden by `APP_`
//! environment variables (`APP_DATABASE__URL`, `APP_REDIS__URL`, `APP_KAFKA__BROKERS`, …).

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database: Database,
    pub redis: Redis,
    pub kafka: Kafka,
    /// The base PostgreSQL schema of the read models (`rm`): it names the deployment, whose
    /// current generation (schema and Redis prefix; replay-tools builds new ones) the
    /// projector writes to (ADR 7).
    #[serde(default = "default_schema")]
    pub schema: String,
    #[serde(default)]
    pub log: service::LogSettings,
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
        service::load_settings("config/projector", &[])
    }
}
