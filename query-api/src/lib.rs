//! The query API: every read endpoint of docs/product.md, served only from the read models — Redis
//! first for hot values (balances, stock, counts), PostgreSQL for the rest and whenever Redis
//! is down or misses. A client may send the `position` a command returned as `X-Min-Position`:
//! the answer then waits (bounded) until the projections have reached it. A read of an
//! aggregate whose events the projector had to park answers 503 `PROJECTION_FAULTED`, naming
//! the first parked position, until an operator repairs it (`replay-tools retry`).

mod consistency;
mod error;
mod hot;
pub mod openapi;
mod routes;
pub mod settings;
mod state;

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

pub use crate::error::QueryError;
pub use crate::hot::Hot;
use crate::settings::Settings;
pub use crate::state::AppState;
use crate::state::SaleCache;

/// The whole router: the read routes (behind the gate, then read-your-writes) inside the edge
/// every server shares (health, readiness, metrics, documents, request ids, load shedding,
/// deadlines).
pub fn app(state: AppState, server: &settings::ServerSettings) -> Router {
    let edge = problem::edge::Edge::new(server, state.pool.clone())
        .with_docs(openapi::DOCS, openapi::document());
    let gate = axum::middleware::from_fn_with_state(state.gate.clone(), auth::http::gate);
    // The gate first (outermost): an unauthenticated request never waits for consistency.
    let consistency = axum::middleware::from_fn_with_state(state.clone(), consistency::consistency);
    edge.around(
        routes::router()
            .route_layer(consistency)
            .route_layer(gate)
            .with_state(state),
    )
}

#[derive(Debug)]
pub struct Application {
    listener: problem::edge::Guarded,
    router: Router,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(settings.database.max_connections)
            // Longer than a read's deadline, which covers the wait for a connection.
            .acquire_timeout(
                Duration::from_millis(settings.database.timeout_ms) + Duration::from_secs(1),
            )
            .connect(settings.database.url.expose_secret())
            .await?;
        // The projector owns the schema; creating it here too lets the query API start first.
        readmodel::generation::ensure(&pool, &settings.schema, &settings.redis.prefix).await?;
        let live = readmodel::generation::current(&pool, &settings.schema).await?;
        readmodel::projection::ensure_schema(&pool, &live.schema).await?;
        let live = Arc::new(RwLock::new(Arc::new(live)));
        let database_deadline = Duration::from_millis(settings.database.timeout_ms.max(1));
        let hot = Hot::new(
            redis::Client::open(settings.redis.url.as_str())?,
            Duration::from_millis(settings.redis.timeout_ms.max(1)),
            pool.clone(),
            live.clone(),
            database_deadline,
        );
        settings.auth.check_exposure(&settings.server.host)?;
        let state = AppState {
            pool,
            hot,
            live,
            faults: Default::default(),
            faults_refresh: Default::default(),
            consistency_wait: Duration::from_millis(settings.consistency_wait_ms),
            log_head: Default::default(),
            log_head_read_at: Default::default(),
            sales: SaleCache::default(),
            database: state::Database::new(database_deadline),
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
        tokio::spawn(state::follow_generation(
            state.clone(),
            settings.schema.clone(),
            Duration::from_millis(settings.generation_poll_ms.max(1)),
        ));
        let listener = settings
            .server
            .guard(TcpListener::bind((settings.server.host.as_str(), settings.server.port)).await?);
        Ok(Self {
            listener,
            router: app(state, &settings.server),
        })
    }

    pub fn port(&self) -> u16 {
        axum::serve::Listener::local_addr(&self.listener)
            .map(|a| a.port())
            .unwrap_or(0)
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
