//! Projecting a stretch of the log without ever halting on one event (ADR 8). An event that
//! cannot be applied — it does not decode, or PostgreSQL refuses its data — is retried a
//! bounded number of times, then *parked* with its error in `parked_events`, and every later
//! event of the same aggregate is parked behind it (applying them would move the aggregate's
//! version past the missing event, which could then never be applied). Every other event is
//! applied as usual. The query API answers reads of a parked aggregate with 503
//! `PROJECTION_FAULTED`; `replay-tools retry` applies its events again once the cause is gone.
//!
//! The live projector, a rebuild and a retry all project through [`project`], so they park
//! the same events for the same reasons.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventlog::RecordedEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projection::{self, checked_schema, AnyEvent, Decoded};
use crate::ReadModelError;

/// Tries of one event that PostgreSQL refuses, before it is parked. Its refusal is almost
/// always deterministic (a value out of range, a constraint); the retries cover a refusal
/// that is not (a deferred-constraint race, say) at a cost of a few milliseconds.
pub const ATTEMPTS: u32 = 3;
/// Pause between those tries: short, since a whole batch refused (a schema change gone
/// wrong) is tried event by event while the batch holds the generation pointer.
const RETRY_PAUSE: Duration = Duration::from_millis(2);

/// A parked event, as `replay-tools parked` lists it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Parked {
    pub position: i64,
    pub aggregate_id: Uuid,
    pub category: String,
    pub version: i64,
    pub event_type: String,
    pub entity_id: Option<Uuid>,
    pub user_id: Option<i64>,
    pub error: String,
    pub attempts: i32,
    pub parked_at: DateTime<Utc>,
}

/// What projecting a stretch of the log did.
#[derive(Debug, Default)]
pub struct Projected {
    /// The events that are in the read models now (applied, or already there), in log order:
    /// their Redis values are to be written.
    pub projected: Vec<Decoded>,
    /// Events that changed the read models.
    pub applied: usize,
    /// The events parked by this call, in log order.
    pub parked: Vec<Parked>,
}

/// Projects `events` (in log order) into `schema` on `conn`, inside the caller's transaction,
/// parking what cannot be applied. An infrastructure failure (the connection, a lock, a
/// missing table) is returned and nothing of the stretch counts: the caller retries it.
pub async fn project(
    conn: &mut PgConnection,
    schema: &str,
    events: Vec<RecordedEvent>,
) -> Result<Projected, ReadModelError> {
    project_decoded(conn, schema, decode_all(events), true).await
}

/// Each event with its decoded domain event (or why it does not decode).
pub fn decode_all(
    events: Vec<RecordedEvent>,
) -> Vec<(RecordedEvent, Result<AnyEvent, ReadModelError>)> {
    events
        .into_iter()
        .map(|event| {
            let domain = projection::decode(&event);
            (event, domain)
        })
        .collect()
}

/// [`project`] for events decoded already (a replay decodes the next page meanwhile).
/// `maybe_parked`: false when the caller knows, inside this transaction, that `schema` has
/// no parked event (the live projector reads that with its locks), which saves a query.
pub async fn project_decoded(
    conn: &mut PgConnection,
    schema: &str,
    events: Vec<(RecordedEvent, Result<AnyEvent, ReadModelError>)>,
    maybe_parked: bool,
) -> Result<Projected, ReadModelError> {
    let schema = checked_schema(schema)?;
    let mut done = Projected::default();
    if events.is_empty() {
        return Ok(done);
    }
    // Aggregates with an event parked earlier: their events queue behind it.
    let mut blocked: HashMap<Uuid, i64> = HashMap::new();
    if maybe_parked {
        let mut ids: Vec<Uuid> = events.iter().map(|(e, _)| e.stream_id).collect();
        ids.sort_unstable();
        ids.dedup();
        blocked = sqlx::query_as(&format!(
            "SELECT aggregate_id, min(position) FROM {schema}.parked_events \
             WHERE aggregate_id = ANY($1) GROUP BY aggregate_id"
        ))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    }

    let mut decoded = Vec::with_capacity(events.len());
    for (event, domain) in events {
        if let Some(first) = blocked.get(&event.stream_id) {
            done.parked.push(behind(&event, *first));
            continue;
        }
        match domain {
            Ok(domain) => decoded.push((event, domain)),
            // Decoding is deterministic: a retry would fail the same way.
            Err(e) => {
                blocked.insert(event.stream_id, event.position);
                done.parked.push(parked(&event, &e, 1));
            }
        }
    }
    apply_isolating(conn, schema, decoded, &mut blocked, &mut done).await?;
    done.parked.sort_by_key(|p| p.position);
    done.projected.sort_by_key(|(e, _)| e.position);
    record(conn, schema, &done.parked).await?;
    Ok(done)
}

/// Applies `batch` in one go; when PostgreSQL refuses it for its data, halves it (in order)
/// until the refused events are found, and parks each after [`ATTEMPTS`] tries. Each try runs
/// under a savepoint, so a refusal undoes only its own writes.
fn apply_isolating<'a>(
    conn: &'a mut PgConnection,
    schema: &'a str,
    batch: Vec<Decoded>,
    blocked: &'a mut HashMap<Uuid, i64>,
    done: &'a mut Projected,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ReadModelError>> + Send + 'a>> {
    Box::pin(async move {
        let (batch, held): (Vec<Decoded>, Vec<Decoded>) =
            batch.into_iter().partition(|(e, _)| runs(blocked, e));
        for (event, _) in held {
            let first = blocked
                .get(&event.stream_id)
                .copied()
                .unwrap_or(event.position);
            done.parked.push(behind(&event, first));
        }
        if batch.is_empty() {
            return Ok(());
        }
        let mut tries = 0;
        loop {
            tries += 1;
            match under_savepoint(conn, schema, &batch).await {
                Ok(applied) => {
                    done.applied += applied.applied;
                    done.projected.extend(batch);
                    return Ok(());
                }
                Err(e) if !e.is_event_fault() => return Err(e),
                Err(e) if batch.len() == 1 && tries >= ATTEMPTS => {
                    let (event, _) = &batch[0];
                    blocked.insert(event.stream_id, event.position);
                    done.parked.push(parked(event, &e, tries));
                    return Ok(());
                }
                Err(_) if batch.len() == 1 => tokio::time::sleep(RETRY_PAUSE).await,
                Err(e) => {
                    tracing::warn!(
                        error = %e, events = batch.len(), first = batch[0].0.position,
                        "PostgreSQL refused a batch for its data; halving it to find the event"
                    );
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    apply_isolating(conn, schema, first, blocked, done).await?;
                    return apply_isolating(conn, schema, second, blocked, done).await;
                }
            }
        }
    })
}

async fn under_savepoint(
    conn: &mut PgConnection,
    schema: &str,
    batch: &[Decoded],
) -> Result<projection::Applied, ReadModelError> {
    sqlx::query("SAVEPOINT project").execute(&mut *conn).await?;
    match projection::apply_batch(conn, schema, batch).await {
        Ok(applied) => {
            sqlx::query("RELEASE SAVEPOINT project")
                .execute(&mut *conn)
                .await?;
            Ok(applied)
        }
        Err(e) => {
            sqlx::query("ROLLBACK TO SAVEPOINT project")
                .execute(&mut *conn)
                .await?;
            sqlx::query("RELEASE SAVEPOINT project")
                .execute(&mut *conn)
                .await?;
            Err(e)
        }
    }
}

/// Whether `event` may be applied: no earlier event of its aggregate is parked.
fn runs(blocked: &HashMap<Uuid, i64>, event: &RecordedEvent) -> bool {
    blocked
        .get(&event.stream_id)
        .is_none_or(|first| event.position < *first)
}

fn parked(event: &RecordedEvent, error: &ReadModelError, attempts: u32) -> Parked {
    Parked {
        position: event.position,
        aggregate_id: event.stream_id,
        category: event.category.clone(),
        version: event.version,
        event_type: event.event_type.clone(),
        entity_id: ["couponId", "orderId"]
            .iter()
            .find_map(|field| event.data.get(field)?.as_str()?.parse().ok()),
        user_id: event.data.get("userId").and_then(serde_json::Value::as_i64),
        error: error.to_string(),
        attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
        parked_at: Utc::now(),
    }
}

fn behind(event: &RecordedEvent, first: i64) -> Parked {
    let error = ReadModelError::Behind(first);
    Parked {
        attempts: 0,
        ..parked(event, &error, 0)
    }
}

async fn record(
    conn: &mut PgConnection,
    schema: &str,
    parked: &[Parked],
) -> Result<(), ReadModelError> {
    if parked.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "INSERT INTO {schema}.parked_events (position, aggregate_id, category, version, event_type, \
           entity_id, user_id, error, attempts, parked_at) \
         SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], \
           $6::uuid[], $7::bigint[], $8::text[], $9::integer[], $10::timestamptz[]) \
         ON CONFLICT (position) DO UPDATE SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, \
           parked_at = EXCLUDED.parked_at"
    ))
    .bind(parked.iter().map(|p| p.position).collect::<Vec<_>>())
    .bind(parked.iter().map(|p| p.aggregate_id).collect::<Vec<_>>())
    .bind(parked.iter().map(|p| p.category.as_str()).collect::<Vec<_>>())
    .bind(parked.iter().map(|p| p.version).collect::<Vec<_>>())
    .bind(parked.iter().map(|p| p.event_type.as_str()).collect::<Vec<_>>())
    .bind(parked.iter().map(|p| p.entity_id).collect::<Vec<_>>())
    .bind(parked.iter().map(|p| p.user_id).collect::<Vec<_>>())
    .bind(parked.iter().map(|p| p.error.as_str()).collect::<Vec<_>>())
    .bind(parked.iter().map(|p| p.attempts).collect::<Vec<_>>())
    .bind(parked.iter().map(|p| p.parked_at).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Every parked event of `schema`, in log order.
pub async fn list(pool: &sqlx::PgPool, schema: &str) -> Result<Vec<Parked>, ReadModelError> {
    let schema = checked_schema(schema)?;
    Ok(sqlx::query_as(&format!(
        "SELECT position, aggregate_id, category, version, event_type, entity_id, user_id, error, \
           attempts, parked_at FROM {schema}.parked_events ORDER BY position"
    ))
    .fetch_all(pool)
    .await?)
}

/// How many events are parked in `schema`.
pub async fn count(pool: &sqlx::PgPool, schema: &str) -> Result<i64, ReadModelError> {
    let schema = checked_schema(schema)?;
    Ok(
        sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.parked_events"))
            .fetch_one(pool)
            .await?,
    )
}

/// Takes the first `limit` parked events (in log order) of `aggregates` — of every aggregate
/// when `None` — out of `schema`, inside the caller's transaction; returns their positions in
/// log order. A retry projects them again through [`project`], which parks again what still
/// fails.
pub async fn unpark(
    conn: &mut PgConnection,
    schema: &str,
    aggregates: Option<&HashSet<Uuid>>,
    limit: i64,
) -> Result<Vec<i64>, ReadModelError> {
    let schema = checked_schema(schema)?;
    let ids: Option<Vec<Uuid>> = aggregates.map(|a| a.iter().copied().collect());
    let mut positions: Vec<i64> = sqlx::query_scalar(&format!(
        "DELETE FROM {schema}.parked_events WHERE position IN \
           (SELECT position FROM {schema}.parked_events \
            WHERE $1::uuid[] IS NULL OR aggregate_id = ANY($1) ORDER BY position LIMIT $2) \
         RETURNING position"
    ))
    .bind(ids)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    positions.sort_unstable();
    Ok(positions)
}

/// Which aggregates of a generation are faulted, as the query API checks on every read: each
/// with its first parked position. Small (one entry per faulted aggregate, however many of
/// its events queue behind); reads by a coupon, an order or a user look further only when it
/// is not empty ([`entity_fault`], [`user_fault`]).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The generation these faults belong to.
    pub generation: i64,
    /// The watermark they were read with: every event parked at or below it is here.
    pub as_of: i64,
    aggregates: HashMap<Uuid, i64>,
}

impl Faults {
    /// The faulted aggregates of `live` and its watermark, read in one statement (one
    /// snapshot).
    pub async fn load(
        pool: &sqlx::PgPool,
        live: &crate::generation::Generation,
    ) -> Result<Faults, ReadModelError> {
        let schema = checked_schema(&live.schema)?;
        let rows: Vec<(i64, Option<Uuid>, Option<i64>)> = sqlx::query_as(&format!(
            "SELECT w.position, p.aggregate_id, p.first FROM {schema}.projection_watermark w \
             LEFT JOIN (SELECT aggregate_id, min(position) AS first FROM {schema}.parked_events \
                        GROUP BY aggregate_id) p ON true"
        ))
        .fetch_all(pool)
        .await?;
        let mut faults = Faults {
            generation: live.number,
            ..Faults::default()
        };
        for (as_of, aggregate, first) in rows {
            faults.as_of = as_of;
            if let (Some(aggregate), Some(first)) = (aggregate, first) {
                faults.aggregates.insert(aggregate, first);
            }
        }
        Ok(faults)
    }

    /// The first parked position of an aggregate, if it has one.
    pub fn aggregate(&self, id: Uuid) -> Option<i64> {
        self.aggregates.get(&id).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.aggregates.is_empty()
    }
}

/// The first parked position of the aggregate a coupon or an order lives in, found through
/// the log's own entity index (the read models may lack the entity: its creating event is the
/// one parked).
pub async fn entity_fault(
    pool: &sqlx::PgPool,
    faults: &Faults,
    entity: Uuid,
    category: &str,
) -> Result<Option<i64>, ReadModelError> {
    if faults.is_empty() {
        return Ok(None);
    }
    let stream: Option<Uuid> = sqlx::query_scalar(
        "SELECT stream_id FROM public.entity_streams WHERE entity_id = $1 AND category = $2",
    )
    .bind(entity)
    .bind(category)
    .fetch_optional(pool)
    .await?;
    Ok(stream.and_then(|s| faults.aggregate(s)))
}

/// The first parked position of an event of `category` about `user` (as its data names it),
/// for the lists of a user's coupons or orders.
pub async fn user_fault(
    pool: &sqlx::PgPool,
    faults: &Faults,
    schema: &str,
    category: &str,
    user: i64,
) -> Result<Option<i64>, ReadModelError> {
    if faults.is_empty() {
        return Ok(None);
    }
    let schema = checked_schema(schema)?;
    Ok(sqlx::query_scalar(&format!(
        "SELECT min(position) FROM {schema}.parked_events WHERE category = $1 AND user_id = $2"
    ))
    .bind(category)
    .bind(user)
    .fetch_one(pool)
    .await?)
}
