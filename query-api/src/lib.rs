//! The query API: every read endpoint of docs/product.md, served only from the read models — Redis
//! first for hot values (balances, stock, counts), PostgreSQL for the rest and whenever Redis
//! is down or misses. A client may send the `position` a command returned as `X-Min-Position`:
//! the answer then waits (bounded) until the projections have reached it. A read of an
//! aggregate whose events the projector had to park answers 503 `PROJECTION_FAULTED`, naming
//! the first parked position, until an operator repairs it (`replay-tools retry`).

pub mod openapi;
mod routes;
pub mod settings;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use redis::aio::ConnectionManager;
use secrecy::ExposeSecret;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::OnceCell;

use readmodel::generation::Generation;
use readmodel::parked::Faults;

use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{detail}")]
    BadRequest { detail: String, field: &'static str },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the read models have not reached position {0} yet")]
    NotYetConsistent(i64),
    #[error(
        "the read model of this {what} is faulted: the event at position {position} could not be \
         projected and waits for an operator (replay-tools parked / retry)"
    )]
    Faulted { what: &'static str, position: i64 },
    #[error("a dependency is unavailable")]
    Unavailable(String),
    /// The caller may not read this (another user's data).
    #[error("{0}")]
    Forbidden(&'static str),
}

impl From<auth::Forbidden> for QueryError {
    fn from(e: auth::Forbidden) -> Self {
        QueryError::Forbidden(e.0)
    }
}

impl From<readmodel::ReadModelError> for QueryError {
    fn from(e: readmodel::ReadModelError) -> Self {
        QueryError::Unavailable(e.to_string())
    }
}

impl From<sqlx::Error> for QueryError {
    fn from(e: sqlx::Error) -> Self {
        QueryError::Unavailable(e.to_string())
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let (status, code, field) = match &self {
            QueryError::BadRequest { field, .. } => {
                (StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some(*field))
            }
            QueryError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND", None),
            QueryError::NotYetConsistent(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "NOT_YET_CONSISTENT", None)
            }
            QueryError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN", None),
            QueryError::Faulted { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "PROJECTION_FAULTED", None)
            }
            QueryError::Unavailable(cause) => {
                tracing::error!(%cause, "query failed on a dependency");
                (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", None)
            }
        };
        let detail = match &self {
            QueryError::Unavailable(_) => "a dependency is unavailable; retry later".to_owned(),
            other => other.to_string(),
        };
        let mut body = problem::body(status, code, &detail, field);
        if let QueryError::Faulted { position, .. } = &self {
            body["position"] = json!(position);
        }
        problem::response(status, body)
    }
}

/// Redis, when it answers. Connected lazily (retried on the next read while Redis is
/// unreachable; lock-free once connected); every failure falls back to PostgreSQL.
#[derive(Clone)]
pub struct Hot {
    client: redis::Client,
    connection: Arc<OnceCell<ConnectionManager>>,
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

#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: sqlx::PgPool,
    pub hot: Hot,
    /// The read-model generation queries go to (ADR 7), refreshed by [`follow_generation`].
    live: Arc<RwLock<Arc<Generation>>>,
    /// The live generation's faulted aggregates, refreshed with the generation.
    faults: Arc<RwLock<Arc<Faults>>>,
    /// Held while the faults are re-read for a read-your-writes read.
    faults_refresh: Arc<tokio::sync::Mutex<()>>,
    pub consistency_wait: Duration,
    /// The highest log position seen to exist: an `X-Min-Position` at or below it needs no
    /// look at the log.
    log_head: Arc<std::sync::atomic::AtomicI64>,
    /// When the log head was last read (ms since start): at most every few milliseconds,
    /// however many reads ask.
    log_head_read_at: Arc<std::sync::atomic::AtomicU64>,
    sales: SaleCache,
    /// Tokens and rate limits.
    gate: auth::http::Gate,
}

/// Time-sale rows by (generation, id). Every column but the stock is fixed once a sale
/// exists, and the stock is read from Redis, so a cached row is never stale where it is used.
#[derive(Debug, Clone, Default)]
struct SaleCache(Arc<std::sync::Mutex<HashMap<SaleKey, Arc<readmodel::queries::SaleRow>>>>);

/// (generation, time sale id)
type SaleKey = (i64, uuid::Uuid);

/// Sale rows kept at most; past it the cache starts over.
const SALE_CACHE_SIZE: usize = 10_000;

impl SaleCache {
    fn get(&self, generation: i64, id: uuid::Uuid) -> Option<Arc<readmodel::queries::SaleRow>> {
        self.0.lock().ok()?.get(&(generation, id)).cloned()
    }

    fn insert(&self, generation: i64, id: uuid::Uuid, row: readmodel::queries::SaleRow) {
        if let Ok(mut rows) = self.0.lock() {
            if rows.len() >= SALE_CACHE_SIZE {
                rows.clear();
            }
            rows.insert((generation, id), Arc::new(row));
        }
    }
}

impl AppState {
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
        let faults = Faults::load(&self.pool, &self.live())
            .await
            .map_err(|e| QueryError::Unavailable(e.to_string()))?;
        self.set_faults(faults);
        Ok(())
    }

    /// Makes sure the faults reads are checked against hold every event up to `wanted` in the
    /// live generation. Concurrent reads share one refresh: the one that waited for the lock
    /// finds the fresh snapshot another one stored.
    async fn faults_up_to(&self, wanted: i64) -> Result<(), QueryError> {
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
        match readmodel::parked::entity_fault(&self.pool, &faults, id, category).await {
            Ok(Some(position)) => Err(QueryError::Faulted { what, position }),
            Ok(None) => Ok(()),
            Err(e) => Err(QueryError::Unavailable(e.to_string())),
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
        match readmodel::parked::user_fault(&self.pool, &faults, &live.schema, category, user).await
        {
            Ok(Some(position)) => Err(QueryError::Faulted { what, position }),
            Ok(None) => Ok(()),
            Err(e) => Err(QueryError::Unavailable(e.to_string())),
        }
    }

    fn set_live(&self, next: Generation) {
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
    async fn in_log(&self, position: i64) -> Result<Option<bool>, QueryError> {
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
        let head = readmodel::watermark::log_head(&self.pool)
            .await
            .map_err(|e| QueryError::Unavailable(e.to_string()))?;
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
        readmodel::watermark::read(&self.pool, &live.schema)
            .await
            .map_err(|e| QueryError::Unavailable(e.to_string()))
    }
}

/// Follows the deployment's generation pointer and its parked events: re-reads them every
/// `every` and switches the state to a new generation as soon as it appears. A failed read
/// keeps the last one.
async fn follow_generation(state: AppState, base: String, every: Duration) {
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

/// Read-your-writes: with `X-Min-Position: P`, wait until the watermark reaches P (polling
/// every few milliseconds, less often as the wait grows), at most `consistency_wait`; then
/// 503 with `Retry-After`. A P no command has answered yet (beyond the log's head) is a 400
/// at once, not a wait.
async fn consistency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(raw) = request.headers().get("x-min-position") else {
        return next.run(request).await;
    };
    let Some(wanted) = raw
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|p| *p >= 0)
    else {
        return QueryError::BadRequest {
            detail: "X-Min-Position must be a non-negative integer".into(),
            field: "X-Min-Position",
        }
        .into_response();
    };
    let started = tokio::time::Instant::now();
    let deadline = started + state.consistency_wait;
    let mut checked_log = false;
    let mut waited = false;
    let reached = loop {
        match state.watermark().await {
            Ok(position) if position >= wanted => break position,
            Ok(_) if !checked_log && tokio::time::Instant::now() < deadline => {
                match state.in_log(wanted).await {
                    Ok(Some(true)) => checked_log = true,
                    Ok(None) => {
                        waited = true;
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                    Ok(Some(false)) => {
                        return QueryError::BadRequest {
                            detail: "X-Min-Position is beyond the end of the event log: send \
                                     the position a command answered"
                                .into(),
                            field: "X-Min-Position",
                        }
                        .into_response();
                    }
                    Err(e) => return e.into_response(),
                }
            }
            Ok(_) if tokio::time::Instant::now() >= deadline => {
                metrics::counter!("read_your_writes_timeouts_total").increment(1);
                return QueryError::NotYetConsistent(wanted).into_response();
            }
            Ok(_) => {
                waited = true;
                // 3 ms while a fresh write is normally seen; 20 ms once the projector is late.
                let pause = if started.elapsed() < Duration::from_millis(100) {
                    3
                } else {
                    20
                };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(e) => return e.into_response(),
        }
    };
    if waited {
        metrics::counter!("read_your_writes_waits_total").increment(1);
        metrics::histogram!("read_your_writes_wait_seconds")
            .record(started.elapsed().as_secs_f64());
    }
    // The faults this read is checked against must include every event up to `wanted`.
    if let Err(e) = state.faults_up_to(wanted).await {
        return e.into_response();
    }
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&reached.to_string()) {
        response
            .headers_mut()
            .insert("x-projection-position", value);
    }
    response
}

/// The whole router, with the server's limits on requests in flight and their duration.
pub fn app(state: AppState, server: &settings::Server) -> Router {
    let limits = problem::Limits::new(
        server.max_in_flight,
        Duration::from_millis(server.request_timeout_ms),
    );
    let gate = axum::middleware::from_fn_with_state(state.gate.clone(), auth::http::gate);
    // The gate first (outermost): an unauthenticated request never waits for consistency.
    let consistency = axum::middleware::from_fn_with_state(state.clone(), consistency);
    Router::new()
        .merge(routes::router().route_layer(consistency).route_layer(gate))
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/ready", get(ready))
        .route("/metrics", get(service::metrics::scrape))
        .merge(problem::openapi::docs(openapi::DOCS, openapi::document()))
        .fallback(|| async { QueryError::NotFound("resource") })
        .method_not_allowed_fallback(problem::method_not_allowed)
        .layer(axum::middleware::map_response(problem::bodiless_refusals))
        .layer(axum::middleware::from_fn_with_state(limits, problem::limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(service::metrics::track_http))
        // Outermost: the trace layer's own lines (a 5xx is logged at ERROR) are in the span.
        .layer(axum::middleware::from_fn(problem::request_ids))
        .with_state(state)
}

async fn ready(State(state): State<AppState>) -> Response {
    match sqlx::query("SELECT 1").execute(&state.pool).await {
        Ok(_) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => QueryError::from(e).into_response(),
    }
}

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(settings.database.max_connections)
            .acquire_timeout(Duration::from_secs(3))
            .connect(settings.database.url.expose_secret())
            .await?;
        // The projector owns the schema; creating it here too lets the query API start first.
        readmodel::generation::ensure(&pool, &settings.schema, &settings.redis.prefix).await?;
        let live = readmodel::generation::current(&pool, &settings.schema).await?;
        readmodel::projection::ensure_schema(&pool, &live.schema).await?;
        let hot = Hot {
            client: redis::Client::open(settings.redis.url.as_str())?,
            connection: Default::default(),
        };
        settings.auth.check_exposure(&settings.server.host)?;
        let state = AppState {
            pool,
            hot,
            live: Arc::new(RwLock::new(Arc::new(live))),
            faults: Default::default(),
            faults_refresh: Default::default(),
            consistency_wait: Duration::from_millis(settings.consistency_wait_ms),
            log_head: Default::default(),
            log_head_read_at: Default::default(),
            sales: SaleCache::default(),
            gate: auth::http::Gate {
                authenticator: if settings.auth.enabled {
                    Some(Arc::new(auth::Authenticator::new(&settings.auth)?))
                } else {
                    tracing::warn!(
                        "authentication is OFF: every caller is trusted (benchmarks only)"
                    );
                    None
                },
                limiter: Some(auth::limit::RateLimiter::new(
                    settings.rate_limit.clone(),
                    &settings.redis.url,
                )?),
            },
        };
        tokio::spawn(follow_generation(
            state.clone(),
            settings.schema.clone(),
            Duration::from_millis(settings.generation_poll_ms.max(1)),
        ));
        let listener =
            TcpListener::bind((settings.server.host.as_str(), settings.server.port)).await?;
        Ok(Self {
            listener,
            router: app(state, &settings.server),
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }
}
