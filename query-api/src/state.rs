//! What every read shares: the pool, Redis, the live read-model generation and its faults,
//! the log head (for `X-Min-Position`), cached sale rows, and the gate.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use readmodel::generation::Generation;
use readmodel::parked::Faults;
use service::breaker::{Admit, Breaker};

use crate::hot::Hot;
use crate::QueryError;

#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: sqlx::PgPool,
    pub hot: Hot,
    /// The read-model generation queries go to (ADR 7), refreshed by [`follow_generation`].
    pub(crate) live: Arc<RwLock<Arc<Generation>>>,
    /// The live generation's faulted aggregates, refreshed with the generation.
    pub(crate) faults: Arc<RwLock<Arc<Faults>>>,
    /// Held while the faults are re-read for a read-your-writes read.
    pub(crate) faults_refresh: Arc<tokio::sync::Mutex<()>>,
    pub consistency_wait: Duration,
    /// The highest log position seen to exist: an `X-Min-Position` at or below it needs no
    /// look at the log.
    pub(crate) log_head: Arc<std::sync::atomic::AtomicI64>,
    /// When the log head was last read (ms since start): at most every few milliseconds,
    /// however many reads ask.
    pub(crate) log_head_read_at: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) sales: SaleCache,
    /// Tokens and rate limits.
    pub(crate) gate: auth::http::Gate,
    /// PostgreSQL, through [`AppState::db`].
    pub(crate) database: Database,
}

/// How reads use PostgreSQL: each within a deadline, through a breaker.
#[derive(Debug, Clone)]
pub(crate) struct Database {
    pub(crate) deadline: Duration,
    pub(crate) breaker: Arc<Breaker>,
}

impl Database {
    /// How often a probe goes to a database that missed its deadline.
    const PROBE_EVERY: Duration = Duration::from_secs(1);

    pub(crate) fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            breaker: Arc::new(Breaker::new("postgres", Self::PROBE_EVERY)),
        }
    }
}

/// Time-sale rows by (generation, id). Every column but the stock (remaining and reserved) is
/// fixed once a sale exists, and the stock is read from Redis — both values, or the row is read
/// again — so a cached row is never stale where it is used.
#[derive(Debug, Clone, Default)]
pub(crate) struct SaleCache(
    Arc<std::sync::Mutex<HashMap<SaleKey, Arc<readmodel::queries::SaleRow>>>>,
);

/// (generation, time sale id)
type SaleKey = (i64, uuid::Uuid);

/// Sale rows kept at most; past it the cache starts over.
const SALE_CACHE_SIZE: usize = 10_000;

impl SaleCache {
    pub(crate) fn get(
        &self,
        generation: i64,
        id: uuid::Uuid,
    ) -> Option<Arc<readmodel::queries::SaleRow>> {
        self.0.lock().ok()?.get(&(generation, id)).cloned()
    }

    pub(crate) fn insert(&self, generation: i64, id: uuid::Uuid, row: readmodel::queries::SaleRow) {
        if let Ok(mut rows) = self.0.lock() {
            if rows.len() >= SALE_CACHE_SIZE {
                rows.clear();
            }
            rows.insert((generation, id), Arc::new(row));
        }
    }
}

impl AppState {
    /// A read of PostgreSQL within `database.timeout_ms` (the pool's wait included: its own
    /// timeout is longer). A database that hangs (frozen, a full network buffer) answers 503
    /// `UNAVAILABLE` at the deadline, and every read after it at once, until a probe (one
    /// read a second) is answered: a hung database costs each caller one deadline at most,
    /// and reads that do not need it (hot values in Redis) go on. Errors it answers with fail
    /// on their own, fast, as before.
    pub(crate) async fn db<T, E: Into<QueryError>>(
        &self,
        read: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, QueryError> {
        let Database { deadline, breaker } = &self.database;
        let admitted = breaker.admit();
        if admitted == Admit::Skip {
            return Err(QueryError::Skipped("the database"));
        }
        match tokio::time::timeout(*deadline, read).await {
            Ok(answered) => {
                if admitted == Admit::Probe {
                    breaker.probe_answered();
                }
                answered.map_err(Into::into)
            }
            Err(_) => {
                let cause = format!("the database did not answer within {deadline:?}");
                breaker.failed(&cause);
                Err(QueryError::Unavailable(cause))
            }
        }
    }

    /// The read-model generation to answer from.
    pub fn live(&self) -> Arc<Generation> {
        match self.live.read() {
            Ok(live) => live.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn faults(&self) -> Arc<Faults> {
        match self.faults.read() {
            Ok(faults) => faults.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_faults(&self, next: Faults) {
        let mut faults = match self.faults.write() {
            Ok(faults) => faults,
            Err(poisoned) => poisoned.into_inner(),
        };
        // A read-your-writes refresh may have stored a later snapshot of this generation.
        if next.generation == faults.generation && next.as_of < faults.as_of {
            return;
        }
        if faults.is_empty() != next.is_empty() {
            if next.is_empty() {
                tracing::info!("no read model is faulted any more");
            } else {
                tracing::warn!("parked events fault some read models; their reads answer 503");
            }
        }
        *faults = Arc::new(next);
    }

    /// Re-reads the faults of the live generation.
    async fn refresh_faults(&self) -> Result<(), QueryError> {
        let faults = self.db(Faults::load(&self.pool, &self.live())).await?;
        self.set_faults(faults);
        Ok(())
    }

    /// Makes sure the faults reads are checked against hold every event up to `wanted` in the
    /// live generation. Concurrent reads share one refresh: the one that waited for the lock
    /// finds the fresh snapshot another one stored.
    pub(crate) async fn faults_up_to(&self, wanted: i64) -> Result<(), QueryError> {
        let fresh =
            |faults: &Faults| faults.generation == self.live().number && faults.as_of >= wanted;
        if fresh(&self.faults()) {
            return Ok(());
        }
        let _one_at_a_time = self.faults_refresh.lock().await;
        if fresh(&self.faults()) {
            return Ok(());
        }
        self.refresh_faults().await
    }

    /// 503 `PROJECTION_FAULTED` when `what` (aggregate `id`) has a parked event.
    pub fn check_aggregate(&self, id: uuid::Uuid, what: &'static str) -> Result<(), QueryError> {
        match self.faults().aggregate(id) {
            Some(position) => Err(QueryError::Faulted { what, position }),
            None => Ok(()),
        }
    }

    /// The point account of `user`, as [`AppState::check_aggregate`].
    pub fn check_account(&self, user: i64) -> Result<(), QueryError> {
        match domain::values::UserId::parse(user, "userId") {
            Ok(user) => {
                self.check_aggregate(domain::points::point_account_id(user), "point account")
            }
            Err(_) => Ok(()),
        }
    }

    /// For a coupon or order the read models do not have: 503 if the aggregate it was created
    /// in is faulted (its creating event may be the parked one), else nothing.
    pub async fn check_missing_entity(
        &self,
        id: uuid::Uuid,
        category: &str,
        what: &'static str,
    ) -> Result<(), QueryError> {
        let faults = self.faults();
        match self
            .db(readmodel::parked::entity_fault(
                &self.pool, &faults, id, category,
            ))
            .await?
        {
            Some(position) => Err(QueryError::Faulted { what, position }),
            None => Ok(()),
        }
    }

    /// As [`AppState::check_aggregate`], for a user's list of `category` (an event about the
    /// user, as its data names the user, is parked).
    pub async fn check_user(
        &self,
        category: &str,
        user: i64,
        what: &'static str,
    ) -> Result<(), QueryError> {
        let faults = self.faults();
        let live = self.live();
        match self
            .db(readmodel::parked::user_fault(
                &self.pool,
                &faults,
                &live.schema,
                category,
                user,
            ))
            .await?
        {
            Some(position) => Err(QueryError::Faulted { what, position }),
            None => Ok(()),
        }
    }

    pub(crate) fn set_live(&self, next: Generation) {
        let mut live = match self.live.write() {
            Ok(live) => live,
            Err(poisoned) => poisoned.into_inner(),
        };
        if **live != next {
            tracing::info!(schema = %next.schema, generation = next.number, "answering from a new read-model generation");
            *live = Arc::new(next);
        }
    }

    /// Whether `position` is in the event log yet: `Some(true)` at or below the highest head
    /// seen, else the head read again — by one caller at a time, at most every
    /// [`LOG_HEAD_EVERY_MS`]; `None` when another read of it is that recent (ask again later).
    pub(crate) async fn in_log(&self, position: i64) -> Result<Option<bool>, QueryError> {
        use std::sync::atomic::Ordering;
        if position <= self.log_head.load(Ordering::Relaxed) {
            return Ok(Some(true));
        }
        let now = service_clock_ms();
        let last = self.log_head_read_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) < LOG_HEAD_EVERY_MS
            || self
                .log_head_read_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(None);
        }
        let head = self.db(readmodel::watermark::log_head(&self.pool)).await?;
        self.log_head.fetch_max(head, Ordering::Relaxed);
        Ok(Some(position <= head))
    }

    /// The projections' watermark: Redis first, PostgreSQL otherwise.
    pub async fn watermark(&self) -> Result<i64, QueryError> {
        let live = self.live();
        let key = readmodel::hot::keys::watermark(&live.prefix);
        if let Some(position) = self.hot.number(&key).await {
            return Ok(position);
        }
        self.db(readmodel::watermark::read(&self.pool, &live.schema))
            .await
    }
}

/// Follows the deployment's generation pointer and its parked events: re-reads them every
/// `every` and switches the state to a new generation as soon as it appears. A failed read
/// keeps the last one.
pub(crate) async fn follow_generation(state: AppState, base: String, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match readmodel::generation::current(&state.pool, &base).await {
            Ok(next) => state.set_live(next),
            Err(e) => tracing::debug!(error = %e, "generation pointer not read"),
        }
        if let Err(e) = state.refresh_faults().await {
            tracing::debug!(error = %e, "parked events not read");
        }
    }
}

/// How often the log head is read at most, for `X-Min-Position`s beyond the highest seen.
const LOG_HEAD_EVERY_MS: u64 = 5;

/// Milliseconds on a monotonic clock (since its first use).
fn service_clock_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    // Never 0, so that "never read" (0) is always long ago.
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1_000
}
