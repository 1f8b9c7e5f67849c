//! Appending: one transaction moves every stream's version (optimistic concurrency), records
//! the idempotency keys and entity links, then takes the log head's lock and inserts the
//! events with the next positions — so positions become visible strictly in order.

use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::idempotency::record_idempotency;
use crate::{AppendBatch, Appended, EntityLink, EventLog, StoreError, StreamAppend};

impl EventLog {
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
        crate::appends::CHANNEL
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

async fn record_links(conn: &mut PgConnection, links: &[EntityLink]) -> Result<(), StoreError> {
    if links.is_empty() {
        return Ok(());
    }
    let entities: Vec<Uuid> = links.iter().map(|l| l.entity_id).collect();
    let streams: Vec<Uuid> = links.iter().map(|l| l.stream_id).collect();
    let categories: Vec<&str> = links.iter().map(|l| l.category).collect();
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
