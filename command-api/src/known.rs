//! What this instance knows exists, by id: immutable facts (an entity's stream, a stream's
//! category), kept as the newest entries in two generations of at most half a million each;
//! when the newer is full, the older is dropped. Shared by the writers' committer, which
//! records every entity it commits, and the command layer's look-ups, which read it first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// Entries the newer generation holds before it becomes the older one.
const GENERATION: usize = 500_000;

/// Two generations of `id → value`. Cheap to clone: clones share the entries.
#[derive(Debug)]
pub struct Known<V> {
    generations: Arc<Mutex<Generations<V>>>,
}

#[derive(Debug)]
struct Generations<V> {
    newer: HashMap<Uuid, V>,
    older: HashMap<Uuid, V>,
}

impl<V> Clone for Known<V> {
    fn clone(&self) -> Self {
        Self {
            generations: Arc::clone(&self.generations),
        }
    }
}

impl<V> Default for Known<V> {
    fn default() -> Self {
        Self {
            generations: Arc::new(Mutex::new(Generations {
                newer: HashMap::new(),
                older: HashMap::new(),
            })),
        }
    }
}

impl<V: Copy> Known<V> {
    pub fn get(&self, id: &Uuid) -> Option<V> {
        let known = self.generations.lock().ok()?;
        known.newer.get(id).or_else(|| known.older.get(id)).copied()
    }

    /// Keeps `id → value`; a full newer generation becomes the older one first, and the
    /// older is dropped once the lock is let go.
    pub fn keep(&self, id: Uuid, value: V) {
        let _dropped = match self.generations.lock() {
            Ok(mut known) => {
                let full = known.newer.len() >= GENERATION;
                let dropped = full.then(|| {
                    let newer = std::mem::take(&mut known.newer);
                    std::mem::replace(&mut known.older, newer)
                });
                known.newer.insert(id, value);
                dropped
            }
            Err(_) => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_generation_becomes_the_older_and_the_oldest_is_dropped() {
        let known: Known<u32> = Known::default();
        let key = |n: usize| Uuid::from_u128(n as u128);
        for n in 0..GENERATION {
            known.keep(key(n), 1);
        }
        assert_eq!(known.get(&key(0)), Some(1));
        // The next entry starts a new generation: the first still answers, from the older.
        known.keep(key(GENERATION), 2);
        assert_eq!(known.get(&key(0)), Some(1));
        assert_eq!(known.get(&key(GENERATION)), Some(2));
        for n in GENERATION + 1..2 * GENERATION + 1 {
            known.keep(key(n), 2);
        }
        // A third generation: the first is gone, the second is older.
        assert_eq!(known.get(&key(0)), None);
        assert_eq!(known.get(&key(GENERATION)), Some(2));
        assert_eq!(known.get(&key(2 * GENERATION)), Some(2));
    }
}
