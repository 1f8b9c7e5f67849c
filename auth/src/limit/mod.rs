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
use std::sync::Arc;
use std::time::Duration;

use service::breaker::{Admit, Breaker};
use tokio::sync::oneshot;

mod clock;
mod local;
mod rounds;
mod rules;

pub use clock::{Clock, ManualClock, SystemClock};
use local::{LocalCounts, Seen};
use rounds::{closed, Check, Rounds};
pub use rules::{LimitSettings, Rule, Verdict, Who};

/// After Redis fails or misses [`WAIT`], requests go through without waiting for it (the
/// breaker is open), and one of them at most this often sends its count as a probe, without
/// waiting for the answer: an outage, or a Redis that hangs, costs no caller a timeout each.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Longest a request waits for its count; past it, it goes through (and the breaker opens). A
/// round trip takes well under a millisecond when Redis is well.
const WAIT: Duration = Duration::from_millis(100);

/// The shared limiter.
#[derive(Clone)]
pub struct RateLimiter {
    settings: Arc<LimitSettings>,
    /// Redis, counting in rounds (`None`: no Redis configured).
    rounds: Option<Arc<Rounds>>,
    clock: Arc<dyn Clock>,
    last_warning: Arc<AtomicU64>,
    /// Open while Redis fails or hangs: requests go through uncounted (strict ones are
    /// counted here), without waiting.
    breaker: Arc<Breaker>,
    /// Counts of [`RateLimiter::count_strict`] while Redis cannot count.
    local: Arc<LocalCounts>,
    /// Keys whose first request of a window here went through without waiting.
    seen: Arc<Seen>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rules", &self.settings.rules.len())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(settings: LimitSettings, redis_url: &str) -> Result<Self, redis::RedisError> {
        let limiter = Self::in_process(settings);
        Ok(Self {
            rounds: Some(Arc::new(Rounds::new(
                redis::Client::open(redis_url)?,
                limiter.breaker.clone(),
            ))),
            ..limiter
        })
    }

    /// A limiter without Redis: [`RateLimiter::count`] lets everything through,
    /// [`RateLimiter::count_strict`] counts in this process.
    pub fn in_process(settings: LimitSettings) -> Self {
        Self {
            settings: Arc::new(settings),
            rounds: None,
            clock: Arc::new(SystemClock),
            last_warning: Default::default(),
            breaker: Arc::new(Breaker::new("redis-limits", PROBE_EVERY)),
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

    /// The rule for `who` on `route` (see [`LimitSettings::rule`]).
    pub fn rule(&self, who: Who, route: &str) -> Option<&Rule> {
        self.settings.rule(who, route)
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
        self.local
            .count(key, limit, window_seconds, self.clock.now_ms())
    }

    /// Counts one request of `key`, at most `limit` per `window_seconds`. A key's first
    /// request of a window in this process is let through at once and counted in the next
    /// round without waiting (a flash sale is mostly such requests: one order per buyer); the
    /// rest wait for Redis's count, so the limit is exact but for one request per key, window
    /// and instance.
    pub async fn count(&self, key: &str, limit: u64, window_seconds: u64) -> Verdict {
        self.counted(key, limit, window_seconds, true).await
    }

    async fn counted(&self, key: &str, limit: u64, window_seconds: u64, fast: bool) -> Verdict {
        let Some(link) = &self.rounds else {
            return Verdict {
                allowed: true,
                limit,
                remaining: limit,
                reset_seconds: window_seconds,
                counted: false,
            };
        };
        let window_ms = window_seconds.max(1) * 1_000;
        let now_ms = self.clock.now_ms();
        let key = format!("{}{key}", self.settings.prefix);
        let end_ms = (now_ms / window_ms + 1) * window_ms;
        let admit = self.breaker.admit();
        let rounds = link.sender();
        // While the breaker is open nobody waits for Redis: a probe's check is sent to be
        // counted without a reply, and the round that answers it closes the breaker.
        if admit == Admit::Probe {
            let _ = rounds.try_send(Check {
                key: key.clone(),
                window_ms,
                now_ms,
                reply: None,
                probe: true,
            });
        }
        let backing_off = admit != Admit::Call;
        // Only while the queue has room to spare: under more load than Redis keeps up with,
        // every request waits for its count (or goes through uncounted past the queue).
        let room = rounds.capacity() > rounds.max_capacity() / 2;
        if fast && limit >= 1 && room && self.seen.first_here(&key, now_ms, end_ms) {
            let check = Check {
                key: key.clone(),
                window_ms,
                now_ms,
                reply: None,
                probe: false,
            };
            // Counted in the next round; nobody waits. A full queue: Redis is not keeping up,
            // and this request goes through uncounted like any other then.
            if !backing_off {
                let _ = rounds.try_send(check);
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
                    "Redis failed or hung: the breaker is open",
                )));
            }
            let (reply, answer) = oneshot::channel();
            let check = Check {
                key,
                window_ms,
                now_ms,
                reply: Some(reply),
                probe: false,
            };
            // A full queue means Redis is not keeping up: through at once, never waiting.
            rounds.try_send(check).map_err(|_| {
                redis::RedisError::from((redis::ErrorKind::Client, "too many checks waiting"))
            })?;
            match tokio::time::timeout(WAIT, answer).await {
                Ok(answer) => answer.map_err(|_| closed())?,
                Err(_) => Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "no answer within the limiter's wait",
                ))),
            }
        }
        .await;
        match result {
            Ok((count, left_ms)) => Verdict {
                allowed: count <= limit,
                limit,
                remaining: limit.saturating_sub(count),
                reset_seconds: left_ms.div_ceil(1_000).max(1),
                counted: true,
            },
            Err(e) => {
                // A full queue is load, not a Redis failure: no back-off for everyone.
                let redis_failed = e.kind() != redis::ErrorKind::Client;
                if redis_failed {
                    self.breaker.failed(&e);
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
}
