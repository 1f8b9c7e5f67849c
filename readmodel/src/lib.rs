//! The read models the query API serves: one PostgreSQL schema per [`generation`] (tables in
//! `schema.sql`), the [`projection`] that folds events into them, the guarded Redis [`hot`]
//! values, and the [`watermark`] below which every event is projected. A library, so the
//! projector, the query API and replay-tools all run the same code: a rebuild projects exactly
//! what the live projector does, and the query API reads the keys the projector writes.

pub mod generation;
pub mod hot;
pub mod parked;
pub mod projection;
pub mod queries;
pub mod watermark;

#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("not a read-model schema name: {0:?}")]
    BadSchemaName(String),
    #[error("unknown aggregate category {0}")]
    UnknownCategory(String),
    #[error("undecodable event: {0}")]
    Undecodable(String),
    #[error("no read-model generation is recorded for this deployment")]
    NoGeneration,
    /// An event queued behind an earlier parked event of its aggregate.
    #[error("held behind the parked event at position {0} of the same aggregate")]
    Behind(i64),
}

impl ReadModelError {
    /// True when the event itself is at fault: it does not decode, or PostgreSQL refused its
    /// data (SQLSTATE classes 22 data exception, 23 integrity violation, 54 program limit).
    /// Trying the same event again cannot help until something changes, so it is parked and
    /// the log goes on. False for the infrastructure (a lost connection, a lock timeout, a
    /// missing table), which is retried: parking would drop events that are fine.
    pub fn is_event_fault(&self) -> bool {
        match self {
            ReadModelError::Undecodable(_) | ReadModelError::UnknownCategory(_) => true,
            ReadModelError::Database(sqlx::Error::Database(e)) => e
                .code()
                .is_some_and(|code| ["22", "23", "54"].iter().any(|c| code.starts_with(c))),
            ReadModelError::Database(sqlx::Error::Encode(_)) => true,
            _ => false,
        }
    }
}
