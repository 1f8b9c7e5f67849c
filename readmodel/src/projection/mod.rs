//! Applying events to the PostgreSQL read models. Idempotent: an event whose aggregate version
//! is not above the version the read models already reflect is skipped, so redelivery and
//! replay change nothing. Every write of a batch commits in the caller's transaction, with
//! the watermark it moves.
//!
//! A batch is first folded in memory into the final state of each row it touches
//! ([`Changes`]), then written with one set-based statement per table and kind of change
//! (`unnest` arrays), so a batch of 10,000 events costs about a dozen round trips, not
//! 20,000. The live projector and replay-tools' rebuild run this same code.

use std::collections::HashMap;

use eventlog::RecordedEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ReadModelError;

pub mod as_of;
mod fold;
mod schema;
mod write;

use fold::Changes;
pub use schema::{checked_schema, ensure_schema, TABLES};

pub use domain::wire::AnyEvent;

/// An event of the log with its decoded (upcast) domain event: what a batch applies.
pub type Decoded = (RecordedEvent, AnyEvent);

/// The domain event inside a recorded one, upcast from older versions.
pub fn decode(event: &RecordedEvent) -> Result<AnyEvent, ReadModelError> {
    if u16::try_from(event.schema_version).is_err() {
        return Err(ReadModelError::Undecodable(format!(
            "schema version {}",
            event.schema_version
        )));
    }
    match AnyEvent::from_wire(&event.category, &event.wire()) {
        Some(decoded) => decoded.map_err(|e| ReadModelError::Undecodable(e.to_string())),
        None => Err(ReadModelError::UnknownCategory(event.category.clone())),
    }
}

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Events that changed the read models (the others were there already).
    pub applied: usize,
}

/// Applies a batch (in log order) on `conn`, inside the caller's transaction, into `schema`.
pub async fn apply_batch(
    conn: &mut PgConnection,
    schema: &str,
    batch: &[Decoded],
) -> Result<Applied, ReadModelError> {
    let schema = checked_schema(schema)?;
    let mut ids: Vec<Uuid> = batch.iter().map(|(e, _)| e.stream_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(&format!(
        "SELECT aggregate_id, version FROM {schema}.aggregate_versions WHERE aggregate_id = ANY($1)",
    ))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut versions: HashMap<Uuid, i64> = rows.into_iter().collect();
    let mut changed: HashMap<Uuid, (&str, i64)> = HashMap::new();
    let mut changes = Changes::default();
    let mut outcome = Applied::default();

    for (recorded, event) in batch {
        let current = versions.get(&recorded.stream_id).copied().unwrap_or(0);
        if recorded.version <= current {
            continue;
        }
        changes.fold(recorded, event);
        versions.insert(recorded.stream_id, recorded.version);
        changed.insert(
            recorded.stream_id,
            (recorded.category.as_str(), recorded.version),
        );
        outcome.applied += 1;
    }
    changes.write(conn, schema).await?;

    if !changed.is_empty() {
        let (ids, rest): (Vec<Uuid>, Vec<(&str, i64)>) = changed.into_iter().unzip();
        let (categories, versions): (Vec<&str>, Vec<i64>) = rest.into_iter().unzip();
        sqlx::query(&format!(
            "INSERT INTO {schema}.aggregate_versions AS v (aggregate_id, category, version) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[]) \
             ON CONFLICT (aggregate_id) DO UPDATE SET version = GREATEST(v.version, EXCLUDED.version)",
            ))
        .bind(&ids)
        .bind(&categories)
        .bind(&versions)
        .execute(&mut *conn)
        .await?;
    }
    Ok(outcome)
}
