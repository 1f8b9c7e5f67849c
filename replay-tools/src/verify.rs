//! `verify`: are the live read models what the log says they should be?
//!
//! The log is projected, with the projector's code, into a scratch schema up to exactly what
//! the live generation reflects: every event up to its watermark except those it parked
//! (parked events are reported as parked, not as differences). The last stretch and the
//! comparison run while holding the generation pointer `FOR UPDATE`, so no projector batch
//! commits meanwhile (the projector pauses for that long; readers do not). Then every table
//! is compared row by row, and every hot Redis value key by key.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::ProgressBar;
use readmodel::generation::{self, Generation};
use readmodel::hot::{self, HotWrite};
use readmodel::parked::{self, Parked};
use readmodel::{projection, watermark};
use sqlx::PgPool;

use crate::replay::{self, Filter, Replayed};
use crate::Target;

/// Examples printed per table and direction.
const EXAMPLES: i64 = 3;

/// What a verification found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// One line per difference (a table's differing rows with examples, a key's values).
    pub differences: Vec<String>,
    /// The events the live generation parked: left out of the comparison, since the live
    /// read models lack them on purpose.
    pub parked: Vec<Parked>,
    /// Rows in the live tables compared.
    pub rows: u64,
    /// Redis keys compared.
    pub keys: u64,
    pub replayed: Replayed,
    pub elapsed: Duration,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty()
    }
}

/// What a scratch projection must leave out: the live generation's parked events.
async fn parked_positions(pool: &PgPool, schema: &str) -> anyhow::Result<Filter> {
    Ok(Filter {
        after: HashMap::new(),
        skip: parked::list(pool, schema)
            .await?
            .iter()
            .map(|p| p.position)
            .collect(),
    })
}

/// Compares the live generation with a projection of the log.
pub async fn verify(target: &Target, bar: &ProgressBar) -> anyhow::Result<VerifyReport> {
    let started = Instant::now();
    let pool = &target.pool;
    let base = projection::checked_schema(&target.base)?;
    generation::ensure(pool, base, &target.prefix).await?;
    let _exclusive = crate::exclusive(pool, base).await?;
    let live = generation::current(pool, base).await?;
    // A deployment whose projector never ran has no read models yet: empty ones.
    projection::ensure_schema(pool, &live.schema).await?;
    let scratch = format!("{base}_verify");
    projection::checked_schema(&scratch)?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {scratch} CASCADE"))
        .execute(pool)
        .await?;
    projection::ensure_schema(pool, &scratch).await?;
    let log = target.log();

    let reached = watermark::read(pool, &live.schema).await?;
    bar.set_length(reached.max(1) as u64);
    let mut replayed = replay::replay(
        &log,
        pool,
        &scratch,
        0,
        reached,
        &parked_positions(pool, &live.schema).await?,
        None,
        bar,
    )
    .await?;

    let mut lock = pool.begin().await?;
    let locked = generation::current_locked(&mut lock, base, generation::Lock::Update).await?;
    if locked != live {
        bail!("the live generation switched during the verification; run it again");
    }
    let now = watermark::read(pool, &live.schema).await?;
    bar.set_length(now.max(1) as u64);
    let skip = parked_positions(pool, &live.schema).await?;
    let last = replay::replay(&log, pool, &scratch, reached, now, &skip, None, bar).await?;
    replayed.absorb(&last);
    bar.finish();
    // Batches committed before the lock may still be writing their Redis values.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut report = VerifyReport {
        replayed,
        parked: parked::list(pool, &live.schema).await?,
        ..VerifyReport::default()
    };
    compare_tables(pool, &live.schema, &scratch, &mut report).await?;
    compare_keys(target, &live, &scratch, &mut report).await?;
    lock.rollback().await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {scratch} CASCADE"))
        .execute(pool)
        .await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

async fn compare_tables(
    pool: &PgPool,
    live: &str,
    expected: &str,
    report: &mut VerifyReport,
) -> anyhow::Result<()> {
    for table in projection::TABLES {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {live}.{table}"))
            .fetch_one(pool)
            .await?;
        report.rows += rows as u64;
        for (side, a, b) in [("live only", live, expected), ("missing", expected, live)] {
            let differing: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM (SELECT * FROM {a}.{table} EXCEPT SELECT * FROM {b}.{table}) d"
            ))
            .fetch_one(pool)
            .await?;
            if differing == 0 {
                continue;
            }
            let examples: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT row_to_json(d)::text FROM \
                 (SELECT * FROM {a}.{table} EXCEPT SELECT * FROM {b}.{table}) d LIMIT {EXAMPLES}"
            ))
            .fetch_all(pool)
            .await?;
            report.differences.push(format!(
                "{table}: {differing} row(s) {}; e.g. {}",
                if side == "live only" {
                    "in live that the log does not give"
                } else {
                    "the log gives that live lacks"
                },
                examples.join(" | ")
            ));
        }
    }
    Ok(())
}

/// Compares every hot key live Redis should hold with what it holds; a differing key is
/// looked at again a few times before it counts (a write may be on its way).
async fn compare_keys(
    target: &Target,
    live: &Generation,
    expected_schema: &str,
    report: &mut VerifyReport,
) -> anyhow::Result<()> {
    let expected =
        hot::writes_from_read_models(&target.pool, expected_schema, &live.prefix).await?;
    report.keys = expected.len() as u64;
    let client = redis::Client::open(target.redis_url.as_str())?;
    let mut connection = hot::connect(&client).await?;
    let mut differing: Vec<(&HotWrite, HashMap<String, String>)> = Vec::new();
    for chunk in expected.chunks(1_000) {
        differing.extend(differing_keys(&mut connection, chunk).await?);
    }
    for _ in 0..3 {
        if differing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let again: Vec<HotWrite> = differing.iter().map(|(w, _)| (*w).clone()).collect();
        let still: HashSet<String> = differing_keys(&mut connection, &again)
            .await?
            .into_iter()
            .map(|(w, _)| w.key.clone())
            .collect();
        differing.retain(|(w, _)| still.contains(&w.key));
    }
    for (write, found) in differing {
        let wanted: Vec<String> = std::iter::once(format!("v={}", write.version))
            .chain(write.fields.iter().map(|(f, v)| format!("{f}={v}")))
            .collect();
        let mut held: Vec<String> = found.iter().map(|(f, v)| format!("{f}={v}")).collect();
        held.sort();
        report.differences.push(format!(
            "redis {}: holds {{{}}}, the log gives {{{}}}",
            write.key,
            held.join(", "),
            wanted.join(", ")
        ));
    }
    let known: HashSet<&str> = expected.iter().map(|w| w.key.as_str()).collect();
    let patterns = hot::keys::patterns(&live.prefix);
    for pattern in &patterns[..3] {
        for key in hot::keys_matching(&mut connection, pattern).await? {
            if !known.contains(key.as_str()) {
                report.differences.push(format!(
                    "redis {key}: held, but nothing in the log gives it"
                ));
            }
        }
    }
    Ok(())
}

/// The writes among `writes` whose key does not hold exactly their version and fields, with
/// what it holds.
async fn differing_keys<'a>(
    connection: &mut redis::aio::ConnectionManager,
    writes: &'a [HotWrite],
) -> anyhow::Result<Vec<(&'a HotWrite, HashMap<String, String>)>> {
    let mut pipe = redis::pipe();
    for write in writes {
        pipe.cmd("HGETALL").arg(&write.key);
    }
    let held: Vec<HashMap<String, String>> = pipe.query_async(connection).await?;
    Ok(writes
        .iter()
        .zip(held)
        .filter(|(write, held)| {
            let matches = held.get("v") == Some(&write.version.to_string())
                && held.len() == write.fields.len() + 1
                && write
                    .fields
                    .iter()
                    .all(|(f, v)| held.get(*f) == Some(&v.to_string()));
            !matches
        })
        .collect())
}
