//! The time sale's events on the wire: `timesale.created`, `order.created`, `order.canceled`,
//! and the checkout holds: `timesale.reserved`, `timesale.reservation_confirmed`,
//! `timesale.reservation_released`, `timesale.reservation_expired`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::*;
use crate::time_sale::{HoldEnded, TimeSaleEvent, TimeSaleSpec};
use crate::values::{Money, Quantity, Text, UserId};

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

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReservedV1 {
    reservation_id: Uuid,
    order_id: Text,
    user_id: UserId,
    quantity: Quantity,
    unit_price: Money,
    expires_at: DateTime<Utc>,
    remaining_stock: u32,
    reserved_stock: u32,
    reserved_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReservationConfirmedV1 {
    reservation_id: Uuid,
    /// The order the hold became (the id `order.created` would carry).
    created_order_id: Uuid,
    user_id: UserId,
    quantity: Quantity,
    unit_price: Money,
    total_price: Money,
    remaining_stock: u32,
    reserved_stock: u32,
    confirmed_at: DateTime<Utc>,
}

/// `timesale.reservation_released` and `timesale.reservation_expired`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HoldEndedV1 {
    reservation_id: Uuid,
    user_id: UserId,
    quantity: Quantity,
    remaining_stock: u32,
    reserved_stock: u32,
    occurred_at: DateTime<Utc>,
}

impl From<HoldEnded> for HoldEndedV1 {
    fn from(e: HoldEnded) -> Self {
        HoldEndedV1 {
            reservation_id: e.reservation_id,
            user_id: e.user_id,
            quantity: e.quantity,
            remaining_stock: e.remaining_after,
            reserved_stock: e.reserved_after,
            occurred_at: e.at,
        }
    }
}

impl From<HoldEndedV1> for HoldEnded {
    fn from(d: HoldEndedV1) -> Self {
        HoldEnded {
            reservation_id: d.reservation_id,
            user_id: d.user_id,
            quantity: d.quantity,
            remaining_after: d.remaining_stock,
            reserved_after: d.reserved_stock,
            at: d.occurred_at,
        }
    }
}

impl WireCodec for TimeSaleEvent {
    fn type_name(&self) -> &'static str {
        match self {
            TimeSaleEvent::TimeSaleCreated { .. } => TIMESALE_CREATED,
            TimeSaleEvent::OrderPlaced { .. } => ORDER_CREATED,
            TimeSaleEvent::OrderCanceled { .. } => ORDER_CANCELED,
            TimeSaleEvent::Reserved { .. } => TIMESALE_RESERVED,
            TimeSaleEvent::ReservationConfirmed { .. } => RESERVATION_CONFIRMED,
            TimeSaleEvent::ReservationReleased(_) => RESERVATION_RELEASED,
            TimeSaleEvent::ReservationExpired(_) => RESERVATION_EXPIRED,
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
            TimeSaleEvent::Reserved {
                reservation_id,
                order_ref,
                user_id,
                quantity,
                unit_price,
                expires_at,
                remaining_after,
                reserved_after,
                at,
            } => encode(
                name,
                ReservedV1 {
                    reservation_id,
                    order_id: order_ref,
                    user_id,
                    quantity,
                    unit_price,
                    expires_at,
                    remaining_stock: remaining_after,
                    reserved_stock: reserved_after,
                    reserved_at: at,
                },
            ),
            TimeSaleEvent::ReservationConfirmed {
                reservation_id,
                order_id,
                user_id,
                quantity,
                unit_price,
                total_price,
                remaining_after,
                reserved_after,
                at,
            } => encode(
                name,
                ReservationConfirmedV1 {
                    reservation_id,
                    created_order_id: order_id,
                    user_id,
                    quantity,
                    unit_price,
                    total_price,
                    remaining_stock: remaining_after,
                    reserved_stock: reserved_after,
                    confirmed_at: at,
                },
            ),
            TimeSaleEvent::ReservationReleased(ended)
            | TimeSaleEvent::ReservationExpired(ended) => encode(name, HoldEndedV1::from(ended)),
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
            TIMESALE_RESERVED => {
                let d: ReservedV1 = decode(wire)?;
                TimeSaleEvent::Reserved {
                    reservation_id: d.reservation_id,
                    order_ref: d.order_id,
                    user_id: d.user_id,
                    quantity: d.quantity,
                    unit_price: d.unit_price,
                    expires_at: d.expires_at,
                    remaining_after: d.remaining_stock,
                    reserved_after: d.reserved_stock,
                    at: d.reserved_at,
                }
            }
            RESERVATION_CONFIRMED => {
                let d: ReservationConfirmedV1 = decode(wire)?;
                TimeSaleEvent::ReservationConfirmed {
                    reservation_id: d.reservation_id,
                    order_id: d.created_order_id,
                    user_id: d.user_id,
                    quantity: d.quantity,
                    unit_price: d.unit_price,
                    total_price: d.total_price,
                    remaining_after: d.remaining_stock,
                    reserved_after: d.reserved_stock,
                    at: d.confirmed_at,
                }
            }
            RESERVATION_RELEASED => {
                TimeSaleEvent::ReservationReleased(decode::<HoldEndedV1>(wire)?.into())
            }
            RESERVATION_EXPIRED => {
                TimeSaleEvent::ReservationExpired(decode::<HoldEndedV1>(wire)?.into())
            }
            _ => return Err(unknown(wire)),
        })
    }
}
