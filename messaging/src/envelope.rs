//! The Kafka message: a JSON envelope around one event of the log (docs/product.md, "Events for other services"), keyed by the
//! aggregate id. `schemas/envelope.v1.json` is its contract; the `type`, `schemaVersion` and
//! `data` inside validate against the event's own schema.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Bumped when the envelope itself changes shape.
pub const ENVELOPE_VERSION: u16 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope {
    pub envelope_version: u16,
    pub event_id: Uuid,
    /// The public event type, e.g. `order.created`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u16,
    /// The aggregate category: the topic's suffix.
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub aggregate_version: i64,
    /// The event's global position in the log.
    pub position: i64,
    pub occurred_at: DateTime<Utc>,
    pub data: Value,
    /// Correlation id, causation id, actor, command and trace context.
    pub metadata: Value,
}

impl Envelope {
    /// The event inside, in the `{type, version, data}` wire form the domain decodes.
    pub fn wire(&self) -> domain::wire::WireEvent {
        domain::wire::WireEvent {
            event_type: self.event_type.clone(),
            version: self.schema_version,
            data: self.data.clone(),
        }
    }

    /// The Kafka topic this envelope goes to, for a deployment's topic prefix.
    pub fn topic(&self, prefix: &str) -> String {
        crate::topic_for(prefix, &self.aggregate_type)
    }
}
