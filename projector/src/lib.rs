//! The projector: a Kafka consumer group that builds every read model the query API serves —
//! PostgreSQL tables in one schema, hot values in Redis — and publishes the watermark below
//! which every event is projected (read-your-writes). The projection code (`projection`,
//! `hot`, `watermark`) is a library: replay-tools rebuilds read models with the same code.
//!
//! Per batch: decode → apply to PostgreSQL and record progress in one transaction → guarded
//! Redis writes → raise the watermark → commit the Kafka offsets. A crash anywhere redelivers
//! the batch; every step is idempotent.

pub mod hot;
pub mod projection;
pub mod settings;
pub mod watermark;

use std::time::Duration;

use messaging::envelope::Envelope;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::Message;
use tokio::sync::watch;

use crate::hot::HotStore;
use crate::projection::AnyEvent;
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("not a read-model schema name: {0:?}")]
    BadSchemaName(String),
    #[error("unknown aggregate category {0}")]
    UnknownCategory(String),
    #[error("undecodable event: {0}")]
    Undecodable(String),
}

/// Most messages projected per transaction.
const MAX_BATCH: usize = 1_000;
/// How long a batch waits for more messages once it has one.
const BATCH_WINDOW: Duration = Duration::from_millis(3);
/// How often the watermark is recomputed when no messages arrive.
const IDLE_TICK: Duration = Duration::from_millis(50);

/// Runs the projector until `stop` turns true.
pub async fn run(
    settings: Settings,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ProjectionError> {
    use secrecy::ExposeSecret;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(settings.database.url.expose_secret())
        .await?;
    projection::ensure_schema(&pool, &settings.schema).await?;
    let mut hot = HotStore::new(&settings.redis.url, &settings.redis.prefix)?;
    let consumer: StreamConsumer =
        messaging::consumer_config(&settings.kafka.brokers, &settings.kafka.group).create()?;
    let topics = messaging::system_topics(&settings.kafka.topic_prefix);
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs)?;
    tracing::info!(group = %settings.kafka.group, schema = %settings.schema, "projector consuming");

    loop {
        let first = tokio::select! {
            message = consumer.recv() => Some(message),
            _ = tokio::time::sleep(IDLE_TICK) => None,
            _ = stop.changed() => break,
        };
        let mut batch: Vec<(Envelope, AnyEvent)> = Vec::new();
        if let Some(message) = first {
            push(&mut batch, message?);
            let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
            while batch.len() < MAX_BATCH {
                match tokio::time::timeout_at(deadline, consumer.recv()).await {
                    Ok(message) => push(&mut batch, message?),
                    Err(_) => break,
                }
            }
        }
        project(&pool, &mut hot, &settings.schema, &batch).await;
        if !batch.is_empty() {
            // Async: a lost commit only means a redelivery, which changes nothing.
            consumer.commit_consumer_state(CommitMode::Async)?;
        }
    }
    Ok(())
}

/// Decodes a message into the batch; a message that is not a valid envelope is logged and
/// skipped (it can never become valid by retrying).
fn push(batch: &mut Vec<(Envelope, AnyEvent)>, message: rdkafka::message::BorrowedMessage<'_>) {
    let parsed = message
        .payload()
        .ok_or_else(|| ProjectionError::Undecodable("empty message".into()))
        .and_then(|payload| {
            serde_json::from_slice::<Envelope>(payload)
                .map_err(|e| ProjectionError::Undecodable(e.to_string()))
        })
        .and_then(|envelope| projection::decode(&envelope).map(|event| (envelope, event)));
    match parsed {
        Ok(entry) => batch.push(entry),
        Err(e) => tracing::error!(
            error = %e, topic = message.topic(), partition = message.partition(), offset = message.offset(),
            "skipping a message that is not a valid event envelope"
        ),
    }
}

/// Projects one batch, retrying the PostgreSQL step until it succeeds (the batch is not
/// acknowledged before), then the Redis writes and the watermark.
pub async fn project(
    pool: &sqlx::PgPool,
    hot: &mut HotStore,
    schema: &str,
    batch: &[(Envelope, AnyEvent)],
) {
    if !batch.is_empty() {
        let mut delay = Duration::from_millis(50);
        loop {
            match apply_in_transaction(pool, schema, batch).await {
                Ok(applied) => {
                    tracing::debug!(
                        applied = applied.applied,
                        skipped = applied.skipped,
                        "batch projected"
                    );
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "projecting a batch failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
    hot.resync_if_dirty(pool, schema).await;
    hot.write(&hot::hot_writes(hot.prefix(), batch)).await;
    if let Err(e) = watermark::advance(pool, hot, schema).await {
        tracing::warn!(error = %e, "watermark not advanced");
    }
}

async fn apply_in_transaction(
    pool: &sqlx::PgPool,
    schema: &str,
    batch: &[(Envelope, AnyEvent)],
) -> Result<projection::Applied, ProjectionError> {
    let mut tx = pool.begin().await?;
    let applied = projection::apply_batch(&mut tx, schema, batch).await?;
    tx.commit().await?;
    Ok(applied)
}
