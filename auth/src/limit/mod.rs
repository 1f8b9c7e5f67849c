//! Rate limits shared by every instance through Redis: a fixed window per key (the principal,
//! or the client's address when there is none) and rule, counted by one Lua script — atomic,
//! one round trip. Checks that arrive while a round trip is out are sent together in the next
//! one (one script over all their keys, each counted atomically), as the writer's group
//! commit does: under a flash sale Redis sees one call per round, not one per request. A key's
//! first request of a window in this process does not even wait: it is let through and
//! counted in the next round (see [`RateLimiter::count`]). Rules
//! are per role and route (the longest matching route wins); a role without a rule is not
//! limited (services, by default: a flash sale's checkout goes through). When Redis does not
//! answer, requests are let through and a warning is logged (at most every 10 s): a limiter
//! outage must not become an outage of the shop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::Role;

/// For each key i: INCR its window's counter (expiring after two windows); ARGV holds
/// {window ms, now ms} per key. Returns {count, ms left} per key, flattened.
const WINDOWS: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local window_ms = tonumber(ARGV[2 * i - 1])
  local now = tonumber(ARGV[2 * i])
  local window = math.floor(now / window_ms)
  local counter = key .. ':' .. window
  local count = redis.call('INCR', counter)
  if count == 1 then redis.call('PEXPIRE', counter, window_ms * 2) end
  out[2 * i - 1] = count
  out[2 * i] = (window + 1) * window_ms - now
end
return out";

/// The script, its SHA-1 computed once (EVALSHA, loaded on first use).
static SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(WINDOWS));

/// Most checks sent in one round trip.
const MAX_BATCH: usize = 512;

/// After Redis fails, requests go through without asking it for this long, so an outage
/// costs no caller a connection timeout each.
const BACK_OFF_MS: u64 = 1_000;

/// Longest a request waits for its count; past it, it goes through (and Redis counts as
/// failed). A round trip takes well under a millisecond when Redis is well.
const WAIT: Duration = Duration::from_millis(100);

/// Who a rule limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Who {
    Admin,
    User,
    Service,
}

/// One rule: at most `limit` requests per `window_seconds` for `who` on routes starting with
/// `route` (all routes when absent).
#[derive(Debug, Clone, Deserialize)]
pub struct Rule {
    pub who: Who,
    #[serde(default)]
    pub route: Option<String>,
    pub limit: u64,
    pub window_seconds: u64,
}

/// `[rate_limit]` of the APIs' settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    pub enabled: bool,
    /// Prefix of the counters' Redis keys.
    pub prefix: String,
    pub rules: Vec<Rule>,
    /// Logins per account and per client address, per minute (against guessing).
    pub logins_per_account: u64,
    pub logins_per_address: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            prefix: "promo:rl:".into(),
            // As the system this replaces: 100 requests a minute per user. Services and
            // admins are not limited.
            rules: vec![Rule {
                who: Who::User,
                route: None,
                limit: 100,
                window_seconds: 60,
            }],
            logins_per_account: 10,
            logins_per_address: 30,
        }
    }
}

/// Milliseconds since the epoch; tests inject their own.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> u64;
}

#[derive(Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A clock a test moves by hand.
#[derive(Debug, Default)]
pub struct ManualClock(pub AtomicU64);

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }
}

/// The outcome of a check, for the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window resets.
    pub reset_seconds: u64,
    /// Redis counted it (false: the limiter could not ask, and let the request through).
    pub counted: bool,
}

/// The shared limiter.
#[derive(Clone)]
pub struct RateLimiter {
    settings: Arc<LimitSettings>,
    client: Option<redis::Client>,
    /// The task that sends checks to Redis in rounds, started on first use (and again should
    /// it have ended with the runtime it ran on).
    rounds: Arc<Mutex<Option<mpsc::Sender<Check>>>>,
    clock: Arc<dyn Clock>,
    last_warning: Arc<AtomicU64>,
    /// When Redis last failed (ms, the system clock).
    last_failure: Arc<AtomicU64>,
    /// Counts of [`RateLimiter::count_strict`] while Redis cannot count: (window, count) per key.
    local: Arc<Mutex<std::collections::HashMap<String, (u64, u64)>>>,
    /// The window in which this process last saw each key: a key's first request of a window
    /// here is counted without waiting.
    seen: Arc<Mutex<std::collections::HashMap<String, u64>>>,
}

/// Keys the in-process fallback holds at most before it forgets windows that are over.
const LOCAL_KEYS: usize = 100_000;

/// Keys remembered as seen at most before windows that are over are forgotten (and, were that
/// not enough, all: each forgotten key may then have one more request counted without waiting).
const SEEN_KEYS: usize = 200_000;

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rules", &self.settings.rules.len())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(settings: LimitSettings, redis_url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: Some(redis::Client::open(redis_url)?),
            ..Self::in_process(settings)
        })
    }

    /// A limiter without Redis: [`RateLimiter::count`] lets everything through,
    /// [`RateLimiter::count_strict`] counts in this process.
    pub fn in_process(settings: LimitSettings) -> Self {
        Self {
            client: None,
            settings: Arc::new(settings),
            rounds: Default::default(),
            clock: Arc::new(SystemClock),
            last_warning: Default::default(),
            last_failure: Default::default(),
            local: Default::default(),
            seen: Default::default(),
        }
    }

    /// The same limiter on another clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn settings(&self) -> &LimitSettings {
        &self.settings
    }

    /// The rule for `who` on `route`: the longest matching route, else the general one.
    pub fn rule(&self, who: Who, route: &str) -> Option<&Rule> {
        if !self.settings.enabled {
            return None;
        }
        self.settings
            .rules
            .iter()
            .filter(|r| r.who == who)
            .filter(|r| r.route.as_deref().is_none_or(|p| route.starts_with(p)))
            .max_by_key(|r| r.route.as_ref().map_or(0, String::len))
    }

    /// Counts one request of `key` under `rule`.
    pub async fn check(&self, key: &str, rule: &Rule) -> Verdict {
        self.count(key, rule.limit, rule.window_seconds).await
    }

    /// As [`RateLimiter::count`], but when Redis cannot count, this instance counts by itself
    /// instead of letting the request through: for the limits against guessing passwords,
    /// which must hold through a Redis outage (per instance then, not across them).
    pub async fn count_strict(&self, key: &str, limit: u64, window_seconds: u64) -> Verdict {
        let verdict = self.counted(key, limit, window_seconds, false).await;
        if verdict.counted {
            return verdict;
        }
        let window_ms = window_seconds.max(1) * 1_000;
        let now = self.clock.now_ms();
        let end = (now / window_ms + 1) * window_ms;
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if local.len() >= LOCAL_KEYS {
            local.retain(|_, (until, _)| *until > now);
        }
        if local.len() >= LOCAL_KEYS && !local.contains_key(key) {
            // Guessing from more accounts and addresses than this process can count: refuse
            // rather than let one through uncounted.
            return Verdict {
                allowed: false,
                limit,
                remaining: 0,
                reset_seconds: ((end - now).div_ceil(1_000)).max(1),
                counted: false,
            };
        }
        let entry = local.entry(key.to_owned()).or_insert((end, 0));
        if entry.0 <= now {
            *entry = (end, 0);
        }
        entry.1 += 1;
        Verdict {
            allowed: entry.1 <= limit,
            limit,
            remaining: limit.saturating_sub(entry.1),
            reset_seconds: (entry.0 - now).div_ceil(1_000).max(1),
            counted: false,
        }
    }

    /// Counts one request of `key`, at most `limit` per `window_seconds`. A key's first
    /// request of a window in this process is let through at once and counted in the next
    /// round without waiting (a flash sale is mostly such requests: one order per buyer); the
    /// rest wait for Redis's count, so the limit is exact but for one request per key, window
    /// and instance.
    pub async fn count(&self, key: &str, limit: u64, window_seconds: u64) -> Verdict {
        self.counted(key, limit, window_seconds, true).await
    }

    /// Whether this is `key`'s first request of its window here (and remembers it until the
    /// window's end, `end` ms).
    fn first_here(&self, key: &str, now: u64, end: u64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= SEEN_KEYS {
            seen.retain(|_, until| *until > now);
            if seen.len() >= SEEN_KEYS {
                // Every key a current one: no more first requests without waiting until the
                // windows end.
                return false;
            }
        }
        match seen.get_mut(key) {
            Some(until) if *until > now => false,
            Some(until) => {
                *until = end;
                true
            }
            None => {
                seen.insert(key.to_owned(), end);
                true
            }
        }
    }

    async fn counted(&self, key: &str, limit: u64, window_seconds: u64, fast: bool) -> Verdict {
        if self.client.is_none() {
            return Verdict {
                allowed: true,
                limit,
                remaining: limit,
                reset_seconds: window_seconds,
                counted: false,
            };
        }
        let window_ms = window_seconds.max(1) * 1_000;
        let failed_at = self.last_failure.load(Ordering::Relaxed);
        let now_ms = self.clock.now_ms();
        let key = format!("{}{key}", self.settings.prefix);
        let end_ms = (now_ms / window_ms + 1) * window_ms;
        let backing_off = SystemClock.now_ms().saturating_sub(failed_at) < BACK_OFF_MS;
        let rounds = self.rounds();
        // Only while the queue has room to spare: under more load than Redis keeps up with,
        // every request waits for its count (or goes through uncounted past the queue).
        let room = rounds
            .as_ref()
            .is_ok_and(|rounds| rounds.capacity() > rounds.max_capacity() / 2);
        if fast && limit >= 1 && room && self.first_here(&key, now_ms, end_ms) {
            let check = Check {
                key: key.clone(),
                window_ms,
                now_ms,
                reply: None,
            };
            // Counted in the next round; nobody waits. A full queue: Redis is not keeping up,
            // and this request goes through uncounted like any other then.
            if !backing_off {
                if let Ok(rounds) = &rounds {
                    let _ = rounds.try_send(check);
                }
            }
            let left_ms = end_ms - now_ms;
            return Verdict {
                allowed: true,
                limit,
                // An estimate: the first request here, not necessarily in the window.
                remaining: limit - 1,
                reset_seconds: left_ms.div_ceil(1_000).max(1),
                counted: false,
            };
        }
        let result: Result<(u64, u64), redis::RedisError> = async {
            if backing_off {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "backing off after a failure",
                )));
            }
            let (reply, answer) = oneshot::channel();
            let check = Check {
                key,
                window_ms,
                now_ms,
                reply: Some(reply),
            };
            // A full queue means Redis is not keeping up: through at once, never waiting.
            rounds?.try_send(check).map_err(|_| {
                redis::RedisError::from((redis::ErrorKind::Client, "too many checks waiting"))
            })?;
            match tokio::time::timeout(WAIT, answer).await {
                Ok(answer) => answer.map_err(|_| closed())?,
                Err(_) => Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "no answer within 100 ms",
                ))),
            }
        }
        .await;
        match result {
            Ok((count, left_ms)) => {
                if failed_at != 0 && self.last_failure.swap(0, Ordering::Relaxed) != 0 {
                    tracing::info!("rate limiter reachable again");
                }
                Verdict {
                    allowed: count <= limit,
                    limit,
                    remaining: limit.saturating_sub(count),
                    reset_seconds: left_ms.div_ceil(1_000).max(1),
                    counted: true,
                }
            }
            Err(e) => {
                // A full queue is load, not a Redis failure: no back-off for everyone.
                let redis_failed = e.kind() != redis::ErrorKind::Client;
                if redis_failed
                    && (failed_at == 0
                        || SystemClock.now_ms().saturating_sub(failed_at) >= BACK_OFF_MS)
                {
                    self.last_failure
                        .store(SystemClock.now_ms(), Ordering::Relaxed);
                }
                let now = self.clock.now_ms();
                let last = self.last_warning.load(Ordering::Relaxed);
                if now.saturating_sub(last) > 10_000 {
                    self.last_warning.store(now, Ordering::Relaxed);
                    tracing::warn!(error = %e, "rate limiter unavailable; letting requests through");
                }
                Verdict {
                    allowed: true,
                    limit,
                    remaining: limit,
                    reset_seconds: window_seconds,
                    counted: false,
                }
            }
        }
    }

    /// The sender to the round-trip task, which is started with the first check.
    fn rounds(&self) -> redis::RedisResult<mpsc::Sender<Check>> {
        let client = self.client.clone().ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Io, "no Redis configured"))
        })?;
        let mut rounds = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
        match &*rounds {
            Some(sender) if !sender.is_closed() => Ok(sender.clone()),
            _ => {
                let (sender, receiver) = mpsc::channel(MAX_BATCH * 4);
                tokio::spawn(send_rounds(client, receiver, self.last_failure.clone()));
                *rounds = Some(sender.clone());
                Ok(sender)
            }
        }
    }
}

/// One request's check, waiting for its round.
struct Check {
    key: String,
    window_ms: u64,
    now_ms: u64,
    /// `None`: counted without anyone waiting (a key's first request here, see
    /// [`RateLimiter::count`]).
    reply: Option<oneshot::Sender<redis::RedisResult<(u64, u64)>>>,
}

fn closed() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "the rate limiter stopped"))
}

/// Takes every check waiting (up to [`MAX_BATCH`]), counts them in one script call, answers
/// each; again. Ends when the limiter is dropped. A failed round fails its checks (they are
/// let through), and every check queued behind it at once, without asking Redis again; it
/// starts the limiter's back-off. The next round connects again.
async fn send_rounds(
    client: redis::Client,
    mut receiver: mpsc::Receiver<Check>,
    last_failure: Arc<AtomicU64>,
) {
    let mut connection: Option<ConnectionManager> = None;
    let mut round = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut round, MAX_BATCH).await > 0 {
        let counted = count_round(&client, &mut connection, &round).await;
        if counted.is_err() {
            last_failure.store(SystemClock.now_ms().max(1), Ordering::Relaxed);
            while let Ok(check) = receiver.try_recv() {
                round.push(check);
            }
        }
        for (i, check) in round.drain(..).enumerate() {
            let answer = match &counted {
                Ok(counts) => counts
                    .get(2 * i..2 * i + 2)
                    .map(|pair| (pair[0], pair[1]))
                    .ok_or_else(|| {
                        redis::RedisError::from((
                            redis::ErrorKind::UnexpectedReturnType,
                            "the script answered too few counts",
                        ))
                    }),
                Err(e) => Err(e.clone()),
            };
            // The caller may have gone (its request ended): nothing to answer.
            if let Some(reply) = check.reply {
                let _ = reply.send(answer);
            }
        }
    }
}

async fn count_round(
    client: &redis::Client,
    connection: &mut Option<ConnectionManager>,
    round: &[Check],
) -> redis::RedisResult<Vec<u64>> {
    let manager = match connection {
        Some(manager) => manager,
        None => {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_millis(300)))
                .set_response_timeout(Some(Duration::from_millis(300)))
                .set_number_of_retries(1);
            connection.insert(client.get_connection_manager_with_config(config).await?)
        }
    };
    let mut invocation = SCRIPT.prepare_invoke();
    for check in round {
        invocation
            .key(&check.key)
            .arg(check.window_ms)
            .arg(check.now_ms);
    }
    invocation.invoke_async(manager).await
}

impl From<Role> for Who {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => Who::Admin,
            Role::User => Who::User,
            Role::Service => Who::Service,
        }
    }
}
