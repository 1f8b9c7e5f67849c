//! Kafka plumbing shared by the relay, the projector and the tools: one topic per aggregate
//! category (derived from the domain's event catalogue), client settings, and topic admin.
//! Topics are always created explicitly: the broker used here (tansu) loses messages on
//! auto-created topics (ADR 4). Nothing here deletes topics: tansu 0.6.0's delete
//! removes *every* topic of the cluster (docs/adr/0004-local-stack.md).

pub mod envelope;

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
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
/// surfaces as an error the relay logs and retries from its checkpoint. 30 s, not less: under
/// a flash sale the broker here answered produce requests of ~1,000 records in ~3 s.
/// `max_request_bytes`: the largest produce request; [`DEFAULT_MAX_REQUEST_BYTES`] is what
/// every Kafka broker accepts by default.
pub fn producer_config(brokers: &str, max_request_bytes: u32) -> ClientConfig {
    let mut config = client_config(brokers);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        // Few, full produce requests: a relay round (≤ 2,000 events, ~2 MB) is enqueued within
        // the linger. While one request is being written out, librdkafka polls with a zero
        // timeout for as long as more messages wait (ADR 9): a round that fits one request
        // (the local stack's 16 MB) never waits; at 1 MB it does, on the relay's idle-priority
        // thread.
        .set("linger.ms", "20")
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
        // Large fetches: the broker's cost is mostly per fetch request.
        .set("max.partition.fetch.bytes", "16777216")
        .set("fetch.max.bytes", "67108864")
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

/// Whether a topic was made by this call or was there already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    Created,
    AlreadyExisted,
}

/// Creates each topic with `partitions` partitions unless it exists. Idempotent.
pub async fn ensure_topics(
    brokers: &str,
    topics: &[String],
    partitions: i32,
) -> Result<Vec<(String, TopicOutcome)>, MessagingError> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers).create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let mut outcomes = Vec::with_capacity(topics.len());
    for result in admin.create_topics(new_topics.iter(), &options).await? {
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

/// The broker's topics with their partition counts, sorted by name. Blocking: call it from
/// a blocking context (`spawn_blocking`) inside async code.
pub fn list_topics(brokers: &str) -> Result<Vec<(String, usize)>, MessagingError> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers).create()?;
    let metadata = admin.inner().fetch_metadata(None, ADMIN_TIMEOUT)?;
    let mut topics: Vec<(String, usize)> = metadata
        .topics()
        .iter()
        .map(|t| (t.name().to_owned(), t.partitions().len()))
        .collect();
    topics.sort();
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
