//! What this process counts by itself: the keys whose first request of a window it let through
//! without waiting, and the strict limits' counts while Redis cannot count.
//!
//! Both are kept by window ([`Windows`]): the keys of one window (rule length, end) together,
//! in shards by key, so a window that is over is dropped whole and no check ever scans the
//! keys of others — time and memory per check do not grow with the number of distinct keys,
//! and a check locks one shard of sixteen (the count of keys held is shared, so the capacity
//! is exact).

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::rules::Verdict;

/// Shards of [`Windows`]: checks of different keys seldom wait for each other.
const SHARDS: usize = 16;

/// Values by key, grouped by the end (ms) of the window they belong to.
#[derive(Debug)]
struct Windows<V> {
    shards: Vec<Mutex<Shard<V>>>,
    hasher: std::collections::hash_map::RandomState,
    /// Keys held, in every shard.
    keys: AtomicUsize,
    /// Keys held at most.
    capacity: usize,
}

#[derive(Debug)]
struct Shard<V> {
    by_end: BTreeMap<u64, HashMap<String, V>>,
}

impl<V> Windows<V> {
    fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        by_end: BTreeMap::new(),
                    })
                })
                .collect(),
            hasher: Default::default(),
            keys: AtomicUsize::new(0),
            capacity,
        }
    }

    /// Runs `f` on the values of `key`'s shard, windows over at `now` dropped first.
    fn with<T>(&self, key: &str, now: u64, f: impl FnOnce(&mut Shard<V>, &Room<'_, V>) -> T) -> T {
        let index = self.hasher.hash_one(key) as usize % SHARDS;
        let mut shard = self.shards[index].lock().unwrap_or_else(|e| e.into_inner());
        self.drop_over(&mut shard, now);
        let room = Room {
            windows: self,
            current: index,
            now,
        };
        f(&mut shard, &room)
    }

    /// Drops the windows of `shard` that are over at `now`, giving their keys' room back.
    fn drop_over(&self, shard: &mut Shard<V>, now: u64) {
        while let Some(entry) = shard.by_end.first_entry() {
            if *entry.key() > now {
                break;
            }
            let over = entry.remove();
            self.keys.fetch_sub(over.len(), Ordering::Relaxed);
        }
    }
}

/// The room for keys in every shard, while one of them (`current`) is locked.
struct Room<'a, V> {
    windows: &'a Windows<V>,
    current: usize,
    now: u64,
}

impl<V> Room<'_, V> {
    /// Takes room for one key, if there is any — after dropping the windows that are over in
    /// the other shards, when full (each shard drops its own only when touched): a window
    /// over counts for nothing. A shard another check holds is left for it.
    fn take(&self) -> bool {
        if self.try_take() {
            return true;
        }
        for (index, shard) in self.windows.shards.iter().enumerate() {
            if index == self.current {
                continue;
            }
            if let Ok(mut shard) = shard.try_lock() {
                self.windows.drop_over(&mut shard, self.now);
            }
        }
        self.try_take()
    }

    fn try_take(&self) -> bool {
        let keys = &self.windows.keys;
        let held = keys.fetch_add(1, Ordering::Relaxed);
        if held < self.windows.capacity {
            true
        } else {
            keys.fetch_sub(1, Ordering::Relaxed);
            false
        }
    }
}

impl<V> Shard<V> {
    /// The value of `key` in the window ending at `end`, inserted with `new` when absent —
    /// unless the shard is full (`None` then).
    fn entry(&mut self, key: &str, end: u64, room: &Room<'_, V>, new: V) -> Option<(&mut V, bool)> {
        let window = self.by_end.entry(end).or_default();
        if window.contains_key(key) {
            return window.get_mut(key).map(|v| (v, false));
        }
        if !room.take() {
            return None;
        }
        Some((window.entry(key.to_owned()).or_insert(new), true))
    }
}

/// Counts of the strict limits while Redis cannot count, by window.
#[derive(Debug)]
pub(super) struct LocalCounts(Windows<u64>);

impl Default for LocalCounts {
    fn default() -> Self {
        Self(Windows::new(LOCAL_KEYS))
    }
}

/// The keys whose first request of their current window this process has seen.
#[derive(Debug)]
pub(super) struct Seen(Windows<()>);

impl Default for Seen {
    fn default() -> Self {
        Self(Windows::new(SEEN_KEYS))
    }
}

impl LocalCounts {
    /// Counts one request of `key` in this process alone: the strict limits while Redis cannot
    /// count. Past [`LOCAL_KEYS`] keys of current windows, a new key is refused rather than
    /// let through uncounted.
    pub(super) fn count(&self, key: &str, limit: u64, window_seconds: u64, now: u64) -> Verdict {
        let window_ms = window_seconds.max(1) * 1_000;
        let end = (now / window_ms + 1) * window_ms;
        let reset_seconds = ((end - now).div_ceil(1_000)).max(1);
        let count = self.0.with(key, now, |shard, room| {
            shard.entry(key, end, room, 0).map(|(count, _)| {
                *count += 1;
                *count
            })
        });
        match count {
            Some(count) => Verdict {
                allowed: count <= limit,
                limit,
                remaining: limit.saturating_sub(count),
                reset_seconds,
                counted: false,
            },
            // Guessing from more accounts and addresses than this process can count: refuse
            // rather than let one through uncounted.
            None => Verdict {
                allowed: false,
                limit,
                remaining: 0,
                reset_seconds,
                counted: false,
            },
        }
    }
}

impl Seen {
    /// Whether this is `key`'s first request of its window (ending at `end` ms) here, and
    /// remembers it until then. Past [`SEEN_KEYS`] keys of current windows, `false`: a
    /// request then waits for Redis's count instead.
    pub(super) fn first_here(&self, key: &str, now: u64, end: u64) -> bool {
        self.0.with(key, now, |shard, room| {
            shard.entry(key, end, room, ()).is_some_and(|(_, new)| new)
        })
    }
}

/// Keys the in-process fallback holds at most (of windows not over yet).
const LOCAL_KEYS: usize = 100_000;

/// Keys remembered as seen at most (of windows not over yet); past it, a key's first request
/// of a window waits for its count like any other.
const SEEN_KEYS: usize = 200_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_first_once_per_window_and_again_in_the_next() {
        let seen = Seen::default();
        assert!(seen.first_here("a", 0, 60_000));
        assert!(!seen.first_here("a", 10, 60_000));
        assert!(seen.first_here("b", 10, 60_000));
        // The next window: the first one's keys are dropped with it.
        assert!(seen.first_here("a", 60_000, 120_000));
        assert!(!seen.first_here("a", 60_001, 120_000));
    }

    #[test]
    fn past_its_capacity_a_new_key_is_not_first_until_a_window_ends() {
        let seen = Seen(Windows::new(SHARDS * 2));
        let first: Vec<bool> = (0..SHARDS * 10)
            .map(|i| seen.first_here(&format!("user:{i}"), 0, 60_000))
            .collect();
        let admitted = first.iter().filter(|f| **f).count();
        assert!(admitted <= SHARDS * 2, "{admitted} admitted");
        assert!(
            admitted >= SHARDS,
            "{admitted} admitted (two per shard, keys hashed)"
        );
        // A key already seen is still known, not refused twice over.
        let known = first.iter().position(|f| *f).unwrap();
        assert!(!seen.first_here(&format!("user:{known}"), 1, 60_000));
        // Once the window is over, room again.
        assert!(seen.first_here("user:new", 60_000, 120_000));
    }

    #[test]
    fn local_counts_count_per_window_and_refuse_new_keys_past_capacity() {
        let counts = LocalCounts(Windows::new(SHARDS));
        let verdicts: Vec<bool> = (0..3)
            .map(|_| counts.count("k", 2, 60, 0).allowed)
            .collect();
        assert_eq!(verdicts, [true, true, false]);
        assert!(counts.count("k", 2, 60, 60_000).allowed, "a new window");
        let refused = (0..SHARDS * 10)
            .filter(|i| !counts.count(&format!("other:{i}"), 5, 60, 60_001).allowed)
            .count();
        assert!(refused > 0, "past capacity, new keys are refused");
        assert!(
            counts.count("again", 5, 60, 120_000).allowed,
            "room once the window ends"
        );
    }

    #[test]
    fn windows_of_different_lengths_keep_their_own_keys() {
        let seen = Seen::default();
        assert!(seen.first_here("k:1s", 500, 1_000));
        assert!(seen.first_here("k:60s", 500, 60_000));
        // The one-second window is over; the minute is not.
        assert!(seen.first_here("k:1s", 1_000, 2_000));
        assert!(!seen.first_here("k:60s", 1_000, 60_000));
    }
}
