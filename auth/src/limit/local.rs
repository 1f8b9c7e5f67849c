//! What this process counts by itself: the keys whose first request of a window it let through
//! without waiting, and the strict limits' counts while Redis cannot count.

use std::collections::HashMap;
use std::sync::Mutex;

use super::rules::Verdict;

/// Counts of the strict limits while Redis cannot count: (window end, count) per key.
#[derive(Debug, Default)]
pub(super) struct LocalCounts(Mutex<HashMap<String, (u64, u64)>>);

/// The window in which this process last saw each key (its end, ms): a key's first request of
/// a window here is counted without waiting.
#[derive(Debug, Default)]
pub(super) struct Seen(Mutex<HashMap<String, u64>>);

impl LocalCounts {
    /// Counts one request of `key` in this process alone: the strict limits while Redis cannot
    /// count. Past [`LOCAL_KEYS`] keys of current windows, a new key is refused rather than
    /// let through uncounted.
    pub(super) fn count(&self, key: &str, limit: u64, window_seconds: u64, now: u64) -> Verdict {
        let window_ms = window_seconds.max(1) * 1_000;
        let end = (now / window_ms + 1) * window_ms;
        let mut local = self.0.lock().unwrap_or_else(|e| e.into_inner());
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
}

impl Seen {
    /// Whether this is `key`'s first request of its window here (and remembers it until the
    /// window's end, `end` ms).
    pub(super) fn first_here(&self, key: &str, now: u64, end: u64) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
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
}

/// Keys the in-process fallback holds at most before it forgets windows that are over.
const LOCAL_KEYS: usize = 100_000;

/// Keys remembered as seen at most before windows that are over are forgotten (and, were that
/// not enough, all: each forgotten key may then have one more request counted without waiting).
const SEEN_KEYS: usize = 200_000;
