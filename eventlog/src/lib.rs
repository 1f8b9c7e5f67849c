//! The PostgreSQL event log, the source of truth: appends with optimistic concurrency per
//! stream (several streams in one transaction), a global position per event with an ordered
//! read that never skips an event committed late, idempotency keys and entity links written
//! in the same transaction, snapshots, and stream loads as of a position.
//!
//! Shared by the command API (writes), the relay, the projector and the replay tools (reads),
//! with the two things those followers share: waking on appends ([`appends`]) and leading by
//! an advisory lock ([`leader`]).

pub mod appends;
pub mod leader;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, Row, Transaction};
use thiserror::Error;
use uuid::Uuid;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Error)]
pub enum StoreError {
    /// Another writer moved the stream first: reload and decide again.
    #[error("stream {stream_id} was changed by another writer")]
    Conflict { stream_id: Uuid },
    /// The idempotency key was recorded by another request first: look it up and answer from it.
    #[error("idempotency key {key} was recorded concurrently")]
    IdempotencyKeyTaken { key: String },
    #[error("entity {entity_id} already belongs to a stream")]
    EntityTaken { entity_id: Uuid },
    /// The database failed or is unreachable.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// COMMIT itself failed: whether the batch is in the log is not known until it is read
    /// again. Never a refusal of the batch's data, never a reason to decide again.
    #[error("commit: {0}")]
    Commit(sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// True when PostgreSQL answered a statement of the batch (before COMMIT) and refused its
    /// data — SQLSTATE class 22 (data exception), 23 (integrity), 42 (a statement it cannot
    /// take) or 54 (a limit exceeded) — so another batch may well go through. A connection
    /// failure, a shutdown, a timeout or a failed COMMIT is not: every batch alike.
    pub fn is_refusal(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => e
                .code()
                .is_some_and(|code| matches!(code.get(..2), Some("22" | "23" | "42" | "54"))),
            _ => false,
        }
    }

    /// True when deciding again against fresh state may succeed: the three write races, and
    /// PostgreSQL aborting the transaction for a serialization failure or a deadlock (40001,
    /// 40P01) with another process's commit.
    pub fn is_race(&self) -> bool {
        match self {
            StoreError::Conflict { .. }
            | StoreError::IdempotencyKeyTaken { .. }
            | StoreError::EntityTaken { .. } => true,
            StoreError::Database(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("40001" | "40P01"))
            }
            _ => false,
        }
    }
}

/// An event to append: its id, public type, schema version, data and metadata.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i16,
    pub data: Value,
    pub metadata: Value,
}

/// Events for one stream, valid only if the stream is still at `expected_version`.
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub stream_id: Uuid,
    pub category: String,
    pub expected_version: i64,
    pub events: Vec<NewEvent>,
}

/// The stored answer to a request carrying an idempotency key.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub principal: String,
    pub key: String,
    pub request_hash: Vec<u8>,
    pub status: i16,
    pub body: Value,
    /// For a success: the stream and the version its last event got.
    pub stream: Option<(Uuid, i64)>,
}

/// An entity (coupon, order) created inside a stream.
#[derive(Debug, Clone)]
pub struct EntityLink {
    pub entity_id: Uuid,
    pub stream_id: Uuid,
    pub category: String,
}

/// Everything one transaction writes.
#[derive(Debug, Clone, Default)]
pub struct AppendBatch {
    pub streams: Vec<StreamAppend>,
    pub idempotency: Vec<IdempotencyRecord>,
    pub links: Vec<EntityLink>,
    /// Streams that must still be at these versions (0: not existing) for the batch to
    /// commit, though it appends nothing to them: refusals decided on them and stored under
    /// idempotency keys. One that moved is a [`StoreError::Conflict`].
    pub guards: Vec<(Uuid, i64)>,
}

/// Where a stream's appended events landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub stream_id: Uuid,
    /// Position of the stream's first appended event; the others follow contiguously.
    pub first_position: i64,
    /// The stream's version after the append.
    pub version: i64,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub position: i64,
    pub event_id: Uuid,
    pub stream_id: Uuid,
    pub category: String,
    pub version: i64,
    pub event_type: String,
    pub schema_version: i16,
    pub data: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

/// A stored answer found for an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnswer {
    pub key: String,
    pub request_hash: Vec<u8>,
    pub status: i16,
    pub body: Value,
    pub stream: Option<(Uuid, i64)>,
    /// The position of the answered command's last event, for a success.
    pub position: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub version: i64,
    pub state: Value,
}

const EVENT_COLUMNS: &str = "position, event_id, stream_id, category, version, event_type, \
                             schema_version, data, metadata, recorded_at";

fn recorded(row: &sqlx::postgres::PgRow) -> Result<RecordedEvent, sqlx::Error> {
    Ok(RecordedEvent {
        position: row.try_get("position")?,
        event_id: row.try_get("event_id")?,
        stream_id: row.try_get("stream_id")?,
        category: row.try_get("category")?,
        version: row.try_get("version")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        data: row.try_get("data")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}

/// The event log over one PostgreSQL pool.
#[derive(Debug, Clone)]
pub struct EventLog {
    pool: PgPool,
}

impl EventLog {
    /// Connects with a pool of at most `max_connections`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the schema migrations (idempotent; safe with several processes starting).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// The migrations, for `#[sqlx::test(migrator = …)]` in other crates.
    pub fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }

    /// Appends a batch in one transaction and commits it; counts the events by type
    /// (`events_appended_total`) and times the transaction (`eventlog_append_duration_seconds`).
    pub async fn append(&self, batch: &AppendBatch) -> Result<Vec<Appended>, StoreError> {
        let started = std::time::Instant::now();
        let mut tx = self.pool.begin().await?;
        let appended = append_in(&mut tx, batch).await?;
        tx.commit().await.map_err(StoreError::Commit)?;
        metrics::histogram!("eventlog_append_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        count_appended(batch);
        Ok(appended)
    }

    /// Events after `after` in position order, at most `limit`. Never skips: positions become
    /// visible in order (see [`append_in`]).
    pub async fn read_all(&self, after: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(recorded).collect::<Result<_, _>>()?)
    }

    /// The events at `positions`, in position order (those that exist).
    pub async fn read_positions(
        &self,
        positions: &[i64],
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE position = ANY($1) ORDER BY position"
        ))
        .bind(positions)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(recorded).collect::<Result<_, _>>()?)
    }

    /// A stream's events after `after_version`, optionally only those at or below
    /// `as_of_position` (the stream as it was then).
    pub async fn read_stream(
        &self,
        stream_id: Uuid,
        after_version: i64,
        as_of_position: Option<i64>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2 \
             AND position <= $3 ORDER BY version"
        ))
        .bind(stream_id)
        .bind(after_version)
        .bind(as_of_position.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(recorded).collect::<Result<_, _>>()?)
    }

    /// The highest committed position (0 for an empty log).
    pub async fn head(&self) -> Result<i64, StoreError> {
        let head: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(head.unwrap_or(0))
    }

    /// The stream an entity (coupon, order) lives in, with the stream's category.
    pub async fn entity_stream(
        &self,
        entity_id: Uuid,
    ) -> Result<Option<(Uuid, String)>, StoreError> {
        let row =
            sqlx::query("SELECT stream_id, category FROM entity_streams WHERE entity_id = $1")
                .bind(entity_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some(row) => Some((row.try_get("stream_id")?, row.try_get("category")?)),
            None => None,
        })
    }

    /// Stored answers for any of `keys` of `principal`.
    pub async fn idempotent_answers(
        &self,
        principal: &str,
        keys: &[String],
    ) -> Result<Vec<StoredAnswer>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.key, k.request_hash, k.status, k.body, k.stream_id, k.version, e.position \
             FROM idempotency_keys k \
             LEFT JOIN events e ON e.stream_id = k.stream_id AND e.version = k.version \
             WHERE k.principal = $1 AND k.key = ANY($2)",
        )
        .bind(principal)
        .bind(keys)
        .fetch_all(&self.pool)
        .await?;
        let mut answers = Vec::with_capacity(rows.len());
        for row in rows {
            let stream_id: Option<Uuid> = row.try_get("stream_id")?;
            let version: Option<i64> = row.try_get("version")?;
            answers.push(StoredAnswer {
                key: row.try_get("key")?,
                request_hash: row.try_get("request_hash")?,
                status: row.try_get("status")?,
                body: row.try_get("body")?,
                stream: stream_id.zip(version),
                position: row.try_get("position")?,
            });
        }
        Ok(answers)
    }

    /// Deletes at most `limit` stored answers of idempotency keys older than `retention`
    /// (oldest first); returns how many. A small batch per call: rows are locked only for the
    /// moment of their own delete, so it never holds up an append.
    pub async fn delete_expired_keys(
        &self,
        retention: std::time::Duration,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let seconds = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        let deleted = sqlx::query(
            "DELETE FROM idempotency_keys WHERE (principal, key) IN \
               (SELECT principal, key FROM idempotency_keys \
                WHERE created_at < now() - make_interval(secs => $1) \
                ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(seconds as f64)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected())
    }

    /// The category of a stream, if it exists.
    pub async fn stream_category(&self, stream_id: Uuid) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT category FROM streams WHERE stream_id = $1")
                .bind(stream_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The version of a stream (0 when it does not exist).
    pub async fn stream_version(&self, stream_id: Uuid) -> Result<i64, StoreError> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1")
                .bind(stream_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(version.unwrap_or(0))
    }

    /// The latest snapshot of a stream in `state_format`, if any.
    pub async fn load_snapshot(
        &self,
        stream_id: Uuid,
        state_format: i32,
    ) -> Result<Option<Snapshot>, StoreError> {
        let row = sqlx::query(
            "SELECT version, state FROM snapshots WHERE stream_id = $1 AND state_format = $2",
        )
        .bind(stream_id)
        .bind(state_format)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => Some(Snapshot {
                version: row.try_get("version")?,
                state: row.try_get("state")?,
            }),
            None => None,
        })
    }

    /// Cold loads of many streams in two queries: per stream, its snapshot in `state_format`
    /// (if any) and the events after it, in version order. Streams with neither are absent.
    pub async fn load_streams(
        &self,
        stream_ids: &[Uuid],
        state_format: i32,
    ) -> Result<HashMap<Uuid, (Option<Snapshot>, Vec<RecordedEvent>)>, StoreError> {
        let mut loaded: HashMap<Uuid, (Option<Snapshot>, Vec<RecordedEvent>)> = HashMap::new();
        let rows = sqlx::query(
            "SELECT stream_id, version, state FROM snapshots \
             WHERE stream_id = ANY($1) AND state_format = $2",
        )
        .bind(stream_ids)
        .bind(state_format)
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let snapshot = Snapshot {
                version: row.try_get("version")?,
                state: row.try_get("state")?,
            };
            loaded.entry(row.try_get("stream_id")?).or_default().0 = Some(snapshot);
        }
        let after: Vec<i64> = stream_ids
            .iter()
            .map(|id| {
                loaded
                    .get(id)
                    .and_then(|(s, _)| s.as_ref())
                    .map_or(0, |s| s.version)
            })
            .collect();
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events JOIN unnest($1::uuid[], $2::bigint[]) AS t(id, after) \
               ON stream_id = t.id AND version > t.after ORDER BY stream_id, version"
        ))
        .bind(stream_ids)
        .bind(&after)
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let event = recorded(row)?;
            loaded.entry(event.stream_id).or_default().1.push(event);
        }
        Ok(loaded)
    }

    /// Stores a snapshot unless a newer one is there already.
    pub async fn save_snapshot(
        &self,
        stream_id: Uuid,
        category: &str,
        state_format: i32,
        snapshot: &Snapshot,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO snapshots (stream_id, category, version, state_format, state) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version, \
               state_format = EXCLUDED.state_format, state = EXCLUDED.state, taken_at = now() \
             WHERE snapshots.version < EXCLUDED.version OR snapshots.state_format <> EXCLUDED.state_format",
        )
        .bind(stream_id)
        .bind(category)
        .bind(snapshot.version)
        .bind(state_format)
        .bind(&snapshot.state)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Appends a batch inside a transaction the caller commits.
///
/// Order of work, and why:
/// 1. Move every stream's version with a compare-and-set (`UPDATE … WHERE version = expected`,
///    or insert a new stream). A stream that moved is a [`StoreError::Conflict`].
/// 2. Record idempotency keys and entity links; a key or entity taken concurrently fails the
///    batch.
/// 3. Take the log head's row lock and reserve positions, then insert the events. The lock is
///    held until the transaction ends, so no transaction can take a higher position before a
///    lower one is committed (or rolled back): positions become visible strictly in order, and
///    a reader following `position > last` never skips one. Taken last, it is held only for
///    the inserts and the commit; a batch per transaction keeps it cheap.
pub async fn append_in(
    tx: &mut Transaction<'_, Postgres>,
    batch: &AppendBatch,
) -> Result<Vec<Appended>, StoreError> {
    let conn: &mut PgConnection = tx;
    check_guards(conn, &batch.guards).await?;
    move_stream_versions(conn, &batch.streams).await?;
    record_idempotency(conn, &batch.idempotency).await?;
    record_links(conn, &batch.links).await?;

    let count: i64 = batch.streams.iter().map(|s| s.events.len() as i64).sum();
    if count == 0 {
        return Ok(vec![]);
    }
    // The notification (delivered at commit) wakes the relay and the projector; sent from
    // this statement's RETURNING, it costs no round trip of its own.
    let last: i64 = sqlx::query_scalar(&format!(
        "UPDATE log_head SET position = position + $1 \
         RETURNING position, pg_notify('{}', position::text)",
        appends::CHANNEL
    ))
    .bind(count)
    .fetch_one(&mut *conn)
    .await?;
    let mut position = last - count;

    let n = count as usize;
    let (mut positions, mut event_ids, mut stream_ids) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut categories, mut versions, mut types) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut schema_versions, mut data, mut metadata) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut appended = Vec::with_capacity(batch.streams.len());
    for stream in batch.streams.iter().filter(|s| !s.events.is_empty()) {
        appended.push(Appended {
            stream_id: stream.stream_id,
            first_position: position + 1,
            version: stream.expected_version + stream.events.len() as i64,
        });
        for (i, event) in stream.events.iter().enumerate() {
            position += 1;
            positions.push(position);
            event_ids.push(event.event_id);
            stream_ids.push(stream.stream_id);
            categories.push(stream.category.as_str());
            versions.push(stream.expected_version + 1 + i as i64);
            types.push(event.event_type.as_str());
            schema_versions.push(event.schema_version);
            data.push(&event.data);
            metadata.push(&event.metadata);
        }
    }
    sqlx::query(
        "INSERT INTO events (position, event_id, stream_id, category, version, event_type, \
                             schema_version, data, metadata) \
         SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[], \
                              $6::text[], $7::smallint[], $8::jsonb[], $9::jsonb[])",
    )
    .bind(&positions)
    .bind(&event_ids)
    .bind(&stream_ids)
    .bind(&categories)
    .bind(&versions)
    .bind(&types)
    .bind(&schema_versions)
    .bind(&data)
    .bind(&metadata)
    .execute(&mut *conn)
    .await
    .map_err(translate)?;
    Ok(appended)
}

/// A driver error of the events insert in the store's own terms: a version of a stream taken
/// already (another writer got there first, past the streams table's check) is a
/// [`StoreError::Conflict`] — a race to decide again on — not a database failure.
fn translate(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() && db.constraint() == Some("events_stream_id_version_key") {
            // "Key (stream_id, version)=(<uuid>, <n>) already exists."
            let stream_id = db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|pg| pg.detail())
                .and_then(|detail| detail.split(['(', ',']).nth(3))
                .and_then(|id| id.trim().parse().ok())
                .unwrap_or_default();
            return StoreError::Conflict { stream_id };
        }
    }
    StoreError::Database(e)
}

async fn check_guards(conn: &mut PgConnection, guards: &[(Uuid, i64)]) -> Result<(), StoreError> {
    if guards.is_empty() {
        return Ok(());
    }
    let (ids, versions): (Vec<Uuid>, Vec<i64>) = guards.iter().copied().unzip();
    let moved: Option<Uuid> = sqlx::query_scalar(
        "SELECT g.id FROM unnest($1::uuid[], $2::bigint[]) AS g(id, version) \
         LEFT JOIN streams s ON s.stream_id = g.id \
         WHERE COALESCE(s.version, 0) <> g.version LIMIT 1",
    )
    .bind(&ids)
    .bind(&versions)
    .fetch_optional(&mut *conn)
    .await?;
    match moved {
        Some(stream_id) => Err(StoreError::Conflict { stream_id }),
        None => Ok(()),
    }
}

async fn move_stream_versions(
    conn: &mut PgConnection,
    streams: &[StreamAppend],
) -> Result<(), StoreError> {
    let (new, mut existing): (Vec<&StreamAppend>, Vec<&StreamAppend>) = streams
        .iter()
        .filter(|s| !s.events.is_empty())
        .partition(|s| s.expected_version == 0);
    // In one order for every committer, so two processes' merged rounds touching the same
    // streams queue behind each other instead of deadlocking.
    existing.sort_unstable_by_key(|s| s.stream_id);
    if !new.is_empty() {
        let ids: Vec<Uuid> = new.iter().map(|s| s.stream_id).collect();
        let categories: Vec<&str> = new.iter().map(|s| s.category.as_str()).collect();
        let versions: Vec<i64> = new.iter().map(|s| s.events.len() as i64).collect();
        let created: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO streams (stream_id, category, version) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[]) \
             ON CONFLICT (stream_id) DO NOTHING RETURNING stream_id",
        )
        .bind(&ids)
        .bind(&categories)
        .bind(&versions)
        .fetch_all(&mut *conn)
        .await?;
        if let Some(stream_id) = ids.iter().find(|id| !created.contains(id)) {
            return Err(StoreError::Conflict {
                stream_id: *stream_id,
            });
        }
    }
    if !existing.is_empty() {
        let ids: Vec<Uuid> = existing.iter().map(|s| s.stream_id).collect();
        let expected: Vec<i64> = existing.iter().map(|s| s.expected_version).collect();
        let next: Vec<i64> = existing
            .iter()
            .map(|s| s.expected_version + s.events.len() as i64)
            .collect();
        let moved: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE streams s SET version = u.next \
             FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS u(id, expected, next) \
             WHERE s.stream_id = u.id AND s.version = u.expected RETURNING s.stream_id",
        )
        .bind(&ids)
        .bind(&expected)
        .bind(&next)
        .fetch_all(&mut *conn)
        .await?;
        if let Some(stream_id) = ids.iter().find(|id| !moved.contains(id)) {
            return Err(StoreError::Conflict {
                stream_id: *stream_id,
            });
        }
    }
    Ok(())
}

async fn record_idempotency(
    conn: &mut PgConnection,
    records: &[IdempotencyRecord],
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let principals: Vec<&str> = records.iter().map(|r| r.principal.as_str()).collect();
    let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    let hashes: Vec<&[u8]> = records.iter().map(|r| r.request_hash.as_slice()).collect();
    let statuses: Vec<i16> = records.iter().map(|r| r.status).collect();
    let bodies: Vec<&Value> = records.iter().map(|r| &r.body).collect();
    let streams: Vec<Option<Uuid>> = records.iter().map(|r| r.stream.map(|s| s.0)).collect();
    let versions: Vec<Option<i64>> = records.iter().map(|r| r.stream.map(|s| s.1)).collect();
    // One (principal, key) twice in a batch (two aggregates' writers given the same key at
    // once, their batches merged): the insert would keep one and skip the other silently.
    let mut seen = std::collections::HashSet::with_capacity(records.len());
    if let Some(twice) = records
        .iter()
        .find(|r| !seen.insert((r.principal.as_str(), r.key.as_str())))
    {
        return Err(StoreError::IdempotencyKeyTaken {
            key: twice.key.clone(),
        });
    }
    let inserted: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO idempotency_keys (principal, key, request_hash, status, body, stream_id, version) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::smallint[], $5::jsonb[], \
                              $6::uuid[], $7::bigint[]) \
         ON CONFLICT (principal, key) DO NOTHING RETURNING principal, key",
    )
    .bind(&principals)
    .bind(&keys)
    .bind(&hashes)
    .bind(&statuses)
    .bind(&bodies)
    .bind(&streams)
    .bind(&versions)
    .fetch_all(&mut *conn)
    .await?;
    if inserted.len() < records.len() {
        let inserted: std::collections::HashSet<(&str, &str)> = inserted
            .iter()
            .map(|(p, k)| (p.as_str(), k.as_str()))
            .collect();
        if let Some(taken) = records
            .iter()
            .find(|r| !inserted.contains(&(r.principal.as_str(), r.key.as_str())))
        {
            return Err(StoreError::IdempotencyKeyTaken {
                key: taken.key.clone(),
            });
        }
    }
    Ok(())
}

async fn record_links(conn: &mut PgConnection, links: &[EntityLink]) -> Result<(), StoreError> {
    if links.is_empty() {
        return Ok(());
    }
    let entities: Vec<Uuid> = links.iter().map(|l| l.entity_id).collect();
    let streams: Vec<Uuid> = links.iter().map(|l| l.stream_id).collect();
    let categories: Vec<&str> = links.iter().map(|l| l.category.as_str()).collect();
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO entity_streams (entity_id, stream_id, category) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[]) \
         ON CONFLICT (entity_id) DO NOTHING RETURNING entity_id",
    )
    .bind(&entities)
    .bind(&streams)
    .bind(&categories)
    .fetch_all(&mut *conn)
    .await?;
    if let Some(entity_id) = entities.iter().find(|e| !inserted.contains(e)) {
        return Err(StoreError::EntityTaken {
            entity_id: *entity_id,
        });
    }
    Ok(())
}

/// `events_appended_total{type}` for a committed batch: one increment per event type.
fn count_appended(batch: &AppendBatch) {
    let mut counts: Vec<(&str, u64)> = Vec::new();
    for event in batch.streams.iter().flat_map(|s| &s.events) {
        match counts.iter_mut().find(|(t, _)| *t == event.event_type) {
            Some((_, n)) => *n += 1,
            None => counts.push((&event.event_type, 1)),
        }
    }
    for (event_type, n) in counts {
        metrics::counter!("events_appended_total", "type" => event_type.to_owned()).increment(n);
    }
}

/// A follower's distance behind the log head as a gauge (`relay_lag_events`,
/// `projector_lag_events`): every second, the head minus the follower's stored position
/// (`position`: the relay's checkpoint, the projections' watermark), read from the database
/// and not from the follower's loop, so a follower that fails or stalls shows its lag growing
/// instead of its last value. Ends when `stop` turns true. A failed sample is logged once and
/// retried the next second; the gauge keeps its value meanwhile.
pub async fn sample_lag<F, Fut>(
    log: EventLog,
    gauge: &'static str,
    mut position: F,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<i64, String>>,
{
    let lag = metrics::gauge!(gauge);
    let mut failing = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let sample = async {
            (
                log.head().await.map_err(|e| e.to_string()),
                position().await,
            )
        };
        // A database that does not answer holds a sample for seconds: never the stop.
        let sampled = tokio::select! {
            sampled = sample => sampled,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        match sampled {
            (Ok(head), Ok(at)) => {
                lag.set((head - at).max(0) as f64);
                if failing {
                    tracing::info!(gauge, "lag sampling recovered");
                    failing = false;
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                if !failing {
                    tracing::warn!(gauge, error = %e, "cannot sample the lag; retrying every second");
                    failing = true;
                }
            }
        }
    }
}
