//! The serialized form of events: the public contract, versioned and separate from the domain
//! types. Each domain event converts to a [`WireEvent`] (`type`, `version`, camelCase `data`)
//! and back, re-validating every value on the way in. `schemas/` holds one JSON Schema per
//! entry of [`EVENT_TYPES`]; a contract test checks samples of every variant against them.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::coupon::CouponEvent;
use crate::points::PointEvent;
use crate::product::ProductEvent;
use crate::time_sale::TimeSaleEvent;

mod coupon;
mod points;
mod product;
mod time_sale;

/// The version most event types are written with today; [`current_version`] gives each
/// type's own (`coupon.issued` is at 2).
pub const CURRENT_VERSION: u16 = 1;

/// One event as stored and published: its public type name, schema version and data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireEvent {
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u16,
    pub data: Value,
}

/// Why stored or received data could not be turned into a domain event. Kept apart from
/// [`crate::DomainError`]: this is corrupt or foreign data, not a business refusal.
#[derive(Debug, Error)]
pub enum WireError {
    #[error("unknown event type {event_type} version {version}")]
    UnknownType { event_type: String, version: u16 },
    #[error("event {event_type} has malformed data: {source}")]
    Malformed {
        event_type: String,
        source: serde_json::Error,
    },
    #[error("event {event_type} carries an invalid value: {source}")]
    Invalid {
        event_type: String,
        source: crate::DomainError,
    },
}

/// A public event type: its name, version and the aggregate category (Kafka topic) it
/// belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventType {
    pub name: &'static str,
    pub version: u16,
    pub category: &'static str,
}

macro_rules! event_types {
    ($($konst:ident = $name:literal v $version:literal in $category:literal;)*) => {
        $(pub const $konst: &str = $name;)*
        /// Every event type the system writes, at the version it writes.
        pub const EVENT_TYPES: &[EventType] = &[
            $(EventType { name: $name, version: $version, category: $category },)*
        ];
    };
}

event_types! {
    COUPON_POLICY_CREATED = "coupon.policy_created" v 2 in "coupon";
    COUPON_ISSUED = "coupon.issued" v 2 in "coupon";
    COUPON_USED = "coupon.used" v 2 in "coupon";
    COUPON_CANCELED = "coupon.canceled" v 2 in "coupon";
    COUPON_REVOKED = "coupon.revoked" v 1 in "coupon";
    COUPON_RESERVED = "coupon.reserved" v 1 in "coupon";
    COUPON_RESERVATION_RELEASED = "coupon.reservation_released" v 1 in "coupon";
    COUPON_RESERVATION_EXPIRED = "coupon.reservation_expired" v 1 in "coupon";
    POINT_EARNED = "point.earned" v 2 in "point";
    POINT_SPENT = "point.spent" v 2 in "point";
    POINT_CANCELED = "point.canceled" v 2 in "point";
    POINT_EXPIRED = "point.expired" v 1 in "point";
    PRODUCT_CREATED = "product.created" v 1 in "product";
    TIMESALE_CREATED = "timesale.created" v 1 in "timesale";
    ORDER_CREATED = "order.created" v 1 in "timesale";
    ORDER_CANCELED = "order.canceled" v 1 in "timesale";
    TIMESALE_RESERVED = "timesale.reserved" v 1 in "timesale";
    RESERVATION_CONFIRMED = "timesale.reservation_confirmed" v 1 in "timesale";
    RESERVATION_RELEASED = "timesale.reservation_released" v 1 in "timesale";
    RESERVATION_EXPIRED = "timesale.reservation_expired" v 1 in "timesale";
}

/// The version `event_type` is written with today (`None` for an unknown type).
pub fn current_version(event_type: &str) -> Option<u16> {
    EVENT_TYPES
        .iter()
        .find(|t| t.name == event_type)
        .map(|t| t.version)
}

/// An upcaster: turns the data of `event_type` at `from` into its data at `from + 1`.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    pub event_type: &'static str,
    pub from: u16,
    pub upcast: fn(Value) -> Value,
}

/// Every upcaster. An old version is read, never written: stored events keep the version
/// they were written with, and every reader — aggregate loads in the command API, the
/// projector, replay-tools — upcasts through [`upcast`] before decoding, so all of them see
/// the same current form.
pub const UPCASTERS: &[Upcaster] = &[
    Upcaster {
        event_type: COUPON_ISSUED,
        from: 1,
        upcast: coupon_issued_v1_to_v2,
    },
    // Each v2 below adds optional fields only: a v1 event is a v2 event without them. Here:
    // a budget, coupons per user, the budget's tally.
    Upcaster {
        event_type: COUPON_POLICY_CREATED,
        from: 1,
        upcast: unchanged,
    },
    Upcaster {
        event_type: COUPON_USED,
        from: 1,
        upcast: unchanged,
    },
    Upcaster {
        event_type: COUPON_CANCELED,
        from: 1,
        upcast: unchanged,
    },
    // v2 adds a lot's expiry and what expires next, both optional.
    Upcaster {
        event_type: POINT_EARNED,
        from: 1,
        upcast: unchanged,
    },
    Upcaster {
        event_type: POINT_SPENT,
        from: 1,
        upcast: unchanged,
    },
    Upcaster {
        event_type: POINT_CANCELED,
        from: 1,
        upcast: unchanged,
    },
];

/// An upcast that only moves the version: the newer version adds optional fields.
fn unchanged(data: Value) -> Value {
    data
}

/// coupon.issued v2 names its timestamp `occurredAt`, like every point event (v1: `issuedAt`).
fn coupon_issued_v1_to_v2(mut data: Value) -> Value {
    if let Some(object) = data.as_object_mut() {
        if let Some(at) = object.remove("issuedAt") {
            object.insert("occurredAt".to_owned(), at);
        }
    }
    data
}

/// `wire` at its type's current version: upcast step by step, or as it is when current.
pub fn upcast(wire: &WireEvent) -> Result<std::borrow::Cow<'_, WireEvent>, WireError> {
    use std::borrow::Cow;
    let current = current_version(&wire.event_type).ok_or_else(|| unknown(wire))?;
    let mut event = Cow::Borrowed(wire);
    while event.version < current {
        let step = UPCASTERS
            .iter()
            .find(|u| u.event_type == event.event_type && u.from == event.version)
            .ok_or_else(|| unknown(wire))?;
        let owned = event.to_mut();
        owned.data = (step.upcast)(std::mem::take(&mut owned.data));
        owned.version += 1;
    }
    if event.version != current {
        return Err(unknown(wire));
    }
    Ok(event)
}

/// An event of any aggregate, decoded from its wire form: what readers of the whole log (the
/// projector, the deadline follower) work with.
#[derive(Debug, Clone)]
pub enum AnyEvent {
    Coupon(CouponEvent),
    Point(PointEvent),
    Product(ProductEvent),
    TimeSale(TimeSaleEvent),
}

impl AnyEvent {
    /// The event of an aggregate of `category` (upcast from older versions); `None` for a
    /// category this build does not know.
    pub fn from_wire(category: &str, wire: &WireEvent) -> Option<Result<Self, WireError>> {
        Some(match category {
            "coupon" => CouponEvent::from_wire(wire).map(AnyEvent::Coupon),
            "point" => PointEvent::from_wire(wire).map(AnyEvent::Point),
            "product" => ProductEvent::from_wire(wire).map(AnyEvent::Product),
            "timesale" => TimeSaleEvent::from_wire(wire).map(AnyEvent::TimeSale),
            _ => return None,
        })
    }
}

/// Conversion between a domain event enum and its wire form.
pub trait WireCodec: Sized {
    fn type_name(&self) -> &'static str;
    fn to_wire(&self) -> WireEvent;
    fn from_wire(wire: &WireEvent) -> Result<Self, WireError>;
}

fn encode<T: Serialize>(event_type: &'static str, data: T) -> WireEvent {
    WireEvent {
        event_type: event_type.to_owned(),
        version: current_version(event_type).unwrap_or(CURRENT_VERSION),
        // Serializing these plain structs cannot fail: no maps with non-string keys, no
        // fallible Serialize impls.
        data: serde_json::to_value(data).unwrap_or(Value::Null),
    }
}

fn decode<T: DeserializeOwned>(wire: &WireEvent) -> Result<T, WireError> {
    T::deserialize(&wire.data).map_err(|source| WireError::Malformed {
        event_type: wire.event_type.clone(),
        source,
    })
}

fn invalid(wire: &WireEvent) -> impl FnOnce(crate::DomainError) -> WireError + '_ {
    move |source| WireError::Invalid {
        event_type: wire.event_type.clone(),
        source,
    }
}

fn unknown(wire: &WireEvent) -> WireError {
    WireError::UnknownType {
        event_type: wire.event_type.clone(),
        version: wire.version,
    }
}

/// Serde glue: domain events serialize as their wire form (cqrs-es requires serde on events).
/// Written here, not derived on the events, so the aggregates do not depend on their codec.
macro_rules! serde_via_wire {
    ($($event:ty),*) => {$(
        impl From<$event> for WireEvent {
            fn from(event: $event) -> Self {
                event.to_wire()
            }
        }
        impl TryFrom<WireEvent> for $event {
            type Error = WireError;
            fn try_from(wire: WireEvent) -> Result<Self, Self::Error> {
                <$event>::from_wire(&wire)
            }
        }
        impl serde::Serialize for $event {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.to_wire().serialize(serializer)
            }
        }
        impl<'de> serde::Deserialize<'de> for $event {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let wire = WireEvent::deserialize(deserializer)?;
                <$event>::from_wire(&wire).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_via_wire!(CouponEvent, PointEvent, ProductEvent, TimeSaleEvent);
