//! The relay: follows the event log in position order and publishes every event to Kafka —
//! one topic per aggregate category, keyed by aggregate id, as the JSON envelope — with an
//! idempotent producer and `acks=all`, for the consumers outside this system (the read side
//! follows the log itself, ADR 8). Its checkpoint moves only after the broker acknowledged
//! every event up to it, so a crash at any moment re-publishes (duplicates are allowed) and
//! never loses an event. One relay publishes at a time: the leader holds a PostgreSQL
//! advisory lock on a connection of its own ([`eventlog::leader`]) and moves the checkpoint
//! only through it; the others stand by.
//!
//! A failed round (broker down, database down) is logged and retried from the checkpoint
//! after a pause that grows to at most [`RETRY_MAX`]; the first round that publishes again
//! logs the recovery.

pub mod priority;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use eventlog::appends::Appends;
use eventlog::leader::Leader;
use eventlog::{EventLog, RecordedEvent};
use messaging::envelope::{Envelope, ENVELOPE_VERSION};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::watch;

/// The advisory lock of the relay leader.
const LEADER_LOCK: &str = "relay";
/// Events read from the log per round: one read, one wait for the acknowledgements and one
/// checkpoint update per round.
const BATCH: i64 = 2_000;
/// Longest wait for an append notification before looking at the log anyway (the fallback
/// when a notification is lost).
const POLL: Duration = Duration::from_millis(100);
/// First pause after a failed round; it doubles with each failure in a row, up to
/// [`RETRY_MAX`], so an outage is retried every second or two and costs little meanwhile.
const RETRY_FIRST: Duration = Duration::from_millis(100);
pub const RETRY_MAX: Duration = Duration::from_secs(1);
/// How often a relay that is behind the log says so.
const LAG_REPORT_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("event log: {0}")]
    Store(#[from] eventlog::StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// The envelope of a recorded event.
fn envelope(event: &RecordedEvent) -> Envelope {
    Envelope {
        envelope_version: ENVELOPE_VERSION,
        event_id: event.event_id,
        event_type: event.event_type.clone(),
        schema_version: event.schema_version as u16,
        aggregate_type: event.category.clone(),
        aggregate_id: event.stream_id,
        aggregate_version: event.version,
        position: event.position,
        occurred_at: event.recorded_at,
        data: event.data.clone(),
        metadata: event.metadata.clone(),
    }
}

pub use messaging::DEFAULT_MAX_REQUEST_BYTES;

/// Where and how the relay publishes.
#[derive(Debug, Clone)]
pub struct Kafka {
    /// Bootstrap servers.
    pub brokers: String,
    /// Prefix of the topic names (`promo.` → `promo.coupon`, …).
    pub topic_prefix: String,
    /// The largest produce request (see [`messaging::producer_config`]).
    pub max_request_bytes: u32,
}

/// A relay running on a thread of its own ([`spawn`]).
#[derive(Debug)]
pub struct Relay {
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Relay {
    /// Completes once the relay's thread has stopped (after `stop` turned true).
    pub async fn stopped(self) {
        let _ = self.done.await;
    }
}

/// Starts the relay on a thread of its own, with its own single-threaded runtime and its own
/// connections to the log: a round decodes and encodes thousands of events in one go, which
/// on the command API's runtime held up request threads (orders/s fell by about a quarter
/// with the relay on, measured 2026-12-01). Runs at the lowest priority ([`priority`]) until
/// `stop` turns true.
pub fn spawn(
    database: PgConnectOptions,
    kafka: Kafka,
    stop: watch::Receiver<bool>,
) -> std::io::Result<Relay> {
    let (finished, done) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("relay".into())
        .spawn(move || {
            priority::lowest();
            runtime.block_on(async move {
                // The leader's lock connection, the append listener, reads of the log, and
                // the lag sampler's.
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(3))
                    .connect_lazy_with(database);
                run(EventLog::from_pool(pool), kafka, stop).await;
            });
            let _ = finished.send(());
        })?;
    Ok(Relay { done })
}

/// The last log position Kafka acknowledged: everything at or below it is published.
pub async fn checkpoint<'e>(executor: impl sqlx::PgExecutor<'e>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT position FROM relay_checkpoint WHERE name = 'kafka'")
        .fetch_one(executor)
        .await
}

/// Runs the relay until `stop` turns true: stand by until leader, then publish, retrying
/// from the checkpoint after any failure. Stops at once, whatever it is doing: the checkpoint
/// moves only after an acknowledgement, so an interrupted round is published again.
async fn run(log: EventLog, kafka: Kafka, stop: watch::Receiver<bool>) {
    let pool = log.pool().clone();
    tokio::spawn(eventlog::sample_lag(
        log.clone(),
        "relay_lag_events",
        move || {
            let pool = pool.clone();
            async move { checkpoint(&pool).await.map_err(|e| e.to_string()) }
        },
        stop.clone(),
    ));
    let mut signal = stop.clone();
    tokio::select! {
        () = relay(log, kafka, stop) => {}
        _ = signal.wait_for(|stopped| *stopped) => {}
    }
}

async fn relay(log: EventLog, kafka: Kafka, mut stop: watch::Receiver<bool>) {
    let appends = Appends::listen(log.pool().clone());
    let mut failures: u32 = 0;
    loop {
        let mut leader = match Leader::acquire(log.pool(), LEADER_LOCK, &mut stop).await {
            Ok(Some(leader)) => leader,
            Ok(None) => return,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, "relay cannot take its lock; retrying");
                pause(failures).await;
                continue;
            }
        };
        tracing::info!("relay is the leader; publishing");
        loop {
            let error = lead(&log, &kafka, &mut leader, &appends, &mut failures).await;
            failures += 1;
            metrics::counter!("background_failures_total", "loop" => "relay").increment(1);
            tracing::warn!(error = %error, failures, "relay round failed; retrying from the checkpoint");
            pause(failures).await;
            if !leader.holds().await {
                tracing::warn!("relay lost its lock (its connection dropped); taking it again");
                break;
            }
        }
    }
}

/// Waits before the next try after `failures` failed rounds in a row.
async fn pause(failures: u32) {
    let delay = RETRY_FIRST
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .min(RETRY_MAX);
    tokio::time::sleep(delay).await;
}

/// Publishes from the checkpoint on as leader until something fails; returns the failure.
async fn lead(
    log: &EventLog,
    kafka: &Kafka,
    leader: &mut Leader,
    appends: &Appends,
    failures: &mut u32,
) -> RelayError {
    let publishing: Result<Infallible, RelayError> = async {
        let producer: FutureProducer =
            messaging::producer_config(&kafka.brokers, kafka.max_request_bytes).create()?;
        let mut checkpoint: i64 = self::checkpoint(leader.connection()).await?;
        let mut lag_reported = Instant::now();
        loop {
            let events = log.read_all(checkpoint, BATCH).await?;
            let Some(last) = events.last().map(|e| e.position) else {
                appends.next(POLL).await;
                continue;
            };
            let started = Instant::now();
            publish(&producer, &kafka.topic_prefix, None, &events).await?;
            metrics::histogram!("relay_publish_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("relay_published_events_total").increment(events.len() as u64);
            // Through the leader's own connection: it runs only while the session holding the
            // lock lives.
            sqlx::query("UPDATE relay_checkpoint SET position = $1 WHERE name = 'kafka'")
                .bind(last)
                .execute(leader.connection())
                .await?;
            checkpoint = last;
            if *failures > 0 {
                tracing::info!(
                    failed_rounds = *failures,
                    checkpoint,
                    "relay recovered; publishing again"
                );
                *failures = 0;
            }
            if events.len() as i64 == BATCH && lag_reported.elapsed() >= LAG_REPORT_EVERY {
                // Only a log line: a failed look at the head does not fail the round.
                if let Ok(head) = log.head().await {
                    tracing::warn!(
                        checkpoint,
                        head,
                        lag = head - checkpoint,
                        "relay is behind the log"
                    );
                }
                lag_reported = Instant::now();
            }
        }
    }
    .await;
    match publishing {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// Enqueues every event — to its category's topic under `prefix`, or all to `topic` when
/// given — then waits for every acknowledgement; any failure fails the round. replay-tools'
/// `republish` sends through here too, so re-sent messages equal the originals.
pub async fn publish(
    producer: &FutureProducer,
    prefix: &str,
    topic: Option<&str>,
    events: &[RecordedEvent],
) -> Result<(), RelayError> {
    let mut deliveries = Vec::with_capacity(events.len());
    for event in events {
        let envelope = envelope(event);
        let topic = topic.map_or_else(|| envelope.topic(prefix), str::to_owned);
        let key = event.stream_id.to_string();
        let payload = serde_json::to_vec(&envelope).unwrap_or_default();
        let mut headers = OwnedHeaders::new().insert(Header {
            key: "event-type",
            value: Some(event.event_type.as_str()),
        });
        if let Some(correlation) = event.metadata.get("correlationId").and_then(|v| v.as_str()) {
            headers = headers.insert(Header {
                key: "correlation-id",
                value: Some(correlation),
            });
        }
        if let Some(traceparent) = event.metadata.get("traceparent").and_then(|v| v.as_str()) {
            headers = headers.insert(Header {
                key: "traceparent",
                value: Some(traceparent),
            });
        }
        let mut record = FutureRecord::to(&topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        // The local queue may be full: give the producer time to drain it.
        let delivery = loop {
            match producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((e, returned)) => {
                    if !matches!(
                        e,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull
                        )
                    ) {
                        return Err(e.into());
                    }
                    record = returned;
                    producer.poll(Duration::from_millis(10));
                    tokio::task::yield_now().await;
                }
            }
        };
        deliveries.push(delivery);
    }
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e.into()),
            Err(_canceled) => {
                return Err(rdkafka::error::KafkaError::Canceled.into());
            }
        }
    }
    Ok(())
}
