//! Which aggregates and entities exist: asked before a command names one it does not create
//! (an issue names a policy, an order a sale, a coupon's use the coupon), so a made-up id is
//! answered from the log's index without starting a writer for it. Immutable facts, so they
//! are cached: what the log answered, and what a command that created an entity (a hold, an
//! order, a coupon) knows of it. Each cache keeps the newest entries in two generations of at
//! most half a million each; when the newer is full, the older is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use eventlog::EventLog;
use uuid::Uuid;

use super::CommandError;

/// Entries a cache's newer generation holds before it becomes the older one.
const GENERATION: usize = 500_000;

/// Two generations of `key → value`.
#[derive(Debug)]
struct Recent<V> {
    newer: HashMap<Uuid, V>,
    older: HashMap<Uuid, V>,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Self {
            newer: HashMap::new(),
            older: HashMap::new(),
        }
    }
}

type Cache<V> = Arc<Mutex<Recent<V>>>;

fn get<V: Copy>(cache: &Mutex<Recent<V>>, key: &Uuid) -> Option<V> {
    let cache = cache.lock().ok()?;
    cache
        .newer
        .get(key)
        .or_else(|| cache.older.get(key))
        .copied()
}

/// Puts `key → value` in `cache`; the older generation is dropped once the lock is let go.
fn keep<V>(cache: &Mutex<Recent<V>>, key: Uuid, value: V) {
    let _dropped = match cache.lock() {
        Ok(mut cache) => {
            let full = cache.newer.len() >= GENERATION;
            let dropped = full.then(|| {
                let newer = std::mem::take(&mut cache.newer);
                std::mem::replace(&mut cache.older, newer)
            });
            cache.newer.insert(key, value);
            dropped
        }
        Err(_) => None,
    };
}

#[derive(Debug, Clone)]
pub(super) struct Lookup {
    log: EventLog,
    /// Entity id → stream id and category.
    entities: Cache<(Uuid, &'static str)>,
    /// Streams known to exist, with their category (they never stop existing).
    streams: Cache<&'static str>,
}

fn unavailable(e: eventlog::StoreError) -> CommandError {
    CommandError::Unavailable(e.to_string())
}

impl Lookup {
    pub(super) fn new(log: EventLog) -> Self {
        Self {
            log,
            entities: Default::default(),
            streams: Default::default(),
        }
    }

    /// Whether aggregate `id` exists and is of `category`.
    pub(super) async fn exists(
        &self,
        id: Uuid,
        category: &'static str,
    ) -> Result<bool, CommandError> {
        if let Some(known) = get(&self.streams, &id) {
            return Ok(known == category);
        }
        let found = self.log.stream_category(id).await.map_err(unavailable)?;
        let is = found.is_some_and(|c| c == category);
        if is {
            keep(&self.streams, id, category);
        }
        Ok(is)
    }

    /// Remembers that entity `entity_id` lives in stream `stream_id` of `category`, as a
    /// command that just created it knows, so that the next command naming it (a hold's
    /// confirmation) on this instance need not ask the log.
    pub(super) fn remember(&self, entity_id: Uuid, stream_id: Uuid, category: &'static str) {
        keep(&self.entities, entity_id, (stream_id, category));
    }

    /// The stream holding a coupon, an order or a hold, if it is one of `category`; else
    /// `what` is not found.
    pub(super) async fn stream_of(
        &self,
        entity_id: Uuid,
        category: &'static str,
        what: &'static str,
    ) -> Result<Uuid, CommandError> {
        let not_found = || CommandError::NotFound(what);
        if let Some((stream_id, known)) = get(&self.entities, &entity_id) {
            return (known == category)
                .then_some(stream_id)
                .ok_or_else(not_found);
        }
        match self
            .log
            .entity_stream(entity_id)
            .await
            .map_err(unavailable)?
        {
            Some((stream_id, c)) if c == category => {
                self.remember(entity_id, stream_id, category);
                Ok(stream_id)
            }
            _ => Err(not_found()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_generation_becomes_the_older_and_the_oldest_is_dropped() {
        let cache: Mutex<Recent<u32>> = Mutex::default();
        let key = |n: usize| Uuid::from_u128(n as u128);
        for n in 0..GENERATION {
            keep(&cache, key(n), 1);
        }
        assert_eq!(get(&cache, &key(0)), Some(1));
        // The next entry starts a new generation: the first still answers, from the older.
        keep(&cache, key(GENERATION), 2);
        assert_eq!(get(&cache, &key(0)), Some(1));
        assert_eq!(get(&cache, &key(GENERATION)), Some(2));
        for n in GENERATION + 1..2 * GENERATION + 1 {
            keep(&cache, key(n), 2);
        }
        // A third generation: the first is gone, the second is older.
        assert_eq!(get(&cache, &key(0)), None);
        assert_eq!(get(&cache, &key(GENERATION)), Some(2));
        assert_eq!(get(&cache, &key(2 * GENERATION)), Some(2));
    }
}
