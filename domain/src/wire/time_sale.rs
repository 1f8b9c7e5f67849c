//! The time sale's events on the wire: `timesale.created`, `timesale.order_placed`,
//! `timesale.order_canceled`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::*;
use crate::time_sale::{TimeSaleEvent, TimeSaleSpec};
use crate::values::{Money, Quantity, UserId};

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
