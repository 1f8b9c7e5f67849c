//! Counting in Redis in rounds: the checks that arrive while a round trip is out go together
//! in the next one — one Lua script over all their keys, each counted atomically.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};

use service::breaker::Breaker;

/// The link to Redis: the task that sends checks in rounds, started with the first check (and
/// again should it have ended with the runtime it ran on).
pub(super) struct Rounds {
    client: redis::Client,
    sender: Mutex<Option<mpsc::Sender<Check>>>,
    /// The limiter's breaker: a failed round opens it, an answered one closes it.
    breaker: Arc<Breaker>,
}

impl Rounds {
    pub(super) fn new(client: redis::Client, breaker: Arc<Breaker>) -> Self {
        Self {
            client,
            sender: Mutex::new(None),
            breaker,
        }
    }

    /// The sender to the round-trip task.
    pub(super) fn sender(&self) -> mpsc::Sender<Check> {
        let mut sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        match &*sender {
            Some(running) if !running.is_closed() => running.clone(),
            _ => {
                let (next, receiver) = mpsc::channel(MAX_BATCH * 4);
                tokio::spawn(send_rounds(
                    self.client.clone(),
                    receiver,
                    self.breaker.clone(),
                ));
                *sender = Some(next.clone());
                next
            }
        }
    }
}

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

/// One request's check, waiting for its round.
pub(super) struct Check {
    pub(super) key: String,
    pub(super) window_ms: u64,
    pub(super) now_ms: u64,
    /// `None`: counted without anyone waiting (a key's first request here, see
    /// [`RateLimiter::count`], or a probe).
    pub(super) reply: Option<oneshot::Sender<redis::RedisResult<(u64, u64)>>>,
    /// Sent as the breaker's probe: a round that answers it closes the breaker.
    pub(super) probe: bool,
}

pub(super) fn closed() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "the rate limiter stopped"))
}

/// Takes every check waiting (up to [`MAX_BATCH`]), counts them in one script call, answers
/// each; again. Ends when the limiter is dropped. A failed round fails its checks (they are
/// let through), and every check queued behind it at once, without asking Redis again; it
/// opens the limiter's breaker. The next round connects again.
async fn send_rounds(
    client: redis::Client,
    mut receiver: mpsc::Receiver<Check>,
    breaker: Arc<Breaker>,
) {
    let mut connection: Option<ConnectionManager> = None;
    let mut round = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut round, MAX_BATCH).await > 0 {
        let counted = count_round(&client, &mut connection, &round).await;
        match &counted {
            Ok(_) if round.iter().any(|check| check.probe) => breaker.probe_answered(),
            Ok(_) => {}
            Err(e) => breaker.failed(e),
        }
        if counted.is_err() {
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
