//! Deadlines the domain's events open and end: a checkout hold is due at its expiry. The
//! system appends the event that ends a due one (`timesale.reservation_expired`); the command
//! that does is refused before the due time and once the entity is no longer open, so a
//! deadline fires at most once whoever fires it, however often.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::time_sale::TimeSaleEvent;
use crate::wire;

/// A kind of deadline: what comes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadlineKind {
    /// A time sale's checkout hold (entity: the reservation).
    Reservation,
}

impl DeadlineKind {
    pub const ALL: &'static [DeadlineKind] = &[DeadlineKind::Reservation];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineKind::Reservation => "reservation",
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == kind)
    }

    /// The aggregate category whose events open and end deadlines of this kind.
    pub fn category(self) -> &'static str {
        match self {
            DeadlineKind::Reservation => "timesale",
        }
    }
}

/// What an event does to a deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadlineEffect {
    /// `entity` is due at `due_at`.
    Opens {
        kind: DeadlineKind,
        entity: Uuid,
        due_at: DateTime<Utc>,
    },
    /// `entity`'s deadline is over (met or moot).
    Ends { kind: DeadlineKind, entity: Uuid },
}

/// The event types that open or end a deadline: the only ones a deadline follower reads.
pub const DEADLINE_EVENT_TYPES: &[&str] = &[
    wire::TIMESALE_RESERVED,
    wire::RESERVATION_CONFIRMED,
    wire::RESERVATION_RELEASED,
    wire::RESERVATION_EXPIRED,
];

impl TimeSaleEvent {
    /// What this event does to a deadline, if anything.
    pub fn deadline(&self) -> Option<DeadlineEffect> {
        let kind = DeadlineKind::Reservation;
        match self {
            TimeSaleEvent::Reserved {
                reservation_id,
                expires_at,
                ..
            } => Some(DeadlineEffect::Opens {
                kind,
                entity: *reservation_id,
                due_at: *expires_at,
            }),
            TimeSaleEvent::ReservationConfirmed { reservation_id, .. } => {
                Some(DeadlineEffect::Ends {
                    kind,
                    entity: *reservation_id,
                })
            }
            TimeSaleEvent::ReservationReleased(ended)
            | TimeSaleEvent::ReservationExpired(ended) => Some(DeadlineEffect::Ends {
                kind,
                entity: ended.reservation_id,
            }),
            TimeSaleEvent::TimeSaleCreated { .. }
            | TimeSaleEvent::OrderPlaced { .. }
            | TimeSaleEvent::OrderCanceled { .. } => None,
        }
    }
}
