//! Which aggregates and entities exist: asked before a command names one it does not create
//! (an issue names a policy, an order a sale, a coupon's use the coupon), so a made-up id is
//! answered from the log's index without starting a writer for it. Immutable facts, so they
//! are cached, bounded by clearing when large.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use eventlog::EventLog;
use uuid::Uuid;

use super::CommandError;

/// Entries each cache holds at most before it starts over.
const CACHE_LIMIT: usize = 1_000_000;

#[derive(Debug, Clone)]
pub(super) struct Lookup {
    log: EventLog,
    /// Entity id → (stream id, category).
    entities: Arc<Mutex<HashMap<Uuid, (Uuid, String)>>>,
    /// Streams known to exist, with their category (they never stop existing).
    streams: Arc<Mutex<HashMap<Uuid, String>>>,
}

/// `key → value` from `cache`, or from `load` (then remembered when found).
async fn cached<V: Clone, F>(
    cache: &Mutex<HashMap<Uuid, V>>,
    key: Uuid,
    load: F,
) -> Result<Option<V>, CommandError>
where
    F: std::future::Future<Output = Result<Option<V>, eventlog::StoreError>>,
{
    if let Some(found) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(Some(found));
    }
    let found = load
        .await
        .map_err(|e| CommandError::Unavailable(e.to_string()))?;
    if let Some(found) = &found {
        keep(cache, key, found.clone());
    }
    Ok(found)
}

/// Puts `key → value` in `cache`, which starts over when full.
fn keep<V>(cache: &Mutex<HashMap<Uuid, V>>, key: Uuid, value: V) {
    if let Ok(mut cache) = cache.lock() {
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, value);
    }
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
    pub(super) async fn exists(&self, id: Uuid, category: &str) -> Result<bool, CommandError> {
        let found = cached(&self.streams, id, self.log.stream_category(id)).await?;
        Ok(found.is_some_and(|c| c == category))
    }

    /// Remembers that entity `entity_id` lives in stream `stream_id` of `category`, as a
    /// command that just created it knows, so that the next command naming it (a hold's
    /// confirmation) need not ask the log.
    pub(super) fn remember(&self, entity_id: Uuid, stream_id: Uuid, category: &str) {
        keep(&self.entities, entity_id, (stream_id, category.to_owned()));
    }

    /// The stream holding a coupon or an order, if it is one of `category`; else `what` is
    /// not found.
    pub(super) async fn stream_of(
        &self,
        entity_id: Uuid,
        category: &str,
        what: &'static str,
    ) -> Result<Uuid, CommandError> {
        match cached(&self.entities, entity_id, self.log.entity_stream(entity_id)).await? {
            Some((stream_id, c)) if c == category => Ok(stream_id),
            _ => Err(CommandError::NotFound(what)),
        }
    }
}
