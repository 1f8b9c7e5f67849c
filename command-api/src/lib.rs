//! The command API: validates commands, runs them through one in-memory writer per aggregate
//! (group-committed to the PostgreSQL event log), and answers with the created ids, the
//! aggregate's new version and the global position of its last event.

pub mod error;
pub mod extract;
pub mod openapi;
mod routes;
pub mod settings;
pub mod writer;

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use domain::coupon::CouponPolicy;
use domain::points::PointAccount;
use domain::product::Product;
use domain::time_sale::TimeSale;
use domain::Decide;
use eventlog::EventLog;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::IdempotencyKey;
use crate::settings::Settings;
use crate::writer::{Aggregates, Committed, Committer, Keyed, Request, WriteError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("event log: {0}")]
    Store(#[from] eventlog::StoreError),
    #[error("binding the listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("authentication: {0}")]
    Auth(auth::AuthError),
}

/// Entity id → (stream id, category). Immutable facts, so they are cached; bounded by
/// clearing when large.
const ENTITY_CACHE_LIMIT: usize = 1_000_000;

/// Everything handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub log: EventLog,
    pub coupons: Aggregates<CouponPolicy>,
    pub points: Aggregates<PointAccount>,
    pub products: Aggregates<Product>,
    pub time_sales: Aggregates<TimeSale>,
    entities: Arc<Mutex<HashMap<Uuid, (Uuid, String)>>>,
    /// Streams known to exist, with their category (they never stop existing).
    streams: Arc<Mutex<HashMap<Uuid, String>>>,
    /// Tokens, roles and rate limits.
    pub access: Access,
}

/// Who may call, and how often (ADR 11).
#[derive(Debug, Clone)]
pub struct Access {
    pub gate: auth::http::Gate,
    /// Signs the tokens the login endpoint issues (`None`: the settings cannot sign).
    pub minter: Option<Arc<auth::Minter>>,
    /// Counts registrations and logins: in Redis, or in this process when there is none.
    pub login_limiter: auth::limit::RateLimiter,
    pub login_ttl_seconds: u64,
    pub logins_per_account: u64,
    pub logins_per_address: u64,
    /// What a login for an unknown email is verified against, so it costs what a wrong
    /// password does.
    pub dummy_hash: Arc<String>,
}

impl Access {
    pub async fn from_settings(settings: &Settings) -> Result<Self, StartupError> {
        let auth = &settings.auth;
        auth.check_exposure(&settings.server.host)
            .map_err(StartupError::Auth)?;
        let authenticator = if auth.enabled {
            Some(Arc::new(
                auth::Authenticator::new(auth).map_err(StartupError::Auth)?,
            ))
        } else {
            tracing::warn!("authentication is OFF: every caller is trusted (benchmarks only)");
            None
        };
        let minter = if auth.enabled {
            auth::Minter::new(auth).ok().map(Arc::new)
        } else {
            None
        };
        let limiter = match &settings.redis {
            Some(redis) => Some(
                auth::limit::RateLimiter::new(settings.rate_limit.clone(), &redis.url)
                    .map_err(|e| StartupError::Auth(auth::AuthError::Settings(e.to_string())))?,
            ),
            None => {
                tracing::warn!(
                    "no [redis]: rate limits are not counted (logins by this process alone)"
                );
                None
            }
        };
        let login_limiter = limiter
            .clone()
            .unwrap_or_else(|| auth::limit::RateLimiter::in_process(settings.rate_limit.clone()));
        let dummy_hash = routes::accounts::hash("not a password of anyone".into())
            .await
            .map_err(|e| StartupError::Auth(auth::AuthError::Settings(e.to_string())))?;
        Ok(Self {
            gate: auth::http::Gate {
                authenticator,
                limiter: limiter.clone(),
            },
            minter,
            login_limiter,
            login_ttl_seconds: auth.login_ttl_seconds,
            logins_per_account: settings.rate_limit.logins_per_account,
            logins_per_address: settings.rate_limit.logins_per_address,
            dummy_hash: Arc::new(dummy_hash),
        })
    }
}

impl AppState {
    pub fn new(log: EventLog, settings: &Settings, access: Access) -> Self {
        let committer = Committer::start(log.clone(), settings.writer.max_commit_batch);
        let writers = |c: &Committer| (log.clone(), c.clone(), settings.writer.clone());
        let (l, c, w) = writers(&committer);
        let coupons = Aggregates::new(l, c, w);
        let (l, c, w) = writers(&committer);
        let points = Aggregates::new(l, c, w);
        let (l, c, w) = writers(&committer);
        let products = Aggregates::new(l, c, w);
        let (l, c, w) = writers(&committer);
        let time_sales = Aggregates::new(l, c, w);
        Self {
            log,
            coupons,
            points,
            products,
            time_sales,
            entities: Default::default(),
            streams: Default::default(),
            access,
        }
    }

    /// Whether aggregate `id` exists and is of `category` — asked before a command names an
    /// aggregate it does not create (an issue names a policy, an order a sale), so a made-up
    /// id is answered from the log's index without starting a writer for it.
    pub async fn exists(&self, id: Uuid, category: &str) -> Result<bool, ApiError> {
        let cached = self.streams.lock().ok().and_then(|c| c.get(&id).cloned());
        let found = match cached {
            Some(found) => Some(found),
            None => {
                let found = self
                    .log
                    .stream_category(id)
                    .await
                    .map_err(|e| ApiError::Unavailable(e.to_string()))?;
                if let (Some(found), Ok(mut cache)) = (&found, self.streams.lock()) {
                    if cache.len() >= ENTITY_CACHE_LIMIT {
                        cache.clear();
                    }
                    cache.insert(id, found.clone());
                }
                found
            }
        };
        Ok(found.is_some_and(|c| c == category))
    }

    /// The stream holding a coupon or an order, if it is one of `category`.
    pub async fn stream_of(
        &self,
        entity_id: Uuid,
        category: &str,
        what: &'static str,
    ) -> Result<Uuid, ApiError> {
        let cached = self
            .entities
            .lock()
            .ok()
            .and_then(|c| c.get(&entity_id).cloned());
        let found = match cached {
            Some(found) => Some(found),
            None => {
                let found = self
                    .log
                    .entity_stream(entity_id)
                    .await
                    .map_err(|e| ApiError::Unavailable(e.to_string()))?;
                if let (Some(found), Ok(mut cache)) = (&found, self.entities.lock()) {
                    if cache.len() >= ENTITY_CACHE_LIMIT {
                        cache.clear();
                    }
                    cache.insert(entity_id, found.clone());
                }
                found
            }
        };
        match found {
            Some((stream_id, c)) if c == category => Ok(stream_id),
            _ => Err(ApiError::UnknownEntity(what)),
        }
    }
}

/// What a handler knows about the HTTP request besides its body.
#[derive(Debug)]
pub struct CommandContext {
    pub key: Option<Keyed>,
    pub metadata: Value,
}

impl CommandContext {
    /// Metadata stored with every event: correlation id (from `X-Correlation-Id`, or new),
    /// causation id (this request), and the actor. A correlation id is 1 to 128 visible ASCII
    /// characters: it is copied into every event and Kafka header, so it is bounded here.
    pub fn new(
        caller: &auth::Principal,
        headers: &HeaderMap,
        key: IdempotencyKey,
        hash: Vec<u8>,
        command: &str,
    ) -> Result<Self, ApiError> {
        // The actor of every event, and whose idempotency keys these are: one caller's key
        // never answers another's request.
        let principal = caller.actor();
        // The request's id (`problem::request_ids` put it there; it is in every log line of
        // the request too) is each event's causation id.
        let request_id = headers
            .get(problem::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned);
        let correlation = match headers.get("x-correlation-id") {
            None => request_id.clone(),
            Some(value) => value
                .to_str()
                .ok()
                .filter(|v| problem::valid_correlation_id(v))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "X-Correlation-Id must be 1 to 128 visible ASCII characters",
                        Some("X-Correlation-Id".into()),
                    )
                })?
                .to_owned(),
        };
        let mut metadata = json!({
            "correlationId": correlation,
            "causationId": request_id,
            "actor": principal,
            "command": command,
        });
        // The request's trace (ADR 12), for the append's span, the Kafka headers and the
        // projector's links.
        if let Some(traceparent) = service::telemetry::current_traceparent() {
            metadata["traceparent"] = Value::String(traceparent);
        }
        let key = key.0.map(|key| Keyed {
            principal,
            key,
            hash,
        });
        Ok(Self { key, metadata })
    }

    pub fn request<A: Decide>(
        self,
        command: A::Command,
        status: StatusCode,
        render: impl Fn(&A, &[A::Event]) -> Value + Send + Sync + 'static,
    ) -> Request<A> {
        Request {
            command,
            key: self.key,
            metadata: self.metadata,
            status: status.as_u16(),
            render: Box::new(render),
        }
    }
}

/// The user a command acts as when the domain checks ownership (a coupon's use, an order's
/// cancellation): a user principal; services and admins act for anyone.
pub fn acting(caller: &auth::Principal) -> Option<domain::values::UserId> {
    caller
        .acting_user()
        .and_then(|id| domain::values::UserId::parse(id, "userId").ok())
}

/// Turns a writer's answer into the HTTP response: the body plus `version` and `position`.
pub fn respond(result: Result<Committed, WriteError>) -> Response {
    match result {
        Ok(committed) => {
            let mut body = committed.body;
            body["version"] = json!(committed.version);
            body["position"] = json!(committed.position);
            let status = StatusCode::from_u16(committed.status).unwrap_or(StatusCode::OK);
            let mut response = (status, Json(body)).into_response();
            if committed.replayed {
                response
                    .headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            response
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The whole router.
/// The whole router, with the server's limits: body size (413 past it), requests in flight
/// and a deadline per request (503 past them).
pub fn app(state: AppState, server: &settings::ServerSettings) -> Router {
    extract::MAX_BODY_BYTES.store(server.max_body_bytes, std::sync::atomic::Ordering::Relaxed);
    let limits = problem::Limits::new(
        server.max_in_flight,
        std::time::Duration::from_millis(server.request_timeout_ms),
    );
    let gate = axum::middleware::from_fn_with_state(state.access.gate.clone(), auth::http::gate);
    Router::new()
        .merge(routes::router().route_layer(gate))
        .merge(routes::accounts::open_router())
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(service::metrics::scrape))
        .merge(problem::openapi::docs(openapi::DOCS, openapi::document()))
        .fallback(not_found)
        .method_not_allowed_fallback(problem::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(server.max_body_bytes))
        .layer(axum::middleware::map_response(problem::bodiless_refusals))
        .layer(axum::middleware::from_fn_with_state(limits, problem::limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(service::metrics::track_http))
        // Outermost: the trace layer's own lines (a 5xx is logged at ERROR) are in the span.
        .layer(axum::middleware::from_fn(problem::request_ids))
        .with_state(state)
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the event log answers.
async fn ready(State(state): State<AppState>) -> Response {
    match sqlx::query("SELECT 1").execute(state.log.pool()).await {
        Ok(_) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => ApiError::Unavailable(e.to_string()).into_response(),
    }
}

async fn not_found() -> Response {
    ApiError::UnknownEntity("resource").into_response()
}

/// The command API bound to its port, ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    log: EventLog,
    kafka: Option<settings::KafkaSettings>,
    idempotency: settings::IdempotencySettings,
}

impl Application {
    /// Connects to the event log, applies migrations, binds the port.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let log = EventLog::connect(
            settings.database.url.expose_secret(),
            settings.database.max_connections,
        )
        .await?;
        Self::build_with_log(settings, log).await
    }

    /// As [`Application::build`], over an existing pool (tests pass a fresh database).
    pub async fn build_with_log(settings: Settings, log: EventLog) -> Result<Self, StartupError> {
        log.migrate().await?;
        let listener =
            TcpListener::bind((settings.server.host.as_str(), settings.server.port)).await?;
        let access = Access::from_settings(&settings).await?;
        let router = app(
            AppState::new(log.clone(), &settings, access),
            &settings.server,
        );
        Ok(Self {
            listener,
            router,
            log,
            kafka: settings.kafka,
            idempotency: settings.idempotency,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves (and relays events to Kafka, when configured) until `shutdown` completes, then
    /// finishes the requests in flight and stops the relay — each within a bounded grace
    /// period, so a stuck connection or broker cannot keep the process (and the relay's
    /// leader lock) alive forever.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        const REQUEST_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
        const RELAY_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let relay = match self.kafka {
            Some(kafka) => Some(relay::spawn(
                self.log.pool().connect_options().as_ref().clone(),
                relay::Kafka {
                    brokers: kafka.brokers,
                    topic_prefix: kafka.topic_prefix,
                    max_request_bytes: kafka.max_request_bytes,
                },
                stopped,
            )?),
            None => None,
        };
        let cleanup = tokio::spawn(expire_idempotency_keys(
            self.log.clone(),
            self.idempotency.clone(),
            stop.subscribe(),
        ));
        let (signalled, mut signal) = tokio::sync::watch::channel(false);
        let serve = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = signalled.send(true);
        })
        .into_future();
        let grace_over = async move {
            while !*signal.borrow_and_update() {
                if signal.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            tokio::time::sleep(REQUEST_GRACE).await;
        };
        let served = tokio::select! {
            served = serve => served,
            () = grace_over => {
                tracing::warn!("requests still open after the grace period; closing them");
                Ok(())
            }
        };
        let _ = stop.send(true);
        let _ = cleanup.await;
        if let Some(relay) = relay {
            if tokio::time::timeout(RELAY_GRACE, relay.stopped())
                .await
                .is_err()
            {
                tracing::warn!("the relay did not stop within its grace period");
            }
        }
        served
    }
}

/// Deletes stored answers of idempotency keys past their retention, every
/// `cleanup_every_seconds`, a thousand at a time until none is left; a failure is logged and
/// tried again at the next round. Stops at once when `stop` turns true.
async fn expire_idempotency_keys(
    log: EventLog,
    settings: settings::IdempotencySettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    const BATCH: i64 = 1_000;
    let retention = std::time::Duration::from_secs(settings.retention_hours.saturating_mul(3600));
    let every = std::time::Duration::from_secs(settings.cleanup_every_seconds.max(1));
    let mut failing = false;
    loop {
        let round = async {
            let mut total = 0;
            loop {
                let deleted = log.delete_expired_keys(retention, BATCH).await?;
                total += deleted;
                if deleted < BATCH as u64 {
                    return Ok::<u64, eventlog::StoreError>(total);
                }
                // Between batches, a pause: appends go first.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        let outcome = tokio::select! {
            outcome = round => outcome,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        match outcome {
            Ok(deleted) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("idempotency keys expire again");
                }
                if deleted > 0 {
                    tracing::info!(deleted, "expired idempotency keys deleted");
                }
            }
            Err(e) => {
                failing = true;
                tracing::warn!(error = %e, "expiring idempotency keys failed; trying again later");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}
