//! Which aggregates and entities exist: asked before a command names one it does not create
//! (an issue names a policy, an order a sale, a coupon's use the coupon), so a made-up id is
//! answered from the log's index without starting a writer for it. Immutable facts, so they
//! are kept ([`Known`]): what the log answered, and every entity this instance's committer
//! appended (a hold, an order, a coupon), so a command naming one it just created asks the
//! log nothing.

use eventlog::EventLog;
use uuid::Uuid;

use super::CommandError;
use crate::known::Known;

#[derive(Debug, Clone)]
pub(super) struct Lookup {
    log: EventLog,
    /// Entity id → stream id and category (the committer's too).
    entities: Known<(Uuid, &'static str)>,
    /// Streams known to exist, with their category (they never stop existing).
    streams: Known<&'static str>,
}

fn unavailable(e: eventlog::StoreError) -> CommandError {
    CommandError::Unavailable(e.to_string())
}

impl Lookup {
    /// The look-ups over `log`, reading `entities` (which the committer fills) first.
    pub(super) fn new(log: EventLog, entities: Known<(Uuid, &'static str)>) -> Self {
        Self {
            log,
            entities,
            streams: Known::default(),
        }
    }

    /// Whether aggregate `id` exists and is of `category`.
    pub(super) async fn exists(
        &self,
        id: Uuid,
        category: &'static str,
    ) -> Result<bool, CommandError> {
        if let Some(known) = self.streams.get(&id) {
            return Ok(known == category);
        }
        let found = self.log.stream_category(id).await.map_err(unavailable)?;
        let is = found.is_some_and(|c| c == category);
        if is {
            self.streams.keep(id, category);
        }
        Ok(is)
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
        if let Some((stream_id, known)) = self.entities.get(&entity_id) {
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
                self.entities.keep(entity_id, (stream_id, category));
                Ok(stream_id)
            }
            _ => Err(not_found()),
        }
    }
}
