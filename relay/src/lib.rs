//! The relay: tails the event log in position order and publishes every event to Kafka — one
//! topic per aggregate category, keyed by aggregate id, as the JSON envelope — with an
//! idempotent producer and `acks=all`. Its checkpoint moves only after the broker acknowledged
//! every event up to it, so a crash at any moment re-publishes (duplicates are allowed; the
//! projector skips them) and never loses an event. One relay publishes at a time: the leader
//! holds a PostgreSQL advisory lock on its own connection; the others wait for it.

use std::time::Duration;

use eventlog::{EventLog, RecordedEvent};
use messaging::envelope::{Envelope, ENVELOPE_VERSION};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::pool::PoolConnection;
use sqlx::Postgres;
use tokio::sync::watch;

/// The advisory lock key of the relay leader ("promorel").
const LEADER_LOCK: i64 = 0x7072_6f6d_6f72_656c;
/// Events read from the log per round: the broker (tansu) is bound by requests, so few big ones.
const BATCH: i64 = 2_000;
/// Wait between polls of an idle log: bounds how stale Kafka is when traffic is light.
const IDLE_POLL: Duration = Duration::from_millis(5);
/// Wait after a failed round (broker or database down) before trying again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

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
pub fn envelope(event: &RecordedEvent) -> Envelope {
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

/// Runs the relay until `stop` turns true: stand by until leader, then publish forever,
/// retrying from the checkpoint after any failure.
pub async fn run(log: EventLog, brokers: String, prefix: String, mut stop: watch::Receiver<bool>) {
    loop {
        let round = async {
            let producer: FutureProducer = messaging::producer_config(&brokers).create()?;
            let mut leader = become_leader(&log).await?;
            tracing::info!("relay is the leader; publishing");
            publish_forever(&log, &producer, &prefix, &mut leader).await
        };
        tokio::select! {
            result = round => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "relay round failed; retrying from the checkpoint");
                }
                tokio::time::sleep(RETRY_AFTER).await;
            }
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Completes once `stop` turns true (the guard `wait_for` returns is dropped here: it is not
/// `Send`).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Waits until this process holds the leader lock, on a connection kept for the lock's life.
async fn become_leader(log: &EventLog) -> Result<PoolConnection<Postgres>, RelayError> {
    let mut connection = log.pool().acquire().await?;
    loop {
        let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut *connection)
            .await?;
        if acquired {
            return Ok(connection);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn publish_forever(
    log: &EventLog,
    producer: &FutureProducer,
    prefix: &str,
    leader: &mut PoolConnection<Postgres>,
) -> Result<(), RelayError> {
    let mut checkpoint: i64 =
        sqlx::query_scalar("SELECT position FROM relay_checkpoint WHERE name = 'kafka'")
            .fetch_one(&mut **leader)
            .await?;
    loop {
        let events = log.read_all(checkpoint, BATCH).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            tokio::time::sleep(IDLE_POLL).await;
            continue;
        };
        publish(producer, prefix, None, &events).await?;
        // Through the leader's own connection: if it died, so did the lock, and this fails.
        sqlx::query("UPDATE relay_checkpoint SET position = $1 WHERE name = 'kafka'")
            .bind(last)
            .execute(&mut **leader)
            .await?;
        checkpoint = last;
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
