//! Kafka plumbing shared by the relay, the projector and the tools: one topic per aggregate
//! category (derived from the domain's event catalogue), client settings, and topic admin.
//! Topics are always created explicitly, with the partitions, replication and retention of a
//! [`TopicSpec`], and checked against it ([`check_topics`]): a broker's defaults never decide
//! them, and the brokers run with `auto.create.topics.enable=false` (ADR 13).

pub mod envelope;

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, NewTopic, OwnedResourceSpecifier, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use thiserror::Error;

/// Every topic name of a deployment starts with its prefix; this is the default. Tests use
/// their own, so parallel runs never read each other's events.
pub const DEFAULT_TOPIC_PREFIX: &str = "promo.";

/// The largest produce request by default: what every Kafka broker accepts out of the box
/// (its `message.max.bytes`).
pub const DEFAULT_MAX_REQUEST_BYTES: u32 = 1_000_000;

/// How long an admin or metadata request may take before it counts as failed.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum MessagingError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("creating topic {topic} failed: {code:?}")]
    TopicCreation {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("deleting topic {topic} failed: {code:?}")]
    TopicDeletion {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("describing a topic's settings failed: {code:?}")]
    Describe { code: RDKafkaErrorCode },
}

/// The topic that carries every event of an aggregate category, e.g. `promo.timesale`.
pub fn topic_for(prefix: &str, category: &str) -> String {
    format!("{prefix}{category}")
}

/// The topics of every category the domain writes, sorted.
pub fn system_topics(prefix: &str) -> Vec<String> {
    let categories: BTreeSet<&str> = domain::wire::EVENT_TYPES
        .iter()
        .map(|t| t.category)
        .collect();
    categories
        .into_iter()
        .map(|c| topic_for(prefix, c))
        .collect()
}

/// Settings of the relay's producer: idempotent (no duplicates or reordering from the
/// producer's own retries), `acks=all`, and a bounded delivery timeout so a broker outage
/// surfaces as an error the relay logs and retries from its checkpoint. Keys are spread over
/// partitions by murmur2, as Kafka's Java clients do (librdkafka's default is CRC32): a
/// consumer or stream joining our topics with its own finds an aggregate in the same
/// partition. `max_request_bytes`: the largest produce request; [`DEFAULT_MAX_REQUEST_BYTES`]
/// is what every Kafka broker accepts by default.
pub fn producer_config(brokers: &str, max_request_bytes: u32) -> ClientConfig {
    let mut config = client_config(brokers);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .set("partitioner", "murmur2_random")
        // A relay round (≤ 2,000 events) is enqueued at once: a short linger fills each
        // partition's batch instead of sending the first events alone.
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("batch.size", max_request_bytes.to_string())
        .set("message.max.bytes", max_request_bytes.to_string())
        .set("compression.type", "none");
    config
}

/// Settings of a consumer in `group`: offsets are committed by hand, only after the work they
/// caused is durable. A member that dies (kill -9) is declared dead after the session timeout;
/// the rebalance timeout (`max.poll.interval.ms`, 5 minutes by default) is cut too, so a member
/// killed during a rebalance holds the group up for seconds, not minutes.
pub fn consumer_config(brokers: &str, group: &str) -> ClientConfig {
    let mut config = client_config(brokers);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("max.poll.interval.ms", "15000")
        .set("fetch.wait.max.ms", "20");
    config
}

/// The client settings every producer, consumer and admin client starts from. A lost broker
/// connection is tried again after 100 ms, then at most every second (librdkafka's default
/// grows to 10 s, which delayed the relay's resumption after a broker outage by as much).
/// `RDKAFKA_DEBUG` (e.g. `fetch,msg`), when set, turns on librdkafka's debug contexts.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "1000");
    if let Ok(contexts) = std::env::var("RDKAFKA_DEBUG") {
        config.set("debug", contexts);
    }
    config
}

/// How the system's topics are made: partitions, replicas and retention. Every topic of a
/// deployment gets the same; `promo-topics` and the tests create and check them with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Partitions per topic. Events are keyed by aggregate id, so one aggregate's events stay
    /// in one partition, in log order, however many there are; more partitions let a
    /// consumer group spread over more members.
    pub partitions: i32,
    /// Replicas of each partition: 1 on a single broker, 3 on a cluster (where
    /// `min.insync.replicas` becomes 2, so an `acks=all` write survives one broker's loss).
    pub replication: i32,
    /// How long the broker keeps a record (`retention.ms`; -1 keeps it for ever). The event
    /// log keeps everything; `replay-tools republish` sends a range again.
    pub retention_ms: i64,
}

/// Partitions per topic unless a setting says otherwise.
pub const DEFAULT_PARTITIONS: i32 = 6;
/// Seven days, Kafka's own default, stated on the topic so that no broker setting changes it.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

impl Default for TopicSpec {
    fn default() -> Self {
        Self {
            partitions: DEFAULT_PARTITIONS,
            replication: 1,
            retention_ms: DEFAULT_RETENTION_MS,
        }
    }
}

impl TopicSpec {
    /// The topic-level settings the spec states, as the broker names them.
    fn configs(&self) -> Vec<(&'static str, String)> {
        let min_insync = if self.replication > 1 { 2 } else { 1 };
        vec![
            ("retention.ms", self.retention_ms.to_string()),
            ("min.insync.replicas", min_insync.to_string()),
        ]
    }
}

/// Whether a topic was made by this call or was there already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    Created,
    AlreadyExisted,
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>, MessagingError> {
    Ok(client_config(brokers).create()?)
}

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT))
}

/// Creates each topic as `spec` says unless it exists (an existing one is left as it is:
/// [`check_topics`] says how it differs). Idempotent.
pub async fn ensure_topics(
    brokers: &str,
    topics: &[String],
    spec: &TopicSpec,
) -> Result<Vec<(String, TopicOutcome)>, MessagingError> {
    let admin = admin(brokers)?;
    let configs = spec.configs();
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| {
            configs.iter().fold(
                NewTopic::new(
                    name,
                    spec.partitions,
                    TopicReplication::Fixed(spec.replication),
                ),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let mut outcomes = Vec::with_capacity(topics.len());
    for result in admin
        .create_topics(new_topics.iter(), &admin_options())
        .await?
    {
        match result {
            Ok(topic) => outcomes.push((topic, TopicOutcome::Created)),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                outcomes.push((topic, TopicOutcome::AlreadyExisted))
            }
            Err((topic, code)) => return Err(MessagingError::TopicCreation { topic, code }),
        }
    }
    Ok(outcomes)
}

/// How each of `topics` differs from `spec` on the broker — missing, partitions, replicas,
/// retention, `min.insync.replicas` — one sentence per difference; empty when all match.
pub async fn check_topics(
    brokers: &str,
    topics: &[String],
    spec: &TopicSpec,
) -> Result<Vec<String>, MessagingError> {
    let admin = admin(brokers)?;
    let listed = {
        let brokers = brokers.to_owned();
        tokio::task::spawn_blocking(move || describe_topics(&brokers))
            .await
            .map_err(|_| KafkaError::Canceled)??
    };
    let mut differences = Vec::new();
    let mut present = Vec::new();
    for topic in topics {
        match listed.iter().find(|t| &t.name == topic) {
            None => differences.push(format!("{topic}: missing")),
            Some(found) => {
                if found.partitions != spec.partitions as usize {
                    differences.push(format!(
                        "{topic}: {} partitions, the settings say {}",
                        found.partitions, spec.partitions
                    ));
                }
                if found.replicas != spec.replication as usize {
                    differences.push(format!(
                        "{topic}: {} replicas, the settings say {}",
                        found.replicas, spec.replication
                    ));
                }
                present.push(topic.as_str());
            }
        }
    }
    if present.is_empty() {
        return Ok(differences);
    }
    let resources: Vec<ResourceSpecifier<'_>> = present
        .iter()
        .map(|t| ResourceSpecifier::Topic(t))
        .collect();
    let wanted = spec.configs();
    for described in admin
        .describe_configs(resources.iter(), &admin_options())
        .await?
    {
        let resource = described.map_err(|code| MessagingError::Describe { code })?;
        let OwnedResourceSpecifier::Topic(topic) = &resource.specifier else {
            continue;
        };
        for (key, value) in &wanted {
            let actual = resource.get(key).and_then(|e| e.value.as_deref());
            if actual != Some(value.as_str()) {
                differences.push(format!(
                    "{topic}: {key} is {}, the settings say {value}",
                    actual.unwrap_or("unset")
                ));
            }
        }
    }
    Ok(differences)
}

/// Deletes the topics (those missing are ignored). The tests remove their own with it.
pub async fn delete_topics(brokers: &str, topics: &[String]) -> Result<(), MessagingError> {
    let admin = admin(brokers)?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    for result in admin.delete_topics(&names, &admin_options()).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => return Err(MessagingError::TopicDeletion { topic, code }),
        }
    }
    Ok(())
}

/// A topic as the broker's metadata shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: usize,
    /// Replicas of its first partition.
    pub replicas: usize,
}

/// The broker's topics, sorted by name. Blocking: call it from a blocking context
/// (`spawn_blocking`) inside async code.
pub fn describe_topics(brokers: &str) -> Result<Vec<TopicInfo>, MessagingError> {
    let admin = admin(brokers)?;
    let metadata = admin.inner().fetch_metadata(None, ADMIN_TIMEOUT)?;
    let mut topics: Vec<TopicInfo> = metadata
        .topics()
        .iter()
        .map(|t| TopicInfo {
            name: t.name().to_owned(),
            partitions: t.partitions().len(),
            replicas: t.partitions().first().map_or(0, |p| p.replicas().len()),
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_is_one_topic_per_aggregate_category() {
        assert_eq!(
            system_topics(DEFAULT_TOPIC_PREFIX),
            vec![
                "promo.coupon",
                "promo.point",
                "promo.product",
                "promo.timesale"
            ]
        );
    }
}
