//! `stream`: one aggregate's events as every reader sees them (upcast to the current version)
//! and its state after each, as the command side folds it.

use anyhow::{bail, Context as _};
use domain::coupon::CouponPolicy;
use domain::points::PointAccount;
use domain::product::Product;
use domain::time_sale::TimeSale;
use domain::values::UserId;
use domain::wire::{upcast, WireCodec};
use domain::Decide;
use eventlog::{EventLog, RecordedEvent};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// One event of a stream and the aggregate's state after it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamEntry {
    pub position: i64,
    pub version: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The version the event was stored with.
    pub stored_version: u16,
    /// The version it was read as (higher when upcast).
    pub read_version: u16,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    /// The data as read (upcast).
    pub data: Value,
    pub state: Value,
}

/// The stream of aggregate `kind` (`coupon`, `point`, `product`, `timesale`) with id `id` (a
/// point account may be named by its user id), up to position `as_of` when given.
pub async fn stream(
    log: &EventLog,
    kind: &str,
    id: &str,
    as_of: Option<i64>,
) -> anyhow::Result<Vec<StreamEntry>> {
    let stream_id = match (kind, id.parse::<i64>()) {
        ("point", Ok(user)) => domain::points::point_account_id(
            UserId::parse(user, "userId").map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        _ => Uuid::parse_str(id).with_context(|| format!("{id:?} is not a stream id"))?,
    };
    let events = log.read_stream(stream_id, 0, as_of).await?;
    if let Some(other) = events.iter().find(|e| e.category != kind) {
        bail!(
            "stream {stream_id} is a {} stream, not {kind}",
            other.category
        );
    }
    match kind {
        "coupon" => fold::<CouponPolicy>(&events),
        "point" => fold::<PointAccount>(&events),
        "product" => fold::<Product>(&events),
        "timesale" => fold::<TimeSale>(&events),
        other => bail!("unknown aggregate type {other:?} (coupon, point, product, timesale)"),
    }
}

fn fold<A: Decide + Serialize>(events: &[RecordedEvent]) -> anyhow::Result<Vec<StreamEntry>> {
    let mut state = A::default();
    let mut entries = Vec::with_capacity(events.len());
    for recorded in events {
        let stored = recorded.wire();
        let read = upcast(&stored)
            .with_context(|| format!("event at position {}", recorded.position))?
            .into_owned();
        let event = A::Event::from_wire(&read)
            .with_context(|| format!("event at position {}", recorded.position))?;
        state.apply_event(event);
        entries.push(StreamEntry {
            position: recorded.position,
            version: recorded.version,
            event_type: recorded.event_type.clone(),
            stored_version: stored.version,
            read_version: read.version,
            recorded_at: recorded.recorded_at,
            data: read.data,
            state: serde_json::to_value(&state)?,
        });
    }
    Ok(entries)
}
