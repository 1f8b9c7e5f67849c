//! The serialized form of events: the public contract, versioned and separate from the domain
//! types. Each domain event converts to a [`WireEvent`] (`type`, `version`, camelCase `data`)
//! and back, re-validating every value on the way in. `schemas/` holds one JSON Schema per
//! entry of [`EVENT_TYPES`]; a contract test checks samples of every variant against them.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use uuid::Uuid;

use crate::coupon::{CouponEvent, DiscountTerms, DiscountType, PolicySpec};
use crate::points::{PointEvent, TransactionKind};
use crate::product::{ProductEvent, ProductSpec};
use crate::time_sale::{TimeSaleEvent, TimeSaleSpec};
use crate::values::{Money, Points, Quantity, Text, UserId};

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
    COUPON_POLICY_CREATED = "coupon.policy_created" v 1 in "coupon";
    COUPON_ISSUED = "coupon.issued" v 2 in "coupon";
    COUPON_USED = "coupon.used" v 1 in "coupon";
    COUPON_CANCELED = "coupon.canceled" v 1 in "coupon";
    COUPON_REVOKED = "coupon.revoked" v 1 in "coupon";
    POINT_EARNED = "point.earned" v 1 in "point";
    POINT_SPENT = "point.spent" v 1 in "point";
    POINT_CANCELED = "point.canceled" v 1 in "point";
    PRODUCT_CREATED = "product.created" v 1 in "product";
    TIMESALE_CREATED = "timesale.created" v 1 in "timesale";
    ORDER_CREATED = "order.created" v 1 in "timesale";
    ORDER_CANCELED = "order.canceled" v 1 in "timesale";
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
pub const UPCASTERS: &[Upcaster] = &[Upcaster {
    event_type: COUPON_ISSUED,
    from: 1,
    upcast: coupon_issued_v1_to_v2,
}];

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

// ---- coupon ---------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyCreatedV1 {
    title: Text,
    description: Text,
    total_quantity: Quantity,
    start_time: DateTime<Utc>,
    end_time: DateTime<Utc>,
    discount_type: DiscountType,
    discount_value: i64,
    minimum_order_amount: Money,
    maximum_discount_amount: Money,
    coupon_expires_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CouponIssuedV2 {
    coupon_id: Uuid,
    user_id: UserId,
    expires_at: DateTime<Utc>,
    issued_count: u32,
    occurred_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CouponUsedV1 {
    coupon_id: Uuid,
    user_id: UserId,
    order_id: Text,
    order_amount: Money,
    discount_amount: Money,
    used_count: u32,
    used_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CouponCanceledV1 {
    coupon_id: Uuid,
    user_id: UserId,
    order_id: Text,
    used_count: u32,
    canceled_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CouponRevokedV1 {
    coupon_id: Uuid,
    user_id: UserId,
    revoked_at: DateTime<Utc>,
}

impl WireCodec for CouponEvent {
    fn type_name(&self) -> &'static str {
        match self {
            CouponEvent::PolicyCreated { .. } => COUPON_POLICY_CREATED,
            CouponEvent::CouponIssued { .. } => COUPON_ISSUED,
            CouponEvent::CouponUsed { .. } => COUPON_USED,
            CouponEvent::CouponUseCanceled { .. } => COUPON_CANCELED,
            CouponEvent::CouponRevoked { .. } => COUPON_REVOKED,
        }
    }

    fn to_wire(&self) -> WireEvent {
        let name = self.type_name();
        match self.clone() {
            CouponEvent::PolicyCreated { spec } => {
                let terms = spec.terms();
                encode(
                    name,
                    PolicyCreatedV1 {
                        title: spec.title().clone(),
                        description: spec.description().clone(),
                        total_quantity: spec.total_quantity(),
                        start_time: spec.start_time(),
                        end_time: spec.end_time(),
                        discount_type: terms.discount_type(),
                        discount_value: terms.discount_value(),
                        minimum_order_amount: terms.minimum_order_amount(),
                        maximum_discount_amount: terms.maximum_discount_amount(),
                        coupon_expires_at: spec.coupon_expiry(),
                    },
                )
            }
            CouponEvent::CouponIssued {
                coupon_id,
                user_id,
                expires_at,
                issued_count,
                at,
            } => encode(
                name,
                CouponIssuedV2 {
                    coupon_id,
                    user_id,
                    expires_at,
                    issued_count,
                    occurred_at: at,
                },
            ),
            CouponEvent::CouponUsed {
                coupon_id,
                user_id,
                order_id,
                order_amount,
                discount,
                used_count,
                at,
            } => encode(
                name,
                CouponUsedV1 {
                    coupon_id,
                    user_id,
                    order_id,
                    order_amount,
                    discount_amount: discount,
                    used_count,
                    used_at: at,
                },
            ),
            CouponEvent::CouponUseCanceled {
                coupon_id,
                user_id,
                order_id,
                used_count,
                at,
            } => encode(
                name,
                CouponCanceledV1 {
                    coupon_id,
                    user_id,
                    order_id,
                    used_count,
                    canceled_at: at,
                },
            ),
            CouponEvent::CouponRevoked {
                coupon_id,
                user_id,
                at,
            } => encode(
                name,
                CouponRevokedV1 {
                    coupon_id,
                    user_id,
                    revoked_at: at,
                },
            ),
        }
    }

    fn from_wire(wire: &WireEvent) -> Result<Self, WireError> {
        let wire = &*upcast(wire)?;
        Ok(match wire.event_type.as_str() {
            COUPON_POLICY_CREATED => {
                let d: PolicyCreatedV1 = decode(wire)?;
                let terms = DiscountTerms::recorded(
                    d.discount_type,
                    d.discount_value,
                    d.minimum_order_amount,
                    d.maximum_discount_amount,
                );
                let spec = PolicySpec::recorded(
                    d.title,
                    d.description,
                    d.total_quantity,
                    d.start_time,
                    d.end_time,
                    terms,
                );
                CouponEvent::PolicyCreated { spec }
            }
            COUPON_ISSUED => {
                let d: CouponIssuedV2 = decode(wire)?;
                CouponEvent::CouponIssued {
                    coupon_id: d.coupon_id,
                    user_id: d.user_id,
                    expires_at: d.expires_at,
                    issued_count: d.issued_count,
                    at: d.occurred_at,
                }
            }
            COUPON_USED => {
                let d: CouponUsedV1 = decode(wire)?;
                CouponEvent::CouponUsed {
                    coupon_id: d.coupon_id,
                    user_id: d.user_id,
                    order_id: d.order_id,
                    order_amount: d.order_amount,
                    discount: d.discount_amount,
                    used_count: d.used_count,
                    at: d.used_at,
                }
            }
            COUPON_CANCELED => {
                let d: CouponCanceledV1 = decode(wire)?;
                CouponEvent::CouponUseCanceled {
                    coupon_id: d.coupon_id,
                    user_id: d.user_id,
                    order_id: d.order_id,
                    used_count: d.used_count,
                    at: d.canceled_at,
                }
            }
            COUPON_REVOKED => {
                let d: CouponRevokedV1 = decode(wire)?;
                CouponEvent::CouponRevoked {
                    coupon_id: d.coupon_id,
                    user_id: d.user_id,
                    at: d.revoked_at,
                }
            }
            _ => return Err(unknown(wire)),
        })
    }
}

// ---- points ---------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PointEarnedV1 {
    user_id: UserId,
    transaction_id: Uuid,
    amount: Points,
    description: Text,
    balance_after: i64,
    occurred_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PointSpentV1 {
    user_id: UserId,
    transaction_id: Uuid,
    amount: Points,
    description: Text,
    #[serde(default)]
    order_id: Option<Text>,
    balance_after: i64,
    occurred_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PointCanceledV1 {
    user_id: UserId,
    transaction_id: Uuid,
    canceled_transaction_id: Uuid,
    canceled_type: TransactionKind,
    amount: Points,
    balance_after: i64,
    occurred_at: DateTime<Utc>,
}

fn balance(wire: &WireEvent, value: i64) -> Result<i64, WireError> {
    if value < 0 {
        return Err(invalid(wire)(crate::DomainError::invalid(
            "balanceAfter",
            "must not be negative",
        )));
    }
    Ok(value)
}

impl WireCodec for PointEvent {
    fn type_name(&self) -> &'static str {
        match self {
            PointEvent::Earned { .. } => POINT_EARNED,
            PointEvent::Spent { .. } => POINT_SPENT,
            PointEvent::Canceled { .. } => POINT_CANCELED,
        }
    }

    fn to_wire(&self) -> WireEvent {
        let name = self.type_name();
        match self.clone() {
            PointEvent::Earned {
                user_id,
                transaction_id,
                amount,
                description,
                balance_after,
                at,
            } => encode(
                name,
                PointEarnedV1 {
                    user_id,
                    transaction_id,
                    amount,
                    description,
                    balance_after,
                    occurred_at: at,
                },
            ),
            PointEvent::Spent {
                user_id,
                transaction_id,
                amount,
                description,
                order_id,
                balance_after,
                at,
            } => encode(
                name,
                PointSpentV1 {
                    user_id,
                    transaction_id,
                    amount,
                    description,
                    order_id,
                    balance_after,
                    occurred_at: at,
                },
            ),
            PointEvent::Canceled {
                user_id,
                transaction_id,
                canceled_transaction_id,
                canceled_kind,
                amount,
                balance_after,
                at,
            } => encode(
                name,
                PointCanceledV1 {
                    user_id,
                    transaction_id,
                    canceled_transaction_id,
                    canceled_type: canceled_kind,
                    amount,
                    balance_after,
                    occurred_at: at,
                },
            ),
        }
    }

    fn from_wire(wire: &WireEvent) -> Result<Self, WireError> {
        let wire = &*upcast(wire)?;
        Ok(match wire.event_type.as_str() {
            POINT_EARNED => {
                let d: PointEarnedV1 = decode(wire)?;
                PointEvent::Earned {
                    user_id: d.user_id,
                    transaction_id: d.transaction_id,
                    amount: d.amount,
                    description: d.description,
                    balance_after: balance(wire, d.balance_after)?,
                    at: d.occurred_at,
                }
            }
            POINT_SPENT => {
                let d: PointSpentV1 = decode(wire)?;
                PointEvent::Spent {
                    user_id: d.user_id,
                    transaction_id: d.transaction_id,
                    amount: d.amount,
                    description: d.description,
                    order_id: d.order_id,
                    balance_after: balance(wire, d.balance_after)?,
                    at: d.occurred_at,
                }
            }
            POINT_CANCELED => {
                let d: PointCanceledV1 = decode(wire)?;
                PointEvent::Canceled {
                    user_id: d.user_id,
                    transaction_id: d.transaction_id,
                    canceled_transaction_id: d.canceled_transaction_id,
                    canceled_kind: d.canceled_type,
                    amount: d.amount,
                    balance_after: balance(wire, d.balance_after)?,
                    at: d.occurred_at,
                }
            }
            _ => return Err(unknown(wire)),
        })
    }
}

// ---- products -------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProductCreatedV1 {
    name: Text,
    price: Money,
    description: Text,
    created_at: DateTime<Utc>,
}

impl WireCodec for ProductEvent {
    fn type_name(&self) -> &'static str {
        match self {
            ProductEvent::ProductCreated { .. } => PRODUCT_CREATED,
        }
    }

    fn to_wire(&self) -> WireEvent {
        match self.clone() {
            ProductEvent::ProductCreated { spec, at } => encode(
                self.type_name(),
                ProductCreatedV1 {
                    name: spec.name,
                    price: spec.price,
                    description: spec.description,
                    created_at: at,
                },
            ),
        }
    }

    fn from_wire(wire: &WireEvent) -> Result<Self, WireError> {
        let wire = &*upcast(wire)?;
        if wire.event_type != PRODUCT_CREATED {
            return Err(unknown(wire));
        }
        let d: ProductCreatedV1 = decode(wire)?;
        let spec = ProductSpec::new(d.name, d.price, d.description).map_err(invalid(wire))?;
        Ok(ProductEvent::ProductCreated {
            spec,
            at: d.created_at,
        })
    }
}

// ---- time sales -----------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TimeSaleCreatedV1 {
    product_id: Uuid,
    /// The product's price when the sale was created (the discount is checked against it).
    product_price: Money,
    discount_price: Money,
    quantity: Quantity,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    #[serde(default)]
    per_user_limit: Option<Quantity>,
    created_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OrderCreatedV1 {
    order_id: Uuid,
    user_id: UserId,
    quantity: Quantity,
    unit_price: Money,
    total_price: Money,
    remaining_stock: u32,
    created_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OrderCanceledV1 {
    order_id: Uuid,
    user_id: UserId,
    quantity: Quantity,
    remaining_stock: u32,
    canceled_at: DateTime<Utc>,
}

impl WireCodec for TimeSaleEvent {
    fn type_name(&self) -> &'static str {
        match self {
            TimeSaleEvent::TimeSaleCreated { .. } => TIMESALE_CREATED,
            TimeSaleEvent::OrderPlaced { .. } => ORDER_CREATED,
            TimeSaleEvent::OrderCanceled { .. } => ORDER_CANCELED,
        }
    }

    fn to_wire(&self) -> WireEvent {
        let name = self.type_name();
        match self.clone() {
            TimeSaleEvent::TimeSaleCreated { spec, at } => encode(
                name,
                TimeSaleCreatedV1 {
                    product_id: spec.product_id(),
                    product_price: spec.product_price(),
                    discount_price: spec.discount_price(),
                    quantity: spec.quantity(),
                    start_at: spec.start_at(),
                    end_at: spec.end_at(),
                    per_user_limit: spec.per_user_limit(),
                    created_at: at,
                },
            ),
            TimeSaleEvent::OrderPlaced {
                order_id,
                user_id,
                quantity,
                unit_price,
                total_price,
                remaining_after,
                at,
            } => encode(
                name,
                OrderCreatedV1 {
                    order_id,
                    user_id,
                    quantity,
                    unit_price,
                    total_price,
                    remaining_stock: remaining_after,
                    created_at: at,
                },
            ),
            TimeSaleEvent::OrderCanceled {
                order_id,
                user_id,
                quantity,
                remaining_after,
                at,
            } => encode(
                name,
                OrderCanceledV1 {
                    order_id,
                    user_id,
                    quantity,
                    remaining_stock: remaining_after,
                    canceled_at: at,
                },
            ),
        }
    }

    fn from_wire(wire: &WireEvent) -> Result<Self, WireError> {
        let wire = &*upcast(wire)?;
        Ok(match wire.event_type.as_str() {
            TIMESALE_CREATED => {
                let d: TimeSaleCreatedV1 = decode(wire)?;
                let spec = TimeSaleSpec::recorded(
                    d.product_id,
                    d.product_price,
                    d.discount_price,
                    d.quantity,
                    d.start_at,
                    d.end_at,
                    d.per_user_limit,
                );
                TimeSaleEvent::TimeSaleCreated {
                    spec,
                    at: d.created_at,
                }
            }
            ORDER_CREATED => {
                let d: OrderCreatedV1 = decode(wire)?;
                TimeSaleEvent::OrderPlaced {
                    order_id: d.order_id,
                    user_id: d.user_id,
                    quantity: d.quantity,
                    unit_price: d.unit_price,
                    total_price: d.total_price,
                    remaining_after: d.remaining_stock,
                    at: d.created_at,
                }
            }
            ORDER_CANCELED => {
                let d: OrderCanceledV1 = decode(wire)?;
                TimeSaleEvent::OrderCanceled {
                    order_id: d.order_id,
                    user_id: d.user_id,
                    quantity: d.quantity,
                    remaining_after: d.remaining_stock,
                    at: d.canceled_at,
                }
            }
            _ => return Err(unknown(wire)),
        })
    }
}

/// Serde glue: domain events serialize as their wire form (cqrs-es requires serde on events).
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
    )*};
}
serde_via_wire!(CouponEvent, PointEvent, ProductEvent, TimeSaleEvent);
