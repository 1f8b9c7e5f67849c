//! The PostgreSQL event log, the source of truth: appends with optimistic concurrency per
//! stream (several streams in one transaction), a global position per event with an ordered
//! read that never skips an event committed late, idempotency keys and entity links written
//! in the same transaction, snapshots, and stream loads as of a position.
//!
//! Shared by the command API (writes), the relay, the projector and the replay tools (reads),
//! with the two things those followers share: waking on appends ([`appends`]) and leading by
//! an advisory lock ([`leader`]).

mod append;
pub mod appends;
pub mod deadlines;
mod idempotency;
mod lag;
pub mod leader;
mod snapshot;

pub use append::append_in;
pub use idempotency::StoredAnswer;
pub use lag::sample_lag;
pub use snapshot::Snapshot;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;
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
    pub category: &'static str,
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

/// A point in the log's history: a position, or a time (the events recorded by then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    Position(i64),
    Time(DateTime<Utc>),
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

impl RecordedEvent {
    /// The event as its wire form says it (type, version, data), for a decoder to upcast and
    /// read. A version no decoder knows (the column is signed) is refused by the decoder.
    pub fn wire(&self) -> domain::wire::WireEvent {
        domain::wire::WireEvent {
            event_type: self.event_type.clone(),
            version: self.schema_version as u16,
            data: self.data.clone(),
        }
    }
}

pub(crate) const EVENT_COLUMNS: &str =
    "position, event_id, stream_id, category, version, event_type, \
                             schema_version, data, metadata, recorded_at";

pub(crate) fn recorded(row: &sqlx::postgres::PgRow) -> Result<RecordedEvent, sqlx::Error> {
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
        // The command API's accounts table has migrations of its own in the same bookkeeping
        // table (versions 4 and 5; the log's own are 1–3 and 6 on): they are not this log's, and not missing from it.
        let mut migrator = sqlx::migrate::Migrator {
            migrations: MIGRATOR.migrations.clone(),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// The migrations, for `#[sqlx::test(migrator = …)]` in other crates.
    pub fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
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

    /// A stream's events as of a log position or a time (recorded at or before it), in
    /// version order, at most `limit` (the caller refuses a longer stream).
    pub async fn read_stream_as_of(
        &self,
        stream_id: Uuid,
        as_of: AsOf,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let (position, at) = match as_of {
            AsOf::Position(p) => (p, DateTime::<Utc>::MAX_UTC),
            AsOf::Time(t) => (i64::MAX, t),
        };
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND position <= $2 \
             AND recorded_at <= $3 ORDER BY version LIMIT $4"
        ))
        .bind(stream_id)
        .bind(position)
        .bind(at)
        .bind(limit)
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
}
