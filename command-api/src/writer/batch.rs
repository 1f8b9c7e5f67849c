//! Deciding a batch of commands against an aggregate, and answering them.

use domain::wire::WireCodec;
use domain::{Decide, DomainError};
use eventlog::{AppendBatch, EntityLink, IdempotencyRecord, NewEvent, StreamAppend};
use serde_json::Value;
use uuid::Uuid;

use super::*;

/// What deciding one command gave.
pub(super) enum Decided {
    Accepted { events: usize, body: Value },
    Refused(DomainError),
}

/// Debug builds (every test) check each event against its published schema before it is
/// appended: an input that passes the edge but makes an event the contract refuses is a bug,
/// and fails loudly here rather than in an outside consumer.
#[cfg(debug_assertions)]
fn check_contract(wire: &domain::wire::WireEvent) {
    static CONTRACT: std::sync::OnceLock<schemas::ContractValidator> = std::sync::OnceLock::new();
    let contract = CONTRACT.get_or_init(|| {
        schemas::ContractValidator::new().unwrap_or_else(|e| panic!("the schemas: {e}"))
    });
    let event = serde_json::to_value(wire).unwrap_or_default();
    if let Err(e) = contract.validate(&event) {
        panic!("an event breaks its published schema: {e}; event: {event}");
    }
}

/// Decides `requests` in order against `aggregate` (applying each accepted command's events
/// before the next) and builds the batch that appends them: events, entity links, and the
/// idempotency record of every keyed request (refusals included). Shared by both write modes.
pub(super) fn decide_batch<'r, A: Decide>(
    aggregate: &mut A,
    id: Uuid,
    base_version: i64,
    requests: impl Iterator<Item = &'r Request<A>>,
) -> (AppendBatch, Vec<Decided>)
where
    A::Command: Clone,
{
    let mut version = base_version;
    let mut stream = StreamAppend {
        stream_id: id,
        category: A::CATEGORY.to_owned(),
        expected_version: base_version,
        events: vec![],
    };
    let mut batch = AppendBatch::default();
    let mut decided = Vec::new();
    for request in requests {
        match aggregate.decide(request.command.clone()) {
            Ok(events) => {
                for event in &events {
                    let wire = event.to_wire();
                    #[cfg(debug_assertions)]
                    check_contract(&wire);
                    if let Some(entity_id) = A::created_entity(event) {
                        batch.links.push(EntityLink {
                            entity_id,
                            stream_id: id,
                            category: A::CATEGORY,
                        });
                    }
                    stream.events.push(NewEvent {
                        event_id: Uuid::now_v7(),
                        event_type: wire.event_type,
                        schema_version: wire.version as i16,
                        data: wire.data,
                        metadata: request.metadata.clone(),
                    });
                    aggregate.apply_event(event.clone());
                }
                version += events.len() as i64;
                let body = (request.render)(aggregate, &events);
                if let Some(key) = &request.key {
                    batch.idempotency.push(IdempotencyRecord {
                        principal: key.principal.clone(),
                        key: key.key.clone(),
                        request_hash: key.hash.clone(),
                        status: request.status as i16,
                        body: body.clone(),
                        stream: Some((id, version)),
                    });
                }
                decided.push(Decided::Accepted {
                    events: events.len(),
                    body,
                });
            }
            Err(refusal) => {
                if let Some(key) = &request.key {
                    let (status, body) = crate::refusal::problem(&refusal);
                    batch.idempotency.push(IdempotencyRecord {
                        principal: key.principal.clone(),
                        key: key.key.clone(),
                        request_hash: key.hash.clone(),
                        status: status.as_u16() as i16,
                        body,
                        stream: None,
                    });
                }
                decided.push(Decided::Refused(refusal));
            }
        }
    }
    batch.streams.push(stream);
    (batch, decided)
}

/// Applies recorded events of one stream to `aggregate`; returns the version after them.
pub(super) fn apply_recorded<A: Decide>(
    aggregate: &mut A,
    id: Uuid,
    mut version: i64,
    recorded: Vec<eventlog::RecordedEvent>,
) -> Result<i64, WriteError> {
    for event in recorded {
        let decoded = A::Event::from_wire(&event.wire())
            .map_err(|e| WriteError::Unavailable(format!("stream {id}: {e}")))?;
        aggregate.apply_event(decoded);
        version = event.version;
    }
    Ok(version)
}

/// The answer stored under an idempotency key, for a request whose body hashes to `hash`.
pub(super) fn stored_answer(
    answer: &eventlog::StoredAnswer,
    hash: &[u8],
) -> Result<Committed, WriteError> {
    if answer.request_hash != hash {
        Err(WriteError::KeyReused)
    } else if (200..300).contains(&answer.status) {
        Ok(Committed {
            status: answer.status as u16,
            body: answer.body.clone(),
            version: answer.stream.map_or(0, |s| s.1),
            position: answer.position.unwrap_or(0),
            replayed: true,
        })
    } else {
        Err(WriteError::StoredRefusal {
            status: answer.status as u16,
            body: answer.body.clone(),
        })
    }
}

pub(super) fn fail_all<A: Decide>(pending: Vec<Pending<A>>, error: WriteError) {
    for (_, reply) in pending {
        let _ = reply.send(Err(error.clone()));
    }
}

/// Answers each command of a committed batch: its version and the position of its last event.
pub(super) fn reply_all<A: Decide>(
    pending: Vec<Pending<A>>,
    decided: Vec<Decided>,
    base_version: i64,
    first_position: i64,
) {
    let mut version = base_version;
    let mut position = first_position - 1;
    for ((request, reply), outcome) in pending.into_iter().zip(decided) {
        let result = match outcome {
            Decided::Accepted { events, body } => {
                version += events as i64;
                position += events as i64;
                Ok(Committed {
                    status: request.status,
                    body,
                    version,
                    position,
                    replayed: false,
                })
            }
            Decided::Refused(refusal) => Err(WriteError::Refused(refusal)),
        };
        let _ = reply.send(result);
    }
}
