//! Hot values in Redis — balances, remaining stock, issued/used counts, the watermark — for
//! the query API's fast path. Every value is the "after" value an event carries, written only
//! if the event's aggregate version is newer than the one stored (a Lua compare-and-set), so
//! a redelivery or a replay never moves a value back in time. A missing key means "read
//! PostgreSQL". If a write fails, the store is marked dirty; once Redis answers again, its
//! keys are dropped and rewritten from the PostgreSQL read models.

use std::time::Duration;

use domain::coupon::CouponEvent;
use domain::time_sale::{HoldEnded, TimeSaleEvent};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use uuid::Uuid;

use crate::projection::{AnyEvent, Decoded};

/// HSET the field/value pairs with `v` = ARGV[1] unless the stored `v` is as new or newer.
const GUARDED_HSET: &str = r"
local stored = redis.call('HGET', KEYS[1], 'v')
if stored and tonumber(stored) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], unpack(ARGV, 2))
return 1";

/// SET KEYS[1] to ARGV[1] only if it is greater than the stored number.
const SET_MAX: &str = r"
local stored = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > stored then redis.call('SET', KEYS[1], ARGV[1]) return 1 end
return 0";

/// Redis key names, shared with the query API.
pub mod keys {
    use uuid::Uuid;

    pub fn balance(prefix: &str, user_id: i64) -> String {
        format!("{prefix}balance:{user_id}")
    }
    pub fn stock(prefix: &str, time_sale_id: Uuid) -> String {
        format!("{prefix}stock:{time_sale_id}")
    }
    pub fn policy(prefix: &str, policy_id: Uuid) -> String {
        format!("{prefix}policy:{policy_id}")
    }
    pub fn watermark(prefix: &str) -> String {
        format!("{prefix}watermark")
    }
    /// SCAN patterns matching every key of `prefix` — and no key of another generation's
    /// prefix, even one that starts with this prefix (`promo:g2:…` is not `promo:balance:…`).
    pub fn patterns(prefix: &str) -> [String; 4] {
        [
            format!("{prefix}balance:*"),
            format!("{prefix}stock:*"),
            format!("{prefix}policy:*"),
            watermark(prefix),
        ]
    }
}

/// Every key matching `pattern` (SCAN, a page at a time: never blocks Redis).
pub async fn keys_matching(
    connection: &mut ConnectionManager,
    pattern: &str,
) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(connection)
            .await?;
        keys.extend(found);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Removes every key of `prefix` (see [`keys::patterns`]); returns how many.
pub async fn delete_keys(
    connection: &mut ConnectionManager,
    prefix: &str,
) -> redis::RedisResult<usize> {
    let mut deleted = 0;
    for pattern in keys::patterns(prefix) {
        let found = keys_matching(connection, &pattern).await?;
        for chunk in found.chunks(1000) {
            redis::cmd("UNLINK")
                .arg(chunk)
                .query_async::<()>(connection)
                .await?;
        }
        deleted += found.len();
    }
    Ok(deleted)
}

/// One guarded write: `fields` set on `key` if `version` is newer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotWrite {
    pub key: String,
    pub version: i64,
    pub fields: Vec<(&'static str, i64)>,
}

/// The hot writes of a batch: every event, also those the PostgreSQL side skipped as
/// duplicates (a crash may have come between the PostgreSQL commit and these writes).
pub fn hot_writes(prefix: &str, batch: &[Decoded]) -> Vec<HotWrite> {
    let mut writes = Vec::new();
    for (recorded, event) in batch {
        let (key, fields) = match event {
            AnyEvent::Point(e) => {
                let (amount, at) = expiring(e.next_expiry());
                (
                    keys::balance(prefix, e.user_id().get()),
                    vec![
                        ("balance", e.balance_after()),
                        ("expiring", amount),
                        ("expiring_at", at),
                    ],
                )
            }
            AnyEvent::TimeSale(TimeSaleEvent::TimeSaleCreated { spec, .. }) => (
                keys::stock(prefix, recorded.stream_id),
                vec![
                    ("remaining", i64::from(spec.quantity().get())),
                    ("reserved", 0),
                ],
            ),
            AnyEvent::TimeSale(
                TimeSaleEvent::Reserved {
                    remaining_after,
                    reserved_after,
                    ..
                }
                | TimeSaleEvent::ReservationConfirmed {
                    remaining_after,
                    reserved_after,
                    ..
                }
                | TimeSaleEvent::ReservationReleased(HoldEnded {
                    remaining_after,
                    reserved_after,
                    ..
                })
                | TimeSaleEvent::ReservationExpired(HoldEnded {
                    remaining_after,
                    reserved_after,
                    ..
                }),
            ) => (
                keys::stock(prefix, recorded.stream_id),
                vec![
                    ("remaining", i64::from(*remaining_after)),
                    ("reserved", i64::from(*reserved_after)),
                ],
            ),
            AnyEvent::TimeSale(
                TimeSaleEvent::OrderPlaced {
                    remaining_after, ..
                }
                | TimeSaleEvent::OrderCanceled {
                    remaining_after, ..
                },
            ) => (
                keys::stock(prefix, recorded.stream_id),
                vec![("remaining", i64::from(*remaining_after))],
            ),
            AnyEvent::Coupon(CouponEvent::PolicyCreated { .. }) => (
                keys::policy(prefix, recorded.stream_id),
                vec![("issued", 0), ("used", 0)],
            ),
            AnyEvent::Coupon(CouponEvent::CouponIssued { issued_count, .. }) => (
                keys::policy(prefix, recorded.stream_id),
                vec![("issued", i64::from(*issued_count))],
            ),
            AnyEvent::Coupon(
                CouponEvent::CouponUsed { used_count, .. }
                | CouponEvent::CouponUseCanceled { used_count, .. },
            ) => (
                keys::policy(prefix, recorded.stream_id),
                vec![("used", i64::from(*used_count))],
            ),
            // No count changes, but the policy's version does (the read model records it).
            AnyEvent::Coupon(
                CouponEvent::CouponRevoked { .. }
                | CouponEvent::CouponReserved { .. }
                | CouponEvent::CouponReservationReleased(_)
                | CouponEvent::CouponReservationExpired(_),
            ) => (keys::policy(prefix, recorded.stream_id), vec![]),
            AnyEvent::Product(_) => continue,
        };
        writes.push(HotWrite {
            key,
            version: recorded.version,
            fields,
        });
    }
    writes
}

/// The projector's Redis side. Every write has a deadline: a Redis that misses it (frozen, not
/// down) turns the store dirty, and later writes skip Redis at once; a resync is tried at most
/// every [`RESYNC_EVERY`], after a `PING` within [`PING_DEADLINE`], so a frozen Redis costs
/// the projector 50 ms a second, not a deadline per batch.
pub struct HotStore {
    client: redis::Client,
    connection: Option<ConnectionManager>,
    prefix: String,
    dirty: bool,
    deadline: Duration,
    last_resync_try: Option<std::time::Instant>,
    /// Resyncs that failed in a row after Redis had answered the `PING`: each doubles the
    /// wait before the next, up to [`RESYNC_AT_MOST_EVERY`].
    resync_failures: u32,
}

/// How often a dirty store tries to resync.
pub const RESYNC_EVERY: Duration = Duration::from_secs(1);
/// The longest wait between resyncs that fail (a resync drops and rewrites every hot key: one
/// that keeps failing on a Redis too slow for its writes must not take the projector's time).
pub const RESYNC_AT_MOST_EVERY: Duration = Duration::from_secs(30);
/// How long the `PING` before a resync may take: a loopback round trip is well under a
/// millisecond, and while Redis hangs the projector waits this long once a second.
const PING_DEADLINE: Duration = Duration::from_millis(50);

impl std::fmt::Debug for HotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotStore")
            .field("prefix", &self.prefix)
            .field("dirty", &self.dirty)
            .finish()
    }
}

/// `call` within `deadline`; past it, an I/O error saying so.
async fn within<T>(
    deadline: Duration,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no answer within the deadline",
            )))
        })
}

/// A Redis connection that fails fast, so nobody waits on a Redis that is down.
pub async fn connect(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(1);
    client.get_connection_manager_with_config(config).await
}

impl HotStore {
    pub fn new(url: &str, prefix: &str) -> redis::RedisResult<Self> {
        // Until the first successful write, assume Redis may hold values from another run.
        Ok(Self {
            client: redis::Client::open(url)?,
            connection: None,
            prefix: prefix.to_owned(),
            dirty: true,
            deadline: Duration::from_secs(5),
            last_resync_try: None,
            resync_failures: 0,
        })
    }

    /// Each batch of writes waits at most `deadline` for Redis (connecting not included). The
    /// default, 5 s, is for the tools' bulk writes; the connection's own response timeout
    /// (500 ms, [`connect`]) cuts a single command short before that.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// For a writer that only adds guarded values on top of what the projector wrote (a
    /// retry of parked events): no resync first, only the scripts loaded.
    pub async fn assume_clean(mut self) -> redis::RedisResult<Self> {
        self.load_scripts().await?;
        self.dirty = false;
        Ok(self)
    }

    /// Loads the guarded-write scripts, which the pipelines call by hash (`EVALSHA`).
    async fn load_scripts(&mut self) -> redis::RedisResult<()> {
        let mut connection = self.connection().await?;
        for source in [GUARDED_HSET, SET_MAX] {
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(source)
                .query_async::<String>(&mut connection)
                .await?;
        }
        Ok(())
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether a write failed since the last resync (Redis may be behind the read models).
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Writes go to another generation's keys from now on.
    pub fn set_prefix(&mut self, prefix: &str) {
        prefix.clone_into(&mut self.prefix);
    }

    async fn connection(&mut self) -> redis::RedisResult<ConnectionManager> {
        if let Some(connection) = &self.connection {
            return Ok(connection.clone());
        }
        let connection = connect(&self.client).await?;
        self.connection = Some(connection.clone());
        Ok(connection)
    }

    /// Applies guarded writes in one pipeline. On failure the store turns dirty.
    pub async fn write(&mut self, writes: &[HotWrite]) -> bool {
        if writes.is_empty() {
            return !self.dirty;
        }
        self.pipeline(writes, None).await
    }

    /// Raises the published watermark (never lowers it).
    pub async fn raise_watermark(&mut self, position: i64) -> bool {
        self.pipeline(&[], Some(position)).await
    }

    /// A batch's guarded writes, then the watermark it reached, in one pipeline (one round
    /// trip; Redis runs them in order, so a reader that sees the watermark sees the values).
    pub async fn publish(&mut self, writes: &[HotWrite], watermark: i64) -> bool {
        self.pipeline(writes, Some(watermark)).await
    }

    async fn pipeline(&mut self, writes: &[HotWrite], watermark: Option<i64>) -> bool {
        if self.dirty {
            return false;
        }
        // Connecting has its own timeouts (`connect`); the deadline is the writes'.
        let mut connection = match self.connection().await {
            Ok(connection) => connection,
            Err(e) => return self.settle(Err(e)),
        };
        let deadline = self.deadline;
        let result = async {
            let script = redis::Script::new(GUARDED_HSET);
            let mut pipe = redis::pipe();
            for write in writes {
                let mut args: Vec<String> = vec![write.version.to_string()];
                for (field, value) in &write.fields {
                    args.push((*field).to_owned());
                    args.push(value.to_string());
                }
                pipe.cmd("EVALSHA")
                    .arg(script.get_hash())
                    .arg(1)
                    .arg(&write.key)
                    .arg(args)
                    .ignore();
            }
            if let Some(position) = watermark {
                pipe.cmd("EVALSHA")
                    .arg(redis::Script::new(SET_MAX).get_hash())
                    .arg(1)
                    .arg(keys::watermark(&self.prefix))
                    .arg(position)
                    .ignore();
            }
            pipe.query_async::<()>(&mut connection).await
        };
        let result = within(deadline, result).await;
        self.settle(result)
    }

    fn settle(&mut self, result: redis::RedisResult<()>) -> bool {
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "redis write failed; serving from PostgreSQL until resynced");
                self.dirty = true;
                false
            }
        }
    }

    /// When dirty and Redis answers again: drop this prefix's keys, load the scripts, rewrite
    /// every hot value from the read models in `schema`. Returns whether the store is clean.
    /// Tried at most every [`RESYNC_EVERY`] (twice as long after each resync that failed, up
    /// to [`RESYNC_AT_MOST_EVERY`]), and only once Redis answers a `PING` within
    /// [`PING_DEADLINE`].
    pub async fn resync_if_dirty(&mut self, pool: &sqlx::PgPool, schema: &str) -> bool {
        if !self.dirty {
            return true;
        }
        let wait = RESYNC_EVERY
            .saturating_mul(2u32.saturating_pow(self.resync_failures))
            .min(RESYNC_AT_MOST_EVERY);
        if self.last_resync_try.is_some_and(|at| at.elapsed() < wait) {
            return false;
        }
        self.last_resync_try = Some(std::time::Instant::now());
        let ping = async {
            // Connecting has its own timeouts (`connect`); the deadline is the PING's.
            let mut connection = self.connection().await?;
            within(
                self.deadline.min(PING_DEADLINE),
                redis::cmd("PING").query_async::<()>(&mut connection),
            )
            .await
        };
        if let Err(e) = ping.await {
            tracing::debug!(error = %e, "redis still unavailable");
            return false;
        }
        match self.resync(pool, schema).await {
            Ok(keys) => {
                tracing::info!(keys, "redis resynced from the read models");
                self.dirty = false;
                self.resync_failures = 0;
                true
            }
            Err(e) => {
                self.resync_failures = self.resync_failures.saturating_add(1);
                tracing::warn!(error = %e, failures = self.resync_failures, "redis answers but its resync failed; trying again later");
                false
            }
        }
    }

    async fn resync(
        &mut self,
        pool: &sqlx::PgPool,
        schema: &str,
    ) -> Result<usize, crate::ReadModelError> {
        let schema = crate::projection::checked_schema(schema)?;
        let mut connection = self.connection().await?;
        delete_keys(&mut connection, &self.prefix).await?;
        self.load_scripts().await?;
        let writes = writes_from_read_models(pool, schema, &self.prefix).await?;
        let count = writes.len();
        self.dirty = false;
        for chunk in writes.chunks(1_000) {
            if !self.write(chunk).await {
                return Err(crate::ReadModelError::Redis(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "write failed during resync",
                ))));
            }
        }
        Ok(count)
    }
}

/// Every hot value as the PostgreSQL read models in `schema` hold it, as writes under
/// `prefix` (a resync, a rebuild's Redis side, and what `verify` expects Redis to hold).
pub async fn writes_from_read_models(
    pool: &sqlx::PgPool,
    schema: &str,
    prefix: &str,
) -> Result<Vec<HotWrite>, crate::ReadModelError> {
    let schema = crate::projection::checked_schema(schema)?;
    let mut writes = Vec::new();
    let balances: Vec<HotBalance> = sqlx::query_as(&format!(
        "SELECT user_id, balance, version, expiring, expiring_at FROM {schema}.point_balances"
    ))
    .fetch_all(pool)
    .await?;
    for (user_id, balance, version, amount, at) in balances {
        writes.push(HotWrite {
            key: keys::balance(prefix, user_id),
            version,
            fields: vec![
                ("balance", balance),
                ("expiring", amount.unwrap_or(0)),
                ("expiring_at", at.map_or(0, |at| at.timestamp_micros())),
            ],
        });
    }
    let stock: Vec<(Uuid, i64, i64, i64)> = sqlx::query_as(&format!(
        "SELECT time_sale_id, remaining, reserved, version FROM {schema}.time_sales"
    ))
    .fetch_all(pool)
    .await?;
    for (id, remaining, reserved, version) in stock {
        writes.push(HotWrite {
            key: keys::stock(prefix, id),
            version,
            fields: vec![("remaining", remaining), ("reserved", reserved)],
        });
    }
    let policies: Vec<(Uuid, i64, i64, i64)> = sqlx::query_as(&format!(
        "SELECT policy_id, issued_count, used_count, version FROM {schema}.coupon_policies"
    ))
    .fetch_all(pool)
    .await?;
    for (id, issued, used, version) in policies {
        writes.push(HotWrite {
            key: keys::policy(prefix, id),
            version,
            fields: vec![("issued", issued), ("used", used)],
        });
    }
    Ok(writes)
}

/// A balance row as the hot values are rebuilt from it: user, balance, version, what expires
/// next and when.
type HotBalance = (
    i64,
    i64,
    i64,
    Option<i64>,
    Option<chrono::DateTime<chrono::Utc>>,
);

/// What expires next as the hot fields keep it: (amount, Unix microseconds), (0, 0) for none.
pub fn expiring(next: Option<domain::points::NextExpiry>) -> (i64, i64) {
    next.map_or((0, 0), |n| (n.amount, n.expires_at.timestamp_micros()))
}
