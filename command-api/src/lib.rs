//! The command API: the HTTP door ([`http`]) onto the command layer ([`commands`]), which runs
//! every command through one in-memory writer per aggregate ([`writer`], group-committed to the
//! PostgreSQL event log) and answers with the created ids, the aggregate's new version and the
//! global position of its last event. This root builds the router ([`app`]) and the
//! [`Application`]: the server, the relay and the expiry of idempotency keys.

pub mod cluster;
pub mod commands;
mod deadlines;
pub mod http;
pub mod known;
mod refusal;
pub mod settings;
pub mod writer;

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use eventlog::EventLog;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::commands::accounts::Accounts;
use crate::commands::{CommandError, Commands};
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("event log: {0}")]
    Store(#[from] eventlog::StoreError),
    #[error("accounts: {0}")]
    Accounts(#[from] sqlx::migrate::MigrateError),
    #[error("binding the listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("authentication: {0}")]
    Auth(auth::AuthError),
    #[error("settings: {0}")]
    Settings(String),
}

/// Who may call, and how often (ADR 11): the gate in front of the routes, and sign-in.
#[derive(Debug)]
pub struct Access {
    pub gate: auth::http::Gate,
    pub accounts: Accounts,
}

impl Access {
    pub async fn from_settings(settings: &Settings) -> Result<Self, StartupError> {
        let auth = &settings.auth;
        auth.check_exposure(&settings.server.host)
            .map_err(StartupError::Auth)?;
        // The gRPC door verifies forwarded tokens with the same settings: off loopback, the
        // same rules hold for it.
        if let Some(cluster) = &settings.cluster {
            auth.check_exposure(&cluster.grpc_host)
                .map_err(StartupError::Auth)?;
        }
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
        let accounts = Accounts::new(
            minter,
            login_limiter,
            Duration::from_secs(auth.login_ttl_seconds),
            settings.rate_limit.logins_per_account,
            settings.rate_limit.logins_per_address,
        )
        .await
        .map_err(|e: CommandError| StartupError::Auth(auth::AuthError::Settings(e.to_string())))?;
        Ok(Self {
            gate: auth::http::Gate {
                authenticator,
                limiter,
            },
            accounts,
        })
    }
}

/// Applies the event log's migrations and the accounts table's.
pub async fn migrate(log: &EventLog) -> Result<(), StartupError> {
    log.migrate().await?;
    commands::accounts::migrate(log.pool()).await?;
    Ok(())
}

/// The whole router: the HTTP door inside the edge every server shares (health, readiness,
/// metrics, documents, request ids, body limit, load shedding, deadlines).
pub fn app(
    commands: Commands,
    gate: auth::http::Gate,
    server: &settings::ServerSettings,
) -> Router {
    http::extract::MAX_BODY_BYTES
        .store(server.max_body_bytes, std::sync::atomic::Ordering::Relaxed);
    let edge = problem::edge::Edge::new(server, commands.log.pool().clone())
        .with_docs(http::openapi::DOCS, http::openapi::document());
    let gate = axum::middleware::from_fn_with_state(gate, auth::http::gate);
    edge.around(
        Router::new()
            .merge(http::gated().route_layer(gate))
            .merge(http::open())
            .with_state(commands),
    )
}

/// The command API bound to its port, ready to run.
#[derive(Debug)]
pub struct Application {
    listener: problem::edge::Guarded,
    router: Router,
    log: EventLog,
    kafka: Option<settings::KafkaSettings>,
    idempotency: settings::IdempotencySettings,
    member: Option<Member>,
    /// For the deadlines (a hold's expiry), and how often they are looked at.
    commands: Commands,
    deadline_poll: std::time::Duration,
}

/// This instance as a member of a cluster: its place, its settings, and its gRPC door bound
/// to its port.
#[derive(Debug)]
struct Member {
    cluster: cluster::Cluster,
    settings: settings::ClusterSettings,
    door: cluster::Door,
    listener: TcpListener,
    address: String,
    /// The HTTP edge's bounds, which the door keeps too: the longest a call may run, and the
    /// calls served at once per connection.
    request_timeout: std::time::Duration,
    max_in_flight: usize,
}

impl Application {
    /// Connects to the event log, applies migrations, binds the port.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let url = settings.database.url.expose_secret();
        let log = match &settings.cluster {
            None => EventLog::connect(url, settings.database.max_connections).await?,
            // In a cluster, a member frozen (SIGSTOP) inside an append would hold the log's
            // head lock, and every member's appends with it, for as long as it stays frozen:
            // PostgreSQL ends such a session after one lease time, when the others take over.
            Some(cluster) => {
                let options = std::str::FromStr::from_str(url)
                    .map(|o: sqlx::postgres::PgConnectOptions| {
                        o.options([(
                            "idle_in_transaction_session_timeout",
                            format!("{}s", cluster.lease_ttl_seconds),
                        )])
                    })
                    .map_err(eventlog::StoreError::from)?;
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(settings.database.max_connections)
                    .connect_with(options)
                    .await
                    .map_err(eventlog::StoreError::from)?;
                EventLog::from_pool(pool)
            }
        };
        Self::build_with_log(settings, log).await
    }

    /// As [`Application::build`], over an existing pool (tests pass a fresh database).
    pub async fn build_with_log(settings: Settings, log: EventLog) -> Result<Self, StartupError> {
        settings.check().map_err(StartupError::Settings)?;
        migrate(&log).await?;
        let listener = settings
            .server
            .guard(TcpListener::bind((settings.server.host.as_str(), settings.server.port)).await?);
        let access = Access::from_settings(&settings).await?;
        let cluster = settings.cluster.as_ref().map(cluster::Cluster::new);
        let commands = Commands::new(log.clone(), &settings, access.accounts, cluster.clone());
        let member = match (cluster, settings.cluster) {
            (Some(cluster), Some(cluster_settings)) => {
                let listener = TcpListener::bind((
                    cluster_settings.grpc_host.as_str(),
                    cluster_settings.grpc_port,
                ))
                .await?;
                let bound = listener.local_addr()?;
                let address = cluster_settings.advertise.clone().unwrap_or_else(|| {
                    if bound.ip().is_unspecified() {
                        format!("{}:{}", settings::hostname(), bound.port())
                    } else {
                        bound.to_string()
                    }
                });
                tracing::info!(port = bound.port(), %address, node = %cluster_settings.node, "cluster door listening");
                Some(Member {
                    cluster,
                    settings: cluster_settings,
                    door: cluster::Door {
                        commands: commands.clone(),
                        authenticator: access.gate.authenticator.clone(),
                    },
                    listener,
                    address,
                    request_timeout: std::time::Duration::from_millis(
                        settings.server.request_timeout_ms,
                    ),
                    max_in_flight: settings.server.max_in_flight,
                })
            }
            _ => None,
        };
        let router = app(commands.clone(), access.gate, &settings.server);
        Ok(Self {
            listener,
            router,
            log,
            kafka: settings.kafka,
            idempotency: settings.idempotency,
            member,
            commands,
            deadline_poll: std::time::Duration::from_millis(
                settings.holds.deadline_poll_ms.max(10),
            ),
        })
    }

    pub fn port(&self) -> u16 {
        axum::serve::Listener::local_addr(&self.listener)
            .map(|a| a.port())
            .unwrap_or(0)
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
        let (follower, firer) =
            deadlines::spawn(self.commands, self.deadline_poll, stop.subscribe());
        let cleanup = tokio::spawn(expire_idempotency_keys(
            self.log.clone(),
            self.idempotency.clone(),
            stop.subscribe(),
        ));
        let (signalled, mut signal) = tokio::sync::watch::channel(false);
        // In a cluster: the gRPC door, and membership, which ends (revoking the lease, so the
        // others take over at once) as soon as the shutdown signal comes.
        let member = self.member.map(|member| {
            let mut stopping = signal.clone();
            let until_signalled = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            let incoming = tonic::transport::server::TcpIncoming::from(member.listener)
                .with_nodelay(Some(true));
            let door = tokio::spawn(
                tonic::transport::Server::builder()
                    // A call without `grpc-timeout` does not hold a handler for ever (the HTTP
                    // edge's request deadline), and a peer's connection has at most as many
                    // calls served at once as the edge's in-flight bound; more wait, within
                    // their deadline.
                    .timeout(member.request_timeout)
                    .concurrency_limit_per_connection(member.max_in_flight)
                    .http2_keepalive_interval(Some(std::time::Duration::from_secs(5)))
                    .http2_keepalive_timeout(Some(std::time::Duration::from_secs(2)))
                    .add_service(member.door.service())
                    .serve_with_incoming_shutdown(incoming, until_signalled),
            );
            let membership = member
                .cluster
                .join(member.settings, member.address, signal.clone());
            (door, membership)
        });
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
        let _ = follower.await;
        let _ = firer.await;
        if let Some((door, membership)) = member {
            let _ = tokio::time::timeout(RELAY_GRACE, membership).await;
            // Forwarded commands in flight finish (bounded, like the HTTP requests').
            if tokio::time::timeout(std::time::Duration::from_secs(1), door)
                .await
                .is_err()
            {
                tracing::warn!("forwarded commands still open after the grace period");
            }
        }
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
