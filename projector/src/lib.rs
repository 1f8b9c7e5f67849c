//! The projector: follows the event log itself, in position order, and applies every event to
//! the read models the query API serves — PostgreSQL tables of the live read-model
//! generation, hot values in Redis — then raises the watermark below which every event is
//! projected (read-your-writes). Kafka plays no part: it is the contract for consumers
//! outside this system (ADR 8), so a broker outage never stops the read side.
//!
//! Per batch (up to [`MAX_BATCH`] events after the watermark): in one PostgreSQL transaction
//! on the leader's own connection, apply the events (parking what cannot be applied, so one
//! bad event never halts the rest: [`readmodel::parked`]) and move the watermark; then the
//! guarded Redis writes; then the watermark in Redis. A crash anywhere resumes from the
//! watermark committed with the read models, and every step is idempotent anyway.
//!
//! Woken by the append's notification ([`eventlog::appends`]), with a poll every [`POLL`] as
//! the fallback. One projector per read-model schema is active, holding an advisory lock
//! ([`eventlog::leader`]); others stand by. Any failure of the database or Redis is logged
//! and retried after a pause that grows to [`RETRY_MAX`]; the recovery is logged too. Stops
//! at once on the stop signal, also while it waits or retries: nothing a batch did counts
//! before its commit.

pub mod settings;

use std::convert::Infallible;
use std::time::Duration;

use eventlog::appends::Appends;
use eventlog::leader::Leader;
use eventlog::{EventLog, RecordedEvent};
use readmodel::generation::{self, Generation};
use readmodel::hot::{self, HotStore};
use readmodel::parked::{self, Projected};
use readmodel::projection::{self, checked_schema, AnyEvent};
use readmodel::{watermark, ReadModelError};
use secrecy::ExposeSecret;
use sqlx::Connection;
use tokio::sync::watch;

use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event log: {0}")]
    Store(#[from] eventlog::StoreError),
}

/// Most events projected per transaction: a batch this size folds and writes in tens of
/// milliseconds, so freshness stays well under 100 ms while a sale runs.
pub const MAX_BATCH: i64 = 1_000;
/// Longest wait for an append notification before looking at the log anyway.
pub const POLL: Duration = Duration::from_millis(100);
/// First pause after a failure; it doubles with each failure in a row up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
pub const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often (in lag samples, one a second) the parked-events gauge is read.
const PARKED_SAMPLE_EVERY: u64 = 5;

/// `/health` (the process answers), `/ready` (its database answers: 503 otherwise) and
/// `/metrics` on `listener`, inside the edge every server shares, until `stop` turns true.
pub async fn serve_health(
    listener: tokio::net::TcpListener,
    settings: &Settings,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy(settings.database.url.expose_secret())
        .map_err(std::io::Error::other)?;
    let app = problem::edge::Edge::new(&settings.server, pool).around(axum::Router::new());
    axum::serve(settings.server.guard(listener), app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await
}

/// Runs the projector until `stop` turns true.
pub async fn run(
    settings: Settings,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ProjectorError> {
    // Lazy: a database that is down at start is waited for like one that goes down later.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy(settings.database.url.expose_secret())?;
    checked_schema(&settings.schema)?;
    tokio::spawn(sample_gauges(
        pool.clone(),
        settings.schema.clone(),
        stop.clone(),
    ));
    let appends = Appends::listen(pool.clone());
    let mut failures: u32 = 0;
    loop {
        let mut standby = stop.clone();
        let error = tokio::select! {
            error = lead(&pool, &settings, &appends, &mut standby, &mut failures) => error,
            _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
        };
        let Some(error) = error else { return Ok(()) };
        failures += 1;
        metrics::counter!("background_failures_total", "loop" => "projector").increment(1);
        let delay = RETRY_FIRST
            .saturating_mul(2u32.saturating_pow(failures - 1))
            .min(RETRY_MAX);
        tracing::warn!(error = %error, failures, retry_in_ms = delay.as_millis() as u64, "projector failed; resuming from the watermark");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
        }
    }
}

/// Takes the lock, then projects until something fails: returns the failure (`None` once
/// stopped while standing by).
async fn lead(
    pool: &sqlx::PgPool,
    settings: &Settings,
    appends: &Appends,
    stop: &mut watch::Receiver<bool>,
    failures: &mut u32,
) -> Option<ProjectorError> {
    let base = settings.schema.as_str();
    let following: Result<Option<Infallible>, ProjectorError> = async {
        generation::ensure(pool, base, &settings.redis.prefix).await?;
        let Some(mut leader) = Leader::acquire(pool, &format!("projector:{base}"), stop).await?
        else {
            return Ok(None);
        };
        let mut live = generation::current(pool, base).await?;
        projection::ensure_schema(pool, &live.schema).await?;
        let mut hot = HotStore::new(&settings.redis.url, &live.prefix)
            .map_err(ReadModelError::from)?
            .with_deadline(Duration::from_millis(settings.redis.timeout_ms.max(1)));
        let mut position = watermark::read(pool, &live.schema).await?;
        let log = EventLog::from_pool(pool.clone());
        tracing::info!(schema = %live.schema, generation = live.number, position, "projector following the log");
        loop {
            // Read right before applying, not ahead of time: an event committed while a batch
            // applies is in the next batch, so it waits at most about two batches.
            let events = read_page(&log, position).await?;
            if *failures > 0 && events.is_empty() {
                tracing::info!(failures = *failures, position, "projector recovered; the log is projected");
                *failures = 0;
            }
            let Some(last) = events.last().map(|(e, _)| e.position) else {
                refresh_hot(&mut hot, pool, &live.schema, position).await;
                appends.next(POLL).await;
                continue;
            };
            let started = std::time::Instant::now();
            let count = events.len();
            let span = batch_span(&events);
            let step = {
                use tracing::Instrument;
                project_batch(&mut leader, base, &live, position, events)
                    .instrument(span)
                    .await?
            };
            match step {
                Step::Projected(done) => {
                    refresh_hot(&mut hot, pool, &live.schema, position).await;
                    hot.publish(&hot::hot_writes(hot.prefix(), &done.projected), last)
                        .await;
                    report_parked(&done.parked);
                    record_batch(started, count, done.applied, done.parked.len());
                    tracing::debug!(
                        position = last, events = count, applied = done.applied, parked = done.parked.len(),
                        ms = started.elapsed().as_secs_f64() * 1e3, "batch projected"
                    );
                    position = last;
                    if *failures > 0 {
                        tracing::info!(failures = *failures, position, "projector recovered");
                        *failures = 0;
                    }
                }
                Step::Moved { live: next, position: at } => {
                    if next != live {
                        tracing::info!(schema = %next.schema, generation = next.number, position = at, "following a new read-model generation");
                        hot.set_prefix(&next.prefix);
                        live = next;
                    }
                    position = at;
                }
            }
        }
    }
    .await;
    match following {
        Ok(None) => None,
        Ok(Some(never)) => match never {},
        Err(e) => Some(e),
    }
}

/// Events of the log right after a position, each with its decoded domain event.
type Page = Vec<(RecordedEvent, Result<AnyEvent, ReadModelError>)>;

async fn read_page(log: &EventLog, after: i64) -> Result<Page, eventlog::StoreError> {
    Ok(parked::decode_all(log.read_all(after, MAX_BATCH).await?))
}

/// What one batch did.
enum Step {
    Projected(Projected),
    /// Nothing applied: the live generation or its watermark is not what this projector
    /// thought (a rebuild switched generations), so it goes on from there.
    Moved {
        live: Generation,
        position: i64,
    },
}

/// Projects `events` (the log right after `position`) into the live generation and moves its
/// watermark, in one transaction on the leader's connection: the read models and the
/// watermark move together, and only while this process holds the lock.
async fn project_batch(
    leader: &mut Leader,
    base: &str,
    live: &Generation,
    position: i64,
    events: Page,
) -> Result<Step, ProjectorError> {
    let last = events.last().map_or(position, |(e, _)| e.position);
    let mut tx = leader.connection().begin().await?;
    // One round trip for the pointer (FOR SHARE: a rebuild's switch, FOR UPDATE, waits for this
    // batch and the other way round), the watermark, and whether anything is parked: under a
    // flash sale each round trip waits for a core, so the batch keeps them few.
    let (number, schema, prefix, stored, any_parked): (i64, String, String, i64, bool) =
        sqlx::query_as(&format!(
            "SELECT g.generation, g.schema_name, g.redis_prefix, w.position, \
               EXISTS (SELECT 1 FROM {s}.parked_events) \
             FROM public.read_model_generations g, {s}.projection_watermark w \
             WHERE g.deployment = $1 FOR SHARE OF g FOR UPDATE OF w",
            s = live.schema
        ))
        .bind(base)
        .fetch_one(&mut *tx)
        .await?;
    checked_schema(&schema)?;
    let locked = Generation {
        number,
        schema,
        prefix,
    };
    if locked != *live || stored != position {
        tx.rollback().await?;
        let position = if locked == *live {
            stored
        } else {
            watermark::read(leader.connection(), &locked.schema).await?
        };
        return Ok(Step::Moved {
            live: locked,
            position,
        });
    }
    let done = parked::project_decoded(&mut tx, &live.schema, events, any_parked).await?;
    watermark::set(&mut tx, &live.schema, last).await?;
    tx.commit().await?;
    Ok(Step::Projected(done))
}

/// The span of one projected batch, linked to the traces of its events (at most 128; the
/// relay's Kafka headers carry the same contexts). Disabled when traces are off.
fn batch_span(events: &Page) -> tracing::Span {
    if !service::telemetry::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!("projector.batch", events = events.len());
    let mut seen = std::collections::HashSet::new();
    events
        .iter()
        .filter_map(|(e, _)| e.metadata.get("traceparent").and_then(|t| t.as_str()))
        .filter(|t| seen.insert(*t))
        .take(128)
        .for_each(|traceparent| service::telemetry::add_link(&span, traceparent));
    span
}

/// `projector_lag_events` (the log head minus the live generation's watermark) every second
/// and `projector_parked_events` every five, from the database, whatever the projector's
/// loop is doing (`replay-tools retry` empties the parked table from another process).
async fn sample_gauges(pool: sqlx::PgPool, base: String, stop: watch::Receiver<bool>) {
    let log = EventLog::from_pool(pool.clone());
    let parked_events = metrics::gauge!("projector_parked_events");
    let mut tick: u64 = 0;
    let watermark = move || {
        let (pool, base, parked_events) = (pool.clone(), base.clone(), parked_events.clone());
        tick += 1;
        let count_parked = tick % PARKED_SAMPLE_EVERY == 1;
        async move {
            let live = generation::current(&pool, &base)
                .await
                .map_err(|e| e.to_string())?;
            // A failed count leaves the gauge as it was; the lag is sampled regardless.
            if count_parked {
                if let Ok(parked) = parked::count(&pool, &live.schema).await {
                    parked_events.set(parked as f64);
                }
            }
            watermark::read(&pool, &live.schema)
                .await
                .map_err(|e| e.to_string())
        }
    };
    eventlog::sample_lag(log, "projector_lag_events", watermark, stop).await;
}

/// The batch's series: its time and size, and its events by outcome.
fn record_batch(started: std::time::Instant, events: usize, applied: usize, parked: usize) {
    metrics::histogram!("projector_batch_duration_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("projector_batch_size").record(events as f64);
    metrics::counter!("projector_events_total", "outcome" => "applied").increment(applied as u64);
    metrics::counter!("projector_events_total", "outcome" => "parked").increment(parked as u64);
}

/// Logs what a batch parked: each event that failed on its own, and how many queued behind
/// one (a hot aggregate may queue thousands: one line per batch for those).
fn report_parked(parked: &[readmodel::parked::Parked]) {
    let mut behind = 0;
    for event in parked {
        if event.attempts == 0 {
            behind += 1;
            continue;
        }
        tracing::error!(
            position = event.position, event_type = %event.event_type,
            aggregate_id = %event.aggregate_id, error = %event.error,
            "event parked: the read model of its aggregate is faulted until `replay-tools retry`"
        );
    }
    if behind > 0 {
        tracing::warn!(
            events = behind,
            "events parked behind an earlier parked event of their aggregate"
        );
    }
}

/// After a Redis failure, once Redis answers: rewrite its values from the read models, then
/// the watermark (the rewrite starts by dropping every key of the prefix).
async fn refresh_hot(hot: &mut HotStore, pool: &sqlx::PgPool, schema: &str, position: i64) {
    if hot.is_dirty() && hot.resync_if_dirty(pool, schema).await {
        hot.raise_watermark(position).await;
    }
}
