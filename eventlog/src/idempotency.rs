//! Idempotency keys: a command's answer stored with its events, in the same transaction, and
//! found again for a retry with the same key; expired answers deleted in small batches.

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use serde_json::Value;

use crate::{EventLog, IdempotencyRecord, StoreError};

impl EventLog {
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

pub(crate) async fn record_idempotency(
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
