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
    /// Checkout holds and the deadlines that end them.
    #[serde(default)]
    pub holds: HoldSettings,
    /// Loyalty points: how long earned points last by default.
    #[serde(default)]
    pub points: PointSettings,
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
    /// Several instances as one (ADR 15): membership in etcd, one owner per aggregate,
    /// commands forwarded to it over gRPC. Without it this instance owns every aggregate.
    #[serde(default)]
    pub cluster: Option<ClusterSettings>,
}

/// This instance as a member of a cluster of command APIs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// etcd's client endpoints, e.g. `127.0.0.1:52379` (comma-separated for several).
    pub etcd: String,
    /// This member's name, unique in the cluster (its key in etcd); the host's name when
    /// unset (a container's, in compose: unique per replica).
    #[serde(default = "hostname")]
    pub node: String,
    /// The etcd key prefix the members register under.
    #[serde(default = "default_members_prefix")]
    pub prefix: String,
    /// Where the internal gRPC door binds (never the public API's address).
    #[serde(default = "default_grpc_host")]
    pub grpc_host: String,
    /// Its port; 0 picks a free one.
    #[serde(default)]
    pub grpc_port: u16,
    /// The address the other members reach the gRPC door at; by default `grpc_host:port`,
    /// or `hostname:port` when `grpc_host` is a wildcard (0.0.0.0, ::).
    #[serde(default)]
    pub advertise: Option<String>,
    /// Seconds a member's lease lives without a keep-alive: how long the others wait before
    /// taking over its aggregates after it dies (kept alive every third of it).
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_seconds: u64,
    /// Milliseconds a member waits after a membership change before deciding for an
    /// aggregate it gained, so the one that lost it has seen the change and stopped; also how
    /// long a member trusts its last read of the member list (it reads it every third of it).
    #[serde(default = "default_handover_ms")]
    pub handover_ms: u64,
    /// Deadline of a forwarded command, in milliseconds.
    #[serde(default = "default_forward_timeout_ms")]
    pub forward_timeout_ms: u64,
}

/// The host's name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

fn default_members_prefix() -> String {
    "/promo/command-api/members/".into()
}

fn default_grpc_host() -> String {
    "127.0.0.1".into()
}

fn default_lease_ttl() -> u64 {
    3
}

fn default_handover_ms() -> u64 {
    1_000
}

fn default_forward_timeout_ms() -> u64 {
    2_000
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

impl Settings {
    /// What a value's type cannot say: the holds' bounds within the API's (1 to 86,400 s, the
    /// least no more than the most), a points validity that keeps times before 9999.
    pub fn check(&self) -> Result<(), String> {
        let holds = &self.holds;
        let api = 1..=crate::commands::holds::MAX_TTL_SECONDS;
        if !api.contains(&i64::from(holds.min_ttl_seconds))
            || !api.contains(&i64::from(holds.max_ttl_seconds))
            || holds.min_ttl_seconds > holds.max_ttl_seconds
        {
            return Err(format!(
                "holds.min_ttl_seconds ({}) and holds.max_ttl_seconds ({}) must be 1 to 86400, the least first",
                holds.min_ttl_seconds, holds.max_ttl_seconds
            ));
        }
        if self
            .points
            .default_validity_days
            .is_some_and(|days| !(1..=MAX_VALIDITY_DAYS).contains(&days))
        {
            return Err(format!(
                "points.default_validity_days must be 1 to {MAX_VALIDITY_DAYS}"
            ));
        }
        Ok(())
    }
}

/// The longest default validity of earned points: a hundred years.
const MAX_VALIDITY_DAYS: u32 = 36_500;

/// The bounds of a checkout hold's lifetime, and how the deadlines that end holds are run.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HoldSettings {
    /// The shortest hold a checkout may ask for, in seconds (at least 1).
    pub min_ttl_seconds: u32,
    /// The longest, in seconds (at most 86,400: the API's own bound).
    pub max_ttl_seconds: u32,
    /// Milliseconds between two looks for due deadlines (and for new events that set or clear
    /// one): a deadline fires at most about this late, plus the time to append.
    pub deadline_poll_ms: u64,
}

/// Loyalty points.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PointSettings {
    /// Days earned points last when an earn names no `expiresAt`; never expire when unset.
    pub default_validity_days: Option<u32>,
}

impl Default for HoldSettings {
    fn default() -> Self {
        Self {
            min_ttl_seconds: 5,
            max_ttl_seconds: 1_800,
            deadline_poll_ms: 200,
        }
    }
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
        if let Some(cluster) = &self.cluster {
            if !(2..=60).contains(&cluster.lease_ttl_seconds) {
                return Err(config::ConfigError::Message(
                    "cluster.lease_ttl_seconds must be between 2 and 60".into(),
                ));
            }
            if cluster.node.is_empty()
                || cluster.node.len() > 64
                || !cluster
                    .node
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(config::ConfigError::Message(
                    "cluster.node must be 1 to 64 letters, digits, '-' or '_'".into(),
                ));
            }
            // Below the request's deadline: a forward the request's deadline cut off first
            // would never count against the peer's breaker.
            if cluster.forward_timeout_ms < 100
                || cluster.forward_timeout_ms >= self.server.request_timeout_ms
            {
                return Err(config::ConfigError::Message(format!(
                    "cluster.forward_timeout_ms must be at least 100 and below \
                     server.request_timeout_ms ({})",
                    self.server.request_timeout_ms
                )));
            }
            if cluster.etcd.split(',').any(|e| e.trim().is_empty()) {
                return Err(config::ConfigError::Message(
                    "cluster.etcd must name etcd's endpoints, comma-separated".into(),
                ));
            }
            // One cluster's members only: `/x/members/` is not a prefix of `/x/members2/…`.
            if cluster.prefix.len() < 2
                || !cluster.prefix.starts_with('/')
                || !cluster.prefix.ends_with('/')
            {
                return Err(config::ConfigError::Message(
                    "cluster.prefix must start and end with '/' (e.g. /promo/members/)".into(),
                ));
            }
            if !(100..=60_000).contains(&cluster.handover_ms) {
                return Err(config::ConfigError::Message(
                    "cluster.handover_ms must be between 100 and 60000".into(),
                ));
            }
        }
        if !(1..=87_600).contains(&self.idempotency.retention_hours) {
            return Err(config::ConfigError::Message(
                "idempotency.retention_hours must be between 1 and 87600 (10 years)".into(),
            ));
        }
        Ok(self)
    }
}
