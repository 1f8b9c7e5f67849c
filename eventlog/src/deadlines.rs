//! The deadlines the log says are outstanding (migration 0006): the follower's reads and
//! writes, and the due ones for whoever fires them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::{recorded, EventLog, RecordedEvent, StoreError, EVENT_COLUMNS};

/// A deadline opened by an event: `entity_id` of `kind` in stream `stream_id` is due at
/// `due_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    pub kind: String,
    pub entity_id: Uuid,
    pub stream_id: Uuid,
    pub category: String,
    pub due_at: DateTime<Utc>,
}

/// What a stretch of the log does to the deadlines, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadlineChange {
    Set(Deadline),
    /// The entity's deadline ended (met, or made moot).
    Clear {
        kind: String,
        entity_id: Uuid,
    },
}

impl EventLog {
    /// The position the deadline follower has read up to.
    pub async fn deadline_checkpoint(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT position FROM deadline_checkpoint")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The committed head, then the events of `types` after `after` up to it, at most
    /// `limit`; with the position the follower has read up to once it took them: the last
    /// one's when `limit` cut the list short, else the head. The head is read first: every
    /// position at or below a committed head is committed (appends take positions in order,
    /// under the head's lock), so nothing below it can still appear.
    pub async fn read_types(
        &self,
        after: i64,
        categories: &[&str],
        types: &[&str],
        limit: i64,
    ) -> Result<(Vec<RecordedEvent>, i64), StoreError> {
        let head: i64 = sqlx::query_scalar("SELECT position FROM log_head")
            .fetch_one(&self.pool)
            .await?;
        if head <= after {
            return Ok((vec![], after));
        }
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE category = ANY($1) AND position > $2 \
             AND position <= $3 AND event_type = ANY($4) ORDER BY position LIMIT $5"
        ))
        .bind(categories)
        .bind(after)
        .bind(head)
        .bind(types)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let events: Vec<RecordedEvent> = rows.iter().map(recorded).collect::<Result<_, _>>()?;
        let read_up_to = match events.last() {
            Some(last) if events.len() as i64 >= limit => last.position,
            _ => head,
        };
        Ok((events, read_up_to))
    }

    /// The deadlines due at `now`, earliest first (then by entity), after `after` (the last
    /// of the previous page), at most `limit`.
    pub async fn due_deadlines(
        &self,
        now: DateTime<Utc>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<Deadline>, StoreError> {
        let (due, entity) = after.unzip();
        let rows = sqlx::query(
            "SELECT kind, entity_id, stream_id, category, due_at FROM deadlines \
             WHERE due_at <= $1 AND ($2::timestamptz IS NULL OR (due_at, entity_id) > ($2, $3)) \
             ORDER BY due_at, entity_id LIMIT $4",
        )
        .bind(now)
        .bind(due)
        .bind(entity)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok(Deadline {
                    kind: row.try_get("kind")?,
                    entity_id: row.try_get("entity_id")?,
                    stream_id: row.try_get("stream_id")?,
                    category: row.try_get("category")?,
                    due_at: row.try_get("due_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// Forgets a deadline whose entity its aggregate says is no longer open (the follower
    /// would clear it when it reads the ending event; this spares a second look meanwhile).
    pub async fn forget_deadline(&self, kind: &str, entity_id: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM deadlines WHERE kind = $1 AND entity_id = $2")
            .bind(kind)
            .bind(entity_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Applies `changes` as if in order and moves the follower's checkpoint to `position`, in one
/// transaction on `conn` (the follower's leader connection: only while it leads). The last
/// change of each deadline is what stands: they are written as one upsert and one delete,
/// whatever their number.
pub async fn apply_deadline_changes(
    conn: &mut PgConnection,
    changes: &[DeadlineChange],
    position: i64,
) -> Result<(), StoreError> {
    let mut last: HashMap<(&str, Uuid), &DeadlineChange> = HashMap::with_capacity(changes.len());
    for change in changes {
        let key = match change {
            DeadlineChange::Set(d) => (d.kind.as_str(), d.entity_id),
            DeadlineChange::Clear { kind, entity_id } => (kind.as_str(), *entity_id),
        };
        last.insert(key, change);
    }
    // In key order, so that any two writers of these rows take their locks in one order.
    let mut last: Vec<_> = last.into_iter().collect();
    last.sort_unstable_by_key(|(key, _)| *key);
    let (mut set, mut clear) = (Vec::new(), Vec::new());
    for (_, change) in last {
        match change {
            DeadlineChange::Set(d) => set.push(d),
            DeadlineChange::Clear { kind, entity_id } => clear.push((kind.as_str(), *entity_id)),
        }
    }
    let mut tx = sqlx::Connection::begin(conn).await?;
    if !set.is_empty() {
        let kinds: Vec<&str> = set.iter().map(|d| d.kind.as_str()).collect();
        let entities: Vec<Uuid> = set.iter().map(|d| d.entity_id).collect();
        let streams: Vec<Uuid> = set.iter().map(|d| d.stream_id).collect();
        let categories: Vec<&str> = set.iter().map(|d| d.category.as_str()).collect();
        let due: Vec<DateTime<Utc>> = set.iter().map(|d| d.due_at).collect();
        sqlx::query(
            "INSERT INTO deadlines (kind, entity_id, stream_id, category, due_at) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[]) \
             ON CONFLICT (kind, entity_id) DO UPDATE SET stream_id = EXCLUDED.stream_id, \
             category = EXCLUDED.category, due_at = EXCLUDED.due_at",
        )
        .bind(&kinds)
        .bind(&entities)
        .bind(&streams)
        .bind(&categories)
        .bind(&due)
        .execute(&mut *tx)
        .await?;
    }
    if !clear.is_empty() {
        let (kinds, entities): (Vec<&str>, Vec<Uuid>) = clear.into_iter().unzip();
        sqlx::query(
            "DELETE FROM deadlines d USING unnest($1::text[], $2::uuid[]) AS c(kind, entity_id) \
             WHERE d.kind = c.kind AND d.entity_id = c.entity_id",
        )
        .bind(&kinds)
        .bind(&entities)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("UPDATE deadline_checkpoint SET position = $1 WHERE position < $1")
        .bind(position)
        .execute(&mut *tx)
        .await?;
    tx.commit().await.map_err(StoreError::Commit)?;
    Ok(())
}
