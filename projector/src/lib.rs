//! The projector: a Kafka consumer group that builds every read model the query API serves —
//! PostgreSQL tables in one schema, hot values in Redis — and publishes the watermark below
//! which every event is projected (read-your-writes). The projection code (`projection`,
//! `hot`, `watermark`) is a library: replay-tools rebuilds read models with the same code.
//!
//! Per batch: decode → apply to PostgreSQL and record progress *and the Kafka offsets* in one
//! transaction → guarded Redis writes → raise the watermark. A crash anywhere resumes from the
//! offsets committed with the read models; every step is idempotent anyway.
//!
//! Partitions are assigned by hand, not by a consumer group: under load the broker used here
//! (tansu 0.6) let a group's session time out and then never completed the rejoin, leaving
//! the projector silent (measured; ADR 6). One projector per read-model schema is active,
//! holding a PostgreSQL advisory lock; others wait for it.
//!
//! Where the read models live is the deployment's current [`generation`]: each batch reads
//! it inside its transaction, so a switch by replay-tools takes effect at a batch boundary.

pub mod generation;
pub mod hot;
pub mod projection;
pub mod settings;
pub mod watermark;

use std::time::Duration;

use std::collections::HashMap;

use messaging::envelope::Envelope;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
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
    #[error("no read-model generation is recorded for this deployment")]
    NoGeneration,
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
    let base = projection::checked_schema(&settings.schema)?;
    generation::ensure(&pool, base, &settings.redis.prefix).await?;
    let _leader = become_leader(&pool, base, &mut stop).await?;
    let live = generation::current(&pool, base).await?;
    projection::ensure_schema(&pool, &live.schema).await?;
    let mut hot = HotStore::new(&settings.redis.url, &live.prefix)?;
    let consumer: StreamConsumer =
        messaging::consumer_config(&settings.kafka.brokers, &settings.kafka.group).create()?;
    let schema = &live.schema;
    let stored: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(&format!(
        "SELECT topic, next_offset FROM {schema}.projection_offsets"
    ))
    .fetch_all(&pool)
    .await?
    .into_iter()
    .collect();
    let mut assignment = TopicPartitionList::new();
    for topic in messaging::system_topics(&settings.kafka.topic_prefix) {
        let offset = stored
            .get(&topic)
            .map_or(Offset::Beginning, |o| Offset::Offset(*o));
        assignment.add_partition_offset(&topic, 0, offset)?;
    }
    consumer.assign(&assignment)?;
    tracing::info!(schema = %live.schema, generation = live.number, "projector consuming");

    loop {
        let first = tokio::select! {
            message = consumer.recv() => Some(message),
            _ = tokio::time::sleep(IDLE_TICK) => None,
            _ = stop.changed() => break,
        };
        let mut batch: Vec<(Envelope, AnyEvent)> = Vec::new();
        let mut offsets: HashMap<String, i64> = HashMap::new();
        if let Some(message) = first {
            push(&mut batch, &mut offsets, message?);
            let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
            while batch.len() < MAX_BATCH {
                match tokio::time::timeout_at(deadline, consumer.recv()).await {
                    Ok(message) => push(&mut batch, &mut offsets, message?),
                    Err(_) => break,
                }
            }
        }
        let batch = own_events(&pool, batch).await;
        project(&pool, &mut hot, base, &batch, &offsets).await;
    }
    Ok(())
}

/// Waits (standing by) until this process holds the projector lock of `schema`; the returned
/// connection holds it for as long as it lives.
async fn become_leader(
    pool: &sqlx::PgPool,
    schema: &str,
    stop: &mut watch::Receiver<bool>,
) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, ProjectionError> {
    let mut connection = pool.acquire().await?;
    loop {
        let acquired: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('projector:' || $1))")
                .bind(schema)
                .fetch_one(&mut *connection)
                .await?;
        if acquired || *stop.borrow() {
            return Ok(connection);
        }
        tracing::info!(schema, "another projector is active; standing by");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs `attempt` until it succeeds, backing off from 50 ms to 2 s between failures: nothing
/// moves on before the step it waits for is done.
async fn until_ok<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> T {
    let mut delay = Duration::from_millis(50);
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(e) => {
                tracing::warn!(error = %e, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// The messages of `batch` that are events of this deployment's log: same position, same
/// event id. A topic that also holds another log's events (topics reused across databases)
/// would otherwise project foreign events and move the watermark past unprojected ones; they
/// are logged and skipped. Retried until the log answers.
async fn own_events(
    pool: &sqlx::PgPool,
    mut batch: Vec<(Envelope, AnyEvent)>,
) -> Vec<(Envelope, AnyEvent)> {
    if batch.is_empty() {
        return batch;
    }
    let positions: Vec<i64> = batch.iter().map(|(e, _)| e.position).collect();
    let logged: std::collections::HashSet<(i64, uuid::Uuid)> =
        until_ok("reading the log", || async {
            sqlx::query_as::<_, (i64, uuid::Uuid)>(
                "SELECT position, event_id FROM public.events WHERE position = ANY($1)",
            )
            .bind(&positions)
            .fetch_all(pool)
            .await
        })
        .await
        .into_iter()
        .collect();
    batch.retain(|(envelope, _)| {
        let own = logged.contains(&(envelope.position, envelope.event_id));
        if !own {
            tracing::error!(
                position = envelope.position, event_id = %envelope.event_id, event_type = %envelope.event_type,
                "skipping a message that is not in this deployment's event log (a topic shared with another log?)"
            );
        }
        own
    });
    batch
}

/// Decodes a message into the batch; a message that is not a valid envelope is logged and
/// skipped (it can never become valid by retrying).
fn push(
    batch: &mut Vec<(Envelope, AnyEvent)>,
    offsets: &mut HashMap<String, i64>,
    message: rdkafka::message::BorrowedMessage<'_>,
) {
    offsets.insert(message.topic().to_owned(), message.offset() + 1);
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

/// Projects one batch into the deployment's (`base`) current generation, retrying the
/// PostgreSQL step until it succeeds (nothing moves on before), then the Redis writes and the
/// watermark. `offsets`: per topic, where to resume after this batch.
pub async fn project(
    pool: &sqlx::PgPool,
    hot: &mut HotStore,
    base: &str,
    batch: &[(Envelope, AnyEvent)],
    offsets: &HashMap<String, i64>,
) {
    let live = until_ok("projecting a batch", || async {
        if batch.is_empty() && offsets.is_empty() {
            generation::current(pool, base).await
        } else {
            apply_in_transaction(pool, base, batch, offsets).await
        }
    })
    .await;
    if hot.prefix() != live.prefix {
        tracing::info!(schema = %live.schema, generation = live.number, "switched to a new read-model generation");
        hot.set_prefix(&live.prefix);
    }
    hot.resync_if_dirty(pool, &live.schema).await;
    hot.write(&hot::hot_writes(hot.prefix(), batch)).await;
    if let Err(e) = watermark::advance(pool, hot, &live.schema).await {
        tracing::warn!(error = %e, "watermark not advanced");
    }
}

/// Applies a batch and its offsets to the current generation, which cannot switch before
/// the commit; returns that generation.
async fn apply_in_transaction(
    pool: &sqlx::PgPool,
    base: &str,
    batch: &[(Envelope, AnyEvent)],
    offsets: &HashMap<String, i64>,
) -> Result<generation::Generation, ProjectionError> {
    let mut tx = pool.begin().await?;
    let live = generation::current_locked(&mut tx, base, generation::Lock::Share).await?;
    let applied = projection::apply_batch(&mut tx, &live.schema, batch).await?;
    tracing::debug!(
        applied = applied.applied,
        skipped = applied.skipped,
        "batch projected"
    );
    for (topic, next) in offsets {
        // apply_batch set the search path to `schema`.
        sqlx::query(
            "INSERT INTO projection_offsets (topic, next_offset) VALUES ($1, $2) \
             ON CONFLICT (topic) DO UPDATE SET next_offset = GREATEST(projection_offsets.next_offset, EXCLUDED.next_offset)",
        )
        .bind(topic)
        .bind(next)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(live)
}
