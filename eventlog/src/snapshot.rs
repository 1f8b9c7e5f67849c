//! Snapshots of aggregate states, and cold loads of many streams at once (a snapshot and the
//! events after it).

use std::collections::HashMap;

use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::{recorded, EventLog, RecordedEvent, StoreError, EVENT_COLUMNS};

impl EventLog {
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

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub version: i64,
    pub state: Value,
}
