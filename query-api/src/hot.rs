//! Hot values (balances, stock, counts) from Redis, counted as hits, misses and fallbacks.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

/// Redis, when it answers. Connected lazily (retried on the next read while Redis is
/// unreachable; lock-free once connected); every failure falls back to PostgreSQL.
#[derive(Clone)]
pub struct Hot {
    pub(crate) client: redis::Client,
    pub(crate) connection: Arc<OnceCell<ConnectionManager>>,
}

impl std::fmt::Debug for Hot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hot").finish_non_exhaustive()
    }
}

impl Hot {
    async fn connection(&self) -> Option<ConnectionManager> {
        self.connection
            .get_or_try_init(|| readmodel::hot::connect(&self.client))
            .await
            .ok()
            .cloned()
    }

    /// A field of a hot hash, or `None` (missing, or Redis unavailable).
    pub async fn field(&self, key: &str, field: &str) -> Option<i64> {
        let mut command = redis::cmd("HGET");
        command.arg(key).arg(field);
        self.query(command).await
    }

    /// A hot number, or `None` (missing, or Redis unavailable).
    pub async fn number(&self, key: &str) -> Option<i64> {
        let mut command = redis::cmd("GET");
        command.arg(key);
        self.query(command).await
    }

    /// Fields of hot hashes, `(key, field)` each, in one round trip: each `None` when missing
    /// or when Redis is unavailable (then all of them).
    pub async fn fields(&self, reads: &[(String, &str)]) -> Vec<Option<i64>> {
        if reads.is_empty() {
            return Vec::new();
        }
        let mut pipeline = redis::pipe();
        for (key, field) in reads {
            pipeline.cmd("HGET").arg(key).arg(*field);
        }
        let answer = match self.connection().await {
            Some(mut connection) => pipeline
                .query_async::<Vec<Option<i64>>>(&mut connection)
                .await
                .ok()
                .filter(|values| values.len() == reads.len()),
            None => None,
        };
        match answer {
            Some(values) => {
                let hits = values.iter().filter(|v| v.is_some()).count();
                count_reads("hit", hits);
                count_reads("miss", values.len() - hits);
                values
            }
            None => {
                count_reads("fallback", reads.len());
                vec![None; reads.len()]
            }
        }
    }

    /// Runs a read and counts it in `hot_reads_total`: a `hit`, a `miss` (not in Redis), or a
    /// `fallback` (Redis unreachable or failing): the caller reads PostgreSQL for the last two.
    async fn query(&self, command: redis::Cmd) -> Option<i64> {
        let answer = match self.connection().await {
            Some(mut connection) => command
                .query_async::<Option<i64>>(&mut connection)
                .await
                .ok(),
            None => None,
        };
        let result = match answer {
            Some(Some(_)) => "hit",
            Some(None) => "miss",
            None => "fallback",
        };
        count_reads(result, 1);
        answer.flatten()
    }
}

/// `hot_reads_total{result}`.
fn count_reads(result: &'static str, reads: usize) {
    if reads > 0 {
        metrics::counter!("hot_reads_total", "result" => result).increment(reads as u64);
    }
}
