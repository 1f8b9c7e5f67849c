//! replay-tools: the operator's tool for the day a projection is wrong, a read model gains a
//! column, or a downstream consumer lost its data.
//!
//! - [`rebuild`]: replay the event log from position 0, through the projector's own
//!   projection code, into a new read-model generation (schema + Redis prefix) while the live
//!   one keeps serving; catch up; switch every reader and the projector to it atomically;
//!   drop the old one (ADR 7).
//! - [`verify`]: project the log into a scratch schema up to exactly what the live read
//!   models reflect and compare them row by row, and Redis key by key.
//! - [`parked`] and [`retry`]: the events the projector parked, and applying them again once
//!   their cause is gone.
//! - [`republish`]: re-send a range of the log to Kafka through the relay's own publisher.
//! - [`stream`]: an aggregate's events (upcast, as every reader sees them) and its state after
//!   each.

mod replay;
mod stream;
mod verify;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use eventlog::leader::Leader;
use indicatif::ProgressBar;
use readmodel::generation::{self, Generation};
use readmodel::hot::HotStore;
use readmodel::parked::{self, Parked};
use readmodel::{projection, watermark};
use sqlx::PgPool;
use uuid::Uuid;

pub use crate::replay::Replayed;
pub use crate::stream::{stream, StreamEntry};
pub use crate::verify::{verify, VerifyReport};

/// Where the read models of one deployment live, and how to reach them.
#[derive(Debug, Clone)]
pub struct Target {
    pub pool: PgPool,
    pub redis_url: String,
    /// The deployment's base schema (`rm`): it names the deployment and generation 0.
    pub base: String,
    /// The deployment's base Redis key prefix (`promo:`).
    pub prefix: String,
}

impl Target {
    pub fn log(&self) -> eventlog::EventLog {
        eventlog::EventLog::from_pool(self.pool.clone())
    }
}

/// A read model that can be rebuilt on its own: its tables and the event categories that
/// feed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Projection {
    /// coupon_policies, coupons ← coupon events
    Coupons,
    /// point_balances, point_history ← point events
    Points,
    /// products, time_sales, orders, reservations ← product and time-sale events
    Sales,
}

impl Projection {
    pub const ALL: [Projection; 3] = [Projection::Coupons, Projection::Points, Projection::Sales];

    pub fn categories(self) -> &'static [&'static str] {
        match self {
            Projection::Coupons => &["coupon"],
            Projection::Points => &["point"],
            Projection::Sales => &["product", "timesale"],
        }
    }

    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Projection::Coupons => &["coupon_policies", "coupons"],
            Projection::Points => &["point_balances", "point_history"],
            Projection::Sales => &["products", "time_sales", "orders", "reservations"],
        }
    }
}

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub from: Generation,
    pub to: Generation,
    /// Events applied to the new generation (all phases).
    pub events: u64,
    /// Events the new generation parked (see `replay-tools parked`).
    pub parked: u64,
    /// Every event at or below this position is in the new generation.
    pub position: i64,
    /// From the first event read to the switch.
    pub elapsed: Duration,
}

impl RebuildReport {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Below this many events left, the catch-up stops and the switch takes the rest while
/// holding the generation lock (the projector waits that long).
const SWITCH_WITHIN: u64 = 2_000;

/// Rebuilds `projections` (the others are carried over from the live generation) into a new
/// generation and switches to it; after `grace` (for readers to follow the pointer and finish
/// in-flight queries) drops the old generation.
pub async fn rebuild(
    target: &Target,
    projections: &[Projection],
    grace: Duration,
    bar: &ProgressBar,
) -> anyhow::Result<RebuildReport> {
    let pool = &target.pool;
    let base = projection::checked_schema(&target.base)?;
    generation::ensure(pool, base, &target.prefix).await?;
    let _exclusive = exclusive(pool, base).await?;
    let live = generation::current(pool, base).await?;
    // A deployment whose projector never ran has no read models yet: empty ones.
    projection::ensure_schema(pool, &live.schema).await?;
    let next = Generation::new(base, &target.prefix, live.number + 1)?;
    tracing::info!(from = %live.schema, to = %next.schema, "rebuilding");

    // A rebuild that crashed may have left this generation half built.
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", next.schema))
        .execute(pool)
        .await?;
    projection::ensure_schema(pool, &next.schema).await?;

    let carried: Vec<Projection> = Projection::ALL
        .into_iter()
        .filter(|p| !projections.contains(p))
        .collect();
    // Per category, events at or below this position are already in the new generation.
    let wanted = replay::Filter {
        after: carry_over(pool, &live, &next, &carried).await?,
        skip: HashSet::new(),
    };

    let started = Instant::now();
    let log = target.log();
    bar.set_length(log.head().await?.max(1) as u64);
    // 1. The bulk: everything up to the head as it was, PostgreSQL only.
    let mut done =
        replay::replay(&log, pool, &next.schema, 0, i64::MAX, &wanted, None, bar).await?;
    // 2. Redis, in one pass from the new tables.
    let mut hot = HotStore::new(&target.redis_url, &next.prefix)?;
    if !hot.resync_if_dirty(pool, &next.schema).await {
        bail!("Redis is unavailable; the new generation's hot values cannot be written");
    }
    // 3. Catch up with what was appended meanwhile, Redis included.
    loop {
        bar.set_length(log.head().await?.max(1) as u64);
        let step = replay::replay(
            &log,
            pool,
            &next.schema,
            done.position,
            i64::MAX,
            &wanted,
            Some(&mut hot),
            bar,
        )
        .await?;
        done.absorb(&step);
        if step.read < SWITCH_WITHIN {
            break;
        }
    }
    // 4. The switch: lock the pointer (projector batches wait), take the last events, move
    //    the pointer — one transaction.
    let mut tx = pool.begin().await?;
    let locked = generation::current_locked(&mut tx, base, generation::Lock::Update).await?;
    if locked != live {
        bail!(
            "the live generation changed during the rebuild ({} → {}); nothing switched",
            live.schema,
            locked.schema
        );
    }
    let last = replay::replay_in(
        &log,
        &mut tx,
        &next.schema,
        done.position,
        &wanted,
        &mut hot,
    )
    .await?;
    done.absorb(&last);
    let position = done.position;
    // The projector goes on from here in the new generation (it sees the switch at its next
    // batch and reads this watermark).
    watermark::set(&mut tx, &next.schema, position).await?;
    // Redis before the commit: the moment readers follow the pointer, the values are there.
    if !hot.raise_watermark(position).await {
        bail!("Redis failed during the switch; nothing switched");
    }
    generation::point_to(&mut tx, base, &next).await?;
    tx.commit().await?;
    let elapsed = started.elapsed();
    bar.finish();
    tracing::info!(schema = %next.schema, position, "switched");

    tokio::time::sleep(grace).await;
    drop_generation(target, &live).await?;
    Ok(RebuildReport {
        from: live,
        to: next,
        events: done.applied,
        parked: done.parked,
        position,
        elapsed,
    })
}

/// Copies the carried projections' rows, versions and parked events from `live` into `next`,
/// from one snapshot; returns per carried category the position the copy reflects (its
/// watermark then).
async fn carry_over(
    pool: &PgPool,
    live: &Generation,
    next: &Generation,
    carried: &[Projection],
) -> anyhow::Result<HashMap<String, i64>> {
    let categories: Vec<&str> = carried
        .iter()
        .flat_map(|p| p.categories().iter().copied())
        .collect();
    if categories.is_empty() {
        return Ok(HashMap::new());
    }
    let (from, to) = (&live.schema, &next.schema);
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    for table in carried.iter().flat_map(|p| p.tables().iter()) {
        sqlx::query(&format!(
            "INSERT INTO {to}.{table} SELECT * FROM {from}.{table}"
        ))
        .execute(&mut *tx)
        .await?;
    }
    for table in ["aggregate_versions", "parked_events"] {
        sqlx::query(&format!(
            "INSERT INTO {to}.{table} SELECT * FROM {from}.{table} WHERE category = ANY($1)"
        ))
        .bind(&categories)
        .execute(&mut *tx)
        .await?;
    }
    let reflected: i64 =
        sqlx::query_scalar(&format!("SELECT position FROM {from}.projection_watermark"))
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(categories
        .into_iter()
        .map(|c| (c.to_owned(), reflected))
        .collect())
}

/// Drops a generation's schema and Redis keys.
pub async fn drop_generation(target: &Target, old: &Generation) -> anyhow::Result<()> {
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", old.schema))
        .execute(&target.pool)
        .await?;
    let client = redis::Client::open(target.redis_url.as_str())?;
    let mut connection = readmodel::hot::connect(&client).await?;
    let keys = readmodel::hot::delete_keys(&mut connection, &old.prefix).await?;
    tracing::info!(schema = %old.schema, keys, "old generation dropped");
    Ok(())
}

/// One rebuild, verification or retry per deployment at a time: held until dropped.
async fn exclusive(pool: &PgPool, base: &str) -> anyhow::Result<Leader> {
    match Leader::try_acquire(pool, &format!("replay-tools:{base}")).await? {
        Some(leader) => Ok(leader),
        None => bail!("another rebuild, verify or retry of {base} is running"),
    }
}

/// The events the projector parked in the live generation, in log order.
pub async fn parked(target: &Target) -> anyhow::Result<Vec<Parked>> {
    let base = projection::checked_schema(&target.base)?;
    generation::ensure(&target.pool, base, &target.prefix).await?;
    let live = generation::current(&target.pool, base).await?;
    projection::ensure_schema(&target.pool, &live.schema).await?;
    Ok(parked::list(&target.pool, &live.schema).await?)
}

/// What a retry did.
#[derive(Debug, Clone, Default)]
pub struct RetryReport {
    /// Parked events taken out and projected again.
    pub retried: usize,
    /// Of those, the events that changed the read models.
    pub applied: usize,
    /// Events parked again (the cause is not gone), with their new error.
    pub still_parked: Vec<Parked>,
}

/// Parked events projected again per transaction: the projector waits for each page (the
/// pointer is locked), so a page stays short.
const RETRY_PAGE: i64 = 1_000;

/// Projects the parked events again — all of them, or those of the aggregates of the parked
/// events at `positions` — with the projector's code, in log order, a page per transaction
/// while the projector waits (the generation pointer is locked, as for a switch). What still
/// fails is parked again, and the retry stops there. Each page's Redis values are written
/// before its commit: the moment the aggregate is no longer faulted, they are there.
pub async fn retry(target: &Target, positions: &[i64]) -> anyhow::Result<RetryReport> {
    let pool = &target.pool;
    let base = projection::checked_schema(&target.base)?;
    generation::ensure(pool, base, &target.prefix).await?;
    let _exclusive = exclusive(pool, base).await?;
    let live = generation::current(pool, base).await?;
    let mut hot = HotStore::new(&target.redis_url, &live.prefix)?
        .assume_clean()
        .await
        .context("Redis is unavailable; nothing was retried")?;
    let aggregates: Option<HashSet<Uuid>> = if positions.is_empty() {
        None
    } else {
        let found: Vec<Uuid> = sqlx::query_scalar(&format!(
            "SELECT DISTINCT aggregate_id FROM {}.parked_events WHERE position = ANY($1)",
            live.schema
        ))
        .bind(positions)
        .fetch_all(pool)
        .await?;
        if found.is_empty() {
            bail!("no parked event at {positions:?}");
        }
        Some(found.into_iter().collect())
    };
    let mut report = RetryReport::default();
    loop {
        let mut tx = pool.begin().await?;
        let locked = generation::current_locked(&mut tx, base, generation::Lock::Update).await?;
        if locked != live {
            bail!("the live generation switched during the retry; run it again");
        }
        let unparked =
            parked::unpark(&mut tx, &live.schema, aggregates.as_ref(), RETRY_PAGE).await?;
        if unparked.is_empty() {
            break;
        }
        let events = target.log().read_positions(&unparked).await?;
        report.retried += events.len();
        let done = parked::project(&mut tx, &live.schema, events).await?;
        replay::write_hot(&mut hot, &done)
            .await
            .context("the page being retried was not")?;
        tx.commit().await?;
        report.applied += done.applied;
        // What failed again is first in line now: the next page would only fail it again.
        if !done.parked.is_empty() {
            break;
        }
    }
    report.still_parked = parked::list(pool, &live.schema)
        .await?
        .into_iter()
        .filter(|p| {
            aggregates
                .as_ref()
                .is_none_or(|a| a.contains(&p.aggregate_id))
        })
        .collect();
    Ok(report)
}

/// Re-sends the log's events with positions in `from..=to` to Kafka — with the same
/// envelopes, keys and headers as the relay — to their category topics under `topic_prefix`,
/// or all to `topic`. Returns how many.
pub async fn republish(
    log: &eventlog::EventLog,
    brokers: &str,
    topic_prefix: &str,
    from: i64,
    to: Option<i64>,
    topic: Option<&str>,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    let producer: rdkafka::producer::FutureProducer =
        messaging::producer_config(brokers, messaging::DEFAULT_MAX_REQUEST_BYTES)
            .create()
            .context("creating the Kafka producer")?;
    let to = match to {
        Some(to) => to,
        None => log.head().await?,
    };
    bar.set_length((to - from + 1).max(0) as u64);
    let mut after = from.saturating_sub(1);
    let mut sent = 0;
    while after < to {
        let mut events = log.read_all(after, 2_000).await?;
        events.retain(|e| e.position <= to);
        let Some(last) = events.last().map(|e| e.position) else {
            break;
        };
        relay::publish(&producer, topic_prefix, topic, &events).await?;
        sent += events.len() as u64;
        bar.inc(events.len() as u64);
        after = last;
    }
    bar.finish();
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::Projection;

    /// A table no projection names would be left behind by a rebuild of one projection.
    #[test]
    fn the_projections_cover_every_read_model_table() {
        let mut named: Vec<&str> = Projection::ALL
            .iter()
            .flat_map(|p| p.tables().iter().copied())
            .collect();
        named.push("aggregate_versions");
        named.sort_unstable();
        let mut tables = readmodel::projection::TABLES.to_vec();
        tables.sort_unstable();
        assert_eq!(named, tables);
    }
}
