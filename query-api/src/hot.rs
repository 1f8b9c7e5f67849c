//! Hot values (balances, stock, counts) from Redis, counted as hits, misses and fallbacks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use readmodel::generation::Generation;
use redis::aio::ConnectionManager;
use service::breaker::{Admit, Breaker};

/// Redis, when it answers; every failure falls back to PostgreSQL. Each call has a deadline
/// short enough for a read to fall back within its own bound; a Redis that misses it (frozen,
/// not down) opens the breaker, and reads go straight to PostgreSQL until a probe finds Redis
/// answering **and caught up**: its watermark at least the read models' (a Redis that was
/// frozen holds the values of before; the projector rewrites them once it answers, and only
/// then is it read again). The connection is made in the background from the start, never
/// inside a read's deadline (a Redis across a network takes longer than 25 ms to greet):
/// reads fall back until it is made.
#[derive(Clone)]
pub struct Hot {
    client: redis::Client,
    connection: Arc<OnceLock<ConnectionManager>>,
    connecting: Arc<AtomicBool>,
    deadline: Duration,
    breaker: Arc<Breaker>,
    /// For the probe: the read models' watermark, in the generation answered from, read
    /// within `database_deadline`.
    pool: sqlx::PgPool,
    live: Arc<RwLock<Arc<Generation>>>,
    database_deadline: Duration,
}

impl std::fmt::Debug for Hot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hot").finish_non_exhaustive()
    }
}

impl Hot {
    /// How often a probe goes to a Redis that missed its deadline, and a failed connection is
    /// tried again.
    const PROBE_EVERY: Duration = Duration::from_secs(1);

    /// Starts connecting at once: call it inside the runtime (it spawns the connection).
    pub fn new(
        client: redis::Client,
        deadline: Duration,
        pool: sqlx::PgPool,
        live: Arc<RwLock<Arc<Generation>>>,
        database_deadline: Duration,
    ) -> Self {
        let hot = Self {
            client,
            connection: Arc::default(),
            connecting: Arc::default(),
            deadline,
            breaker: Arc::new(Breaker::new("redis", Self::PROBE_EVERY)),
            pool,
            live,
            database_deadline,
        };
        // Connecting from the start: the first reads find the connection made.
        let _ = hot.connection();
        hot
    }

    /// The connection, once made; else `None`, and it is being made in the background (one
    /// attempt at a time, a second apart after a failure).
    fn connection(&self) -> Option<ConnectionManager> {
        if let Some(connection) = self.connection.get() {
            return Some(connection.clone());
        }
        if !self.connecting.swap(true, Ordering::AcqRel) {
            let (client, cell, connecting) = (
                self.client.clone(),
                self.connection.clone(),
                self.connecting.clone(),
            );
            tokio::spawn(async move {
                match readmodel::hot::connect(&client).await {
                    Ok(connection) => {
                        let _ = cell.set(connection);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "redis not reachable; reads use PostgreSQL");
                        tokio::time::sleep(Self::PROBE_EVERY).await;
                    }
                }
                connecting.store(false, Ordering::Release);
            });
        }
        None
    }

    /// Runs `command` on Redis within the deadline, through the breaker: `None` when skipped,
    /// not connected, failed or late.
    async fn run<T>(
        &self,
        command: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<T>,
    ) -> Option<T> {
        match self.breaker.admit() {
            Admit::Skip => return None,
            // The probe closes the breaker itself, when Redis is caught up.
            Admit::Probe if !self.caught_up().await => return None,
            Admit::Probe | Admit::Call => {}
        }
        let connection = self.connection()?;
        self.breaker
            .timed(Admit::Call, self.deadline, command(connection))
            .await
    }

    /// The probe of an open breaker: whether Redis answers within the deadline with a
    /// watermark at least the read models'. Closes the breaker if so.
    async fn caught_up(&self) -> bool {
        let live = match self.live.read() {
            Ok(live) => live.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let Ok(Ok(projected)) = tokio::time::timeout(
            self.database_deadline,
            readmodel::watermark::read(&self.pool, &live.schema),
        )
        .await
        else {
            // PostgreSQL could not say: try again at the next probe.
            return false;
        };
        let Some(mut connection) = self.connection() else {
            return false;
        };
        let key = readmodel::hot::keys::watermark(&live.prefix);
        let hot = tokio::time::timeout(
            self.deadline,
            redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<i64>>(&mut connection),
        )
        .await;
        match hot {
            Ok(Ok(Some(position))) if position >= projected => {
                self.breaker.probe_answered();
                true
            }
            Ok(Ok(behind)) => {
                tracing::debug!(
                    redis = ?behind,
                    projected,
                    "redis answers but is behind the read models; reads stay on PostgreSQL"
                );
                false
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis probe failed");
                false
            }
            Err(_) => false,
        }
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

    /// `fields` of each hot hash of `keys`, in one round trip: one HMGET per key, so the
    /// fields the projector sets together (a sale's remaining and reserved, a balance and what
    /// expires next) are read as one. Each `None` when missing, all of them when Redis is
    /// unavailable.
    pub async fn hashes(&self, keys: &[String], fields: &[&str]) -> Vec<Vec<Option<i64>>> {
        if keys.is_empty() {
            return Vec::new();
        }
        let mut pipeline = redis::pipe();
        for key in keys {
            pipeline.cmd("HMGET").arg(key).arg(fields);
        }
        let answer = self
            .run(async move |mut connection| {
                pipeline
                    .query_async::<Vec<Vec<Option<i64>>>>(&mut connection)
                    .await
            })
            .await
            .filter(|values| {
                values.len() == keys.len() && values.iter().all(|v| v.len() == fields.len())
            });
        let reads = keys.len() * fields.len();
        match answer {
            Some(values) => {
                let hits = values.iter().flatten().filter(|v| v.is_some()).count();
                count_reads("hit", hits);
                count_reads("miss", reads - hits);
                values
            }
            None => {
                count_reads("fallback", reads);
                vec![vec![None; fields.len()]; keys.len()]
            }
        }
    }

    /// Runs a read and counts it in `hot_reads_total`: a `hit`, a `miss` (not in Redis), or a
    /// `fallback` (Redis unreachable or failing): the caller reads PostgreSQL for the last two.
    async fn query(&self, command: redis::Cmd) -> Option<i64> {
        let answer = self
            .run(async move |mut connection| {
                command.query_async::<Option<i64>>(&mut connection).await
            })
            .await;
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
