//! What every server of the system puts around its routes, built here once for command-api,
//! query-api and the projector: `/health` (the process answers), `/ready` (its database
//! answers), `/metrics`, the API's documents, request ids, load shedding and a deadline per
//! request, a body limit, the client's address ([`crate::client`]), and problem+json for every
//! refusal, its own 404 and 405 included.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::{body, response, Limits};

/// `[server]` of every service's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind; keep 127.0.0.1 unless a proxy in front needs otherwise.
    pub host: String,
    /// Port to bind; 0 picks a free one (tests).
    pub port: u16,
    /// Largest request body, in bytes; a larger one answers 413. A command is a few hundred
    /// bytes; 64 KiB leaves room for the longest texts.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Longest time, in milliseconds, a request may take before it answers 503 `TIMEOUT`
    /// (the query API's must exceed its read-your-writes wait).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Requests served at once; past it a new one answers 503 `OVERLOADED` at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Connections held at once (never more than the process's descriptor limit allows);
    /// past it a new one is closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A new connection must send its first byte within this, in milliseconds; a request's
    /// answer must begin within this plus `request_timeout_ms` of the request's first byte (a
    /// client trickling its head or body is cut off).
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// A keep-alive connection idle this long between requests is closed, in milliseconds.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Proxies in front (the gateway) whose `X-Forwarded-For` names the client for
    /// per-address limits: addresses or networks separated by commas; none by default (the
    /// TCP peer is the client).
    #[serde(default)]
    pub trusted_proxies: crate::client::TrustedProxies,
}

fn default_max_body_bytes() -> usize {
    64 * 1024
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_max_in_flight() -> usize {
    4_096
}
fn default_max_connections() -> usize {
    10_000
}
fn default_header_read_timeout_ms() -> u64 {
    10_000
}
fn default_idle_timeout_ms() -> u64 {
    // Longer than the gateway keeps an idle upstream connection (deploy/nginx: 30 s), so the
    // gateway, not the API, closes one: a request sent on a closing connection would be a 502.
    75_000
}

impl ServerSettings {
    /// The connection limits these settings give ([`crate::connections`]), the cap lowered
    /// below the process's descriptor limit when that is lower (with a warning).
    pub fn connection_limits(&self) -> crate::connections::ConnectionLimits {
        let header = Duration::from_millis(self.header_read_timeout_ms.max(1));
        crate::connections::ConnectionLimits {
            max_connections: crate::connections::within_descriptor_limit(self.max_connections),
            first_byte: header,
            idle: Duration::from_millis(self.idle_timeout_ms.max(1)),
            request: header + Duration::from_millis(self.request_timeout_ms),
        }
    }

    /// `listener`, guarded by [`ServerSettings::connection_limits`]: serve with it.
    pub fn guard(&self, listener: tokio::net::TcpListener) -> Guarded {
        use axum::serve::ListenerExt;
        crate::connections::Guarded::new(listener, self.connection_limits()).tap_io(|_| ())
    }
}

/// A listener as the servers serve on: guarded ([`crate::connections::Guarded`]), with the
/// client's address for `ConnectInfo` (which axum gives a tapped listener).
pub type Guarded =
    axum::serve::TapIo<crate::connections::Guarded, fn(&mut crate::connections::Timed)>;

/// A service's API document: Swagger UI at `ui`, the document at `{ui}/openapi.json`.
#[derive(Clone)]
pub struct Docs {
    pub ui: &'static str,
    pub document: utoipa::openapi::OpenApi,
}

/// The edge of one server: its limits, the database its readiness is, its documents.
#[derive(Debug, Clone)]
pub struct Edge {
    server: ServerSettings,
    database: sqlx::PgPool,
    docs: Option<Docs>,
}

impl std::fmt::Debug for Docs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Docs")
            .field("ui", &self.ui)
            .finish_non_exhaustive()
    }
}

impl Edge {
    /// Ready while `database` answers.
    pub fn new(server: &ServerSettings, database: sqlx::PgPool) -> Self {
        Self {
            server: server.clone(),
            database,
            docs: None,
        }
    }

    /// Serves the API's documents too.
    pub fn with_docs(mut self, ui: &'static str, document: utoipa::openapi::OpenApi) -> Self {
        self.docs = Some(Docs { ui, document });
        self
    }

    /// `api` (its state given) inside the edge. Liveness, readiness and metrics are never shed
    /// (see [`crate::limit`]); everything else is, and answers within the deadline.
    pub fn around(self, api: Router) -> Router {
        let limits = Limits::new(
            self.server.max_in_flight,
            Duration::from_millis(self.server.request_timeout_ms),
        );
        let trusted = std::sync::Arc::new(self.server.trusted_proxies.clone());
        let probes = Router::new()
            .route("/health", get(health))
            .route("/ready", get(ready))
            .with_state(self.database);
        let mut router = api
            .merge(probes)
            .route("/metrics", get(service::metrics::scrape));
        if let Some(docs) = self.docs {
            router = router.merge(crate::openapi::docs(docs.ui, docs.document));
        }
        router
            .fallback(not_found)
            .method_not_allowed_fallback(crate::method_not_allowed)
            .layer(axum::extract::DefaultBodyLimit::max(
                self.server.max_body_bytes,
            ))
            .layer(axum::middleware::from_fn_with_state(
                trusted,
                crate::client::client_address,
            ))
            .layer(axum::middleware::map_response(crate::bodiless_refusals))
            .layer(axum::middleware::from_fn_with_state(limits, crate::limit))
            .layer(tower_http::trace::TraceLayer::new_for_http())
            .layer(axum::middleware::from_fn(service::metrics::track_http))
            // Outermost: the trace layer's own lines (a 5xx is logged at ERROR) are in the span.
            .layer(axum::middleware::from_fn(crate::request_ids))
    }
}

async fn health() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// How long `/ready` waits for the database: within an orchestrator's probe timeout.
const READY_WITHIN: Duration = Duration::from_secs(1);

/// 200 while the database answers within [`READY_WITHIN`]; 503 problem+json `UNAVAILABLE`
/// otherwise.
async fn ready(State(database): State<sqlx::PgPool>) -> Response {
    let probe = sqlx::query("SELECT 1").execute(&database);
    match tokio::time::timeout(READY_WITHIN, probe).await {
        Ok(Ok(_)) => Json(json!({ "status": "ready" })).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: the database does not answer");
            unavailable()
        }
        Err(_) => {
            tracing::warn!("not ready: the database did not answer within a second");
            unavailable()
        }
    }
}

/// 503 `UNAVAILABLE`: a dependency does not answer (the cause is logged, never sent).
pub fn unavailable() -> Response {
    let status = StatusCode::SERVICE_UNAVAILABLE;
    response(
        status,
        body(
            status,
            "UNAVAILABLE",
            "a dependency is unavailable; retry later",
            None,
        ),
    )
}

/// 404 `NOT_FOUND` for a path no route has.
pub async fn not_found() -> Response {
    let status = StatusCode::NOT_FOUND;
    response(
        status,
        body(status, "NOT_FOUND", crate::NO_SUCH_RESOURCE, None),
    )
}
