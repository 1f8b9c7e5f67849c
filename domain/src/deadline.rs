//! Deadlines the domain's events open and end: a checkout hold is due at its expiry, an earn's
//! points (a lot) at theirs. The system appends the event that ends a due one
//! (`timesale.reservation_expired`, `point.expired`); the command that does is refused before
//! the due time and once the entity is no longer open, so a deadline fires at most once
//! whoever fires it, however often.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::coupon::CouponEvent;
use crate::points::{PointEvent, TransactionKind};
use crate::time_sale::TimeSaleEvent;
use crate::wire::{self, AnyEvent};

/// A kind of deadline: what comes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadlineKind {
    /// A time sale's checkout hold (entity: the reservation).
    Reservation,
    /// An earn's points (entity: the earn's transaction id).
    PointLot,
    /// A coupon held for a checkout (entity: the coupon).
    CouponHold,
}

impl DeadlineKind {
    pub const ALL: &'static [DeadlineKind] = &[
        DeadlineKind::Reservation,
        DeadlineKind::PointLot,
        DeadlineKind::CouponHold,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineKind::Reservation => "reservation",
            DeadlineKind::PointLot => "point_lot",
            DeadlineKind::CouponHold => "coupon_hold",
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == kind)
    }

    /// The aggregate category whose events open and end deadlines of this kind.
    pub fn category(self) -> &'static str {
        match self {
            DeadlineKind::Reservation => "timesale",
            DeadlineKind::PointLot => "point",
            DeadlineKind::CouponHold => "coupon",
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
    wire::POINT_EARNED,
    wire::POINT_CANCELED,
    wire::POINT_EXPIRED,
    wire::COUPON_RESERVED,
    wire::COUPON_USED,
    wire::COUPON_RESERVATION_RELEASED,
    wire::COUPON_RESERVATION_EXPIRED,
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

impl PointEvent {
    /// What this event does to a deadline, if anything.
    pub fn deadline(&self) -> Option<DeadlineEffect> {
        let kind = DeadlineKind::PointLot;
        match self {
            PointEvent::Earned {
                transaction_id,
                expires_at: Some(due_at),
                ..
            } => Some(DeadlineEffect::Opens {
                kind,
                entity: *transaction_id,
                due_at: *due_at,
            }),
            PointEvent::Canceled {
                canceled_transaction_id,
                canceled_kind: TransactionKind::Earn,
                ..
            } => Some(DeadlineEffect::Ends {
                kind,
                entity: *canceled_transaction_id,
            }),
            // An expiry after a cancelled use put points back into an expired lot ends
            // nothing new; the lot's own expiry ended its deadline.
            PointEvent::Expired { lot_id, .. } => Some(DeadlineEffect::Ends {
                kind,
                entity: *lot_id,
            }),
            PointEvent::Earned { .. } | PointEvent::Spent { .. } | PointEvent::Canceled { .. } => {
                None
            }
        }
    }
}

impl CouponEvent {
    /// What this event does to a deadline, if anything: a hold opens one; a use (a confirmed
    /// hold, or a use without one, which ends nothing), a release or an expiry ends it.
    pub fn deadline(&self) -> Option<DeadlineEffect> {
        let kind = DeadlineKind::CouponHold;
        match self {
            CouponEvent::CouponReserved {
                coupon_id, until, ..
            } => Some(DeadlineEffect::Opens {
                kind,
                entity: *coupon_id,
                due_at: *until,
            }),
            CouponEvent::CouponUsed { coupon_id, .. } => Some(DeadlineEffect::Ends {
                kind,
                entity: *coupon_id,
            }),
            CouponEvent::CouponReservationReleased(ended)
            | CouponEvent::CouponReservationExpired(ended) => Some(DeadlineEffect::Ends {
                kind,
                entity: ended.coupon_id,
            }),
            CouponEvent::PolicyCreated { .. }
            | CouponEvent::CouponIssued { .. }
            | CouponEvent::CouponUseCanceled { .. }
            | CouponEvent::CouponRevoked { .. } => None,
        }
    }
}

impl AnyEvent {
    /// What this event does to a deadline, if anything.
    pub fn deadline(&self) -> Option<DeadlineEffect> {
        match self {
            AnyEvent::Coupon(e) => e.deadline(),
            AnyEvent::Point(e) => e.deadline(),
            AnyEvent::TimeSale(e) => e.deadline(),
            AnyEvent::Product(_) => None,
        }
    }
}
