//! Time sales (flash sales) and their orders. One time sale is one consistency boundary: it
//! owns the stock, every order placed in it and each buyer's purchased count, so "confirmed
//! orders never exceed the stock" and the per-user limit are checked against one state.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{checked_time, Money, Quantity, UserId};
use crate::DomainError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeSaleSpec {
    product_id: Uuid,
    /// The product's price when the sale was created; the discount price is below it.
    product_price: Money,
    discount_price: Money,
    quantity: Quantity,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    per_user_limit: Option<Quantity>,
}

impl TimeSaleSpec {
    /// `product_price` is the product's current price, read by the caller.
    pub fn new(
        product_id: Uuid,
        product_price: Money,
        discount_price: Money,
        quantity: Quantity,
        start_at: DateTime<Utc>,
        end_at: DateTime<Utc>,
        per_user_limit: Option<Quantity>,
    ) -> Result<Self, DomainError> {
        if discount_price.is_zero() {
            return Err(DomainError::invalid(
                "discountPrice",
                "must be greater than 0",
            ));
        }
        if discount_price >= product_price {
            return Err(DomainError::unacceptable(
                "discountPrice",
                "must be below the product's price",
            ));
        }
        let start_at = checked_time(start_at, "startAt")?;
        let end_at = checked_time(end_at, "endAt")?;
        if start_at >= end_at {
            return Err(DomainError::unacceptable("endAt", "must be after startAt"));
        }
        Ok(Self::recorded(
            product_id,
            product_price,
            discount_price,
            quantity,
            start_at,
            end_at,
            per_user_limit,
        ))
    }

    /// A sale as a recorded event states it: not checked again (the rules of the day it was
    /// created decided), so a stricter rule never makes the log unreadable.
    pub fn recorded(
        product_id: Uuid,
        product_price: Money,
        discount_price: Money,
        quantity: Quantity,
        start_at: DateTime<Utc>,
        end_at: DateTime<Utc>,
        per_user_limit: Option<Quantity>,
    ) -> Self {
        Self {
            product_id,
            product_price,
            discount_price,
            quantity,
            start_at,
            end_at,
            per_user_limit,
        }
    }

    pub fn product_id(&self) -> Uuid {
        self.product_id
    }
    pub fn product_price(&self) -> Money {
        self.product_price
    }
    pub fn discount_price(&self) -> Money {
        self.discount_price
    }
    pub fn quantity(&self) -> Quantity {
        self.quantity
    }
    pub fn start_at(&self) -> DateTime<Utc> {
        self.start_at
    }
    pub fn end_at(&self) -> DateTime<Utc> {
        self.end_at
    }
    pub fn per_user_limit(&self) -> Option<Quantity> {
        self.per_user_limit
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TimeSaleStatus {
    Scheduled,
    Active,
    SoldOut,
    Ended,
}

impl TimeSaleStatus {
    /// The status at `now`: the window decides first, then the stock.
    pub fn at(
        start_at: DateTime<Utc>,
        end_at: DateTime<Utc>,
        remaining: u32,
        now: DateTime<Utc>,
    ) -> Self {
        if now < start_at {
            TimeSaleStatus::Scheduled
        } else if now >= end_at {
            TimeSaleStatus::Ended
        } else if remaining == 0 {
            TimeSaleStatus::SoldOut
        } else {
            TimeSaleStatus::Active
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Created,
    Canceled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub user_id: UserId,
    pub quantity: Quantity,
    pub status: OrderStatus,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TimeSaleCommand {
    CreateTimeSale {
        spec: TimeSaleSpec,
        now: DateTime<Utc>,
    },
    PlaceOrder {
        order_id: Uuid,
        user_id: UserId,
        quantity: Quantity,
        now: DateTime<Utc>,
    },
    CancelOrder {
        order_id: Uuid,
        acting_user: Option<UserId>,
        now: DateTime<Utc>,
    },
}

/// Order events carry `remaining_after`, the stock right after them, so a read model sets
/// the live stock idempotently instead of adding and subtracting.
/// Serialized as its wire form (`crate::wire`, which implements serde for it).
#[derive(Debug, Clone, PartialEq)]
pub enum TimeSaleEvent {
    TimeSaleCreated {
        spec: TimeSaleSpec,
        at: DateTime<Utc>,
    },
    OrderPlaced {
        order_id: Uuid,
        user_id: UserId,
        quantity: Quantity,
        unit_price: Money,
        total_price: Money,
        remaining_after: u32,
        at: DateTime<Utc>,
    },
    OrderCanceled {
        order_id: Uuid,
        user_id: UserId,
        quantity: Quantity,
        remaining_after: u32,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeSale {
    spec: Option<TimeSaleSpec>,
    remaining: u32,
    orders: HashMap<Uuid, Order>,
    /// Units each user holds in live (not cancelled) orders: the per-user limit.
    bought: HashMap<UserId, u32>,
}

impl TimeSale {
    pub fn spec(&self) -> Option<&TimeSaleSpec> {
        self.spec.as_ref()
    }
    pub fn remaining(&self) -> u32 {
        self.remaining
    }
    pub fn order(&self, order_id: &Uuid) -> Option<&Order> {
        self.orders.get(order_id)
    }
    pub fn bought_by(&self, user_id: UserId) -> u32 {
        self.bought.get(&user_id).copied().unwrap_or(0)
    }
    pub fn orders(&self) -> impl Iterator<Item = (&Uuid, &Order)> {
        self.orders.iter()
    }
    pub fn status(&self, now: DateTime<Utc>) -> Option<TimeSaleStatus> {
        let spec = self.spec.as_ref()?;
        Some(TimeSaleStatus::at(
            spec.start_at,
            spec.end_at,
            self.remaining,
            now,
        ))
    }

    pub fn decide(&self, command: TimeSaleCommand) -> Result<Vec<TimeSaleEvent>, DomainError> {
        let Some(spec) = &self.spec else {
            return match command {
                TimeSaleCommand::CreateTimeSale { spec, now } => {
                    Ok(vec![TimeSaleEvent::TimeSaleCreated { spec, at: now }])
                }
                _ => Err(DomainError::TimeSaleNotFound),
            };
        };
        match command {
            TimeSaleCommand::CreateTimeSale { .. } => Err(DomainError::TimeSaleAlreadyExists),
            TimeSaleCommand::PlaceOrder {
                order_id,
                user_id,
                quantity,
                now,
            } => {
                match TimeSaleStatus::at(spec.start_at, spec.end_at, self.remaining, now) {
                    TimeSaleStatus::Scheduled => return Err(DomainError::TimeSaleNotStarted),
                    TimeSaleStatus::Ended => return Err(DomainError::TimeSaleEnded),
                    TimeSaleStatus::SoldOut => return Err(DomainError::SoldOut),
                    TimeSaleStatus::Active => {}
                }
                if self.orders.contains_key(&order_id) {
                    return Err(DomainError::OrderIdTaken);
                }
                if quantity.get() > self.remaining {
                    return Err(DomainError::InsufficientStock);
                }
                if let Some(limit) = spec.per_user_limit {
                    // u64: the sum of two u32 cannot overflow.
                    let after = u64::from(self.bought_by(user_id)) + u64::from(quantity.get());
                    if after > u64::from(limit.get()) {
                        return Err(DomainError::PerUserLimitExceeded);
                    }
                }
                let total_price =
                    spec.discount_price
                        .checked_mul(quantity)
                        .ok_or(DomainError::unacceptable(
                            "quantity",
                            "order total is too large",
                        ))?;
                Ok(vec![TimeSaleEvent::OrderPlaced {
                    order_id,
                    user_id,
                    quantity,
                    unit_price: spec.discount_price,
                    total_price,
                    remaining_after: self.remaining - quantity.get(),
                    at: now,
                }])
            }
            TimeSaleCommand::CancelOrder {
                order_id,
                acting_user,
                now,
            } => {
                let order = self
                    .orders
                    .get(&order_id)
                    .ok_or(DomainError::OrderNotFound)?;
                if acting_user.is_some_and(|user| user != order.user_id) {
                    return Err(DomainError::NotOrderOwner);
                }
                if order.status == OrderStatus::Canceled {
                    return Err(DomainError::OrderAlreadyCanceled);
                }
                Ok(vec![TimeSaleEvent::OrderCanceled {
                    order_id,
                    user_id: order.user_id,
                    quantity: order.quantity,
                    remaining_after: self.remaining + order.quantity.get(),
                    at: now,
                }])
            }
        }
    }

    pub fn apply_event(&mut self, event: TimeSaleEvent) {
        match event {
            TimeSaleEvent::TimeSaleCreated { spec, .. } => {
                self.remaining = spec.quantity.get();
                self.spec = Some(spec);
            }
            TimeSaleEvent::OrderPlaced {
                order_id,
                user_id,
                quantity,
                remaining_after,
                ..
            } => {
                self.remaining = remaining_after;
                *self.bought.entry(user_id).or_default() += quantity.get();
                self.orders.insert(
                    order_id,
                    Order {
                        user_id,
                        quantity,
                        status: OrderStatus::Created,
                    },
                );
            }
            TimeSaleEvent::OrderCanceled {
                order_id,
                user_id,
                quantity,
                remaining_after,
                ..
            } => {
                self.remaining = remaining_after;
                if let Some(bought) = self.bought.get_mut(&user_id) {
                    *bought = bought.saturating_sub(quantity.get());
                }
                if let Some(order) = self.orders.get_mut(&order_id) {
                    order.status = OrderStatus::Canceled;
                }
            }
        }
    }
}

crate::cqrs_aggregate!(
    TimeSale,
    "timesale",
    TimeSaleCommand,
    TimeSaleEvent,
    |e| match e {
        TimeSaleEvent::OrderPlaced { order_id, .. } => Some(*order_id),
        _ => None,
    }
);
