//! Time sales (flash sales) and their orders. One time sale is one consistency boundary: it
//! owns the stock, every order placed in it and each buyer's purchased count, so "confirmed
//! orders never exceed the stock" and the per-user limit are checked against one state.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{checked_time, Money, Quantity, Text, UserId};
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

/// Where a checkout hold stands. `Held` units are out of stock for everyone else; the other
/// three are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationStatus {
    Held,
    Confirmed,
    Released,
    Expired,
}

/// Units of a sale held for a checkout (the shop's order `order_ref`) until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub order_ref: Text,
    pub user_id: UserId,
    pub quantity: Quantity,
    pub expires_at: DateTime<Utc>,
    pub status: ReservationStatus,
    /// The order a confirmation created.
    pub order_id: Option<Uuid>,
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
    /// Holds units for a checkout until `expires_at`: out of stock for everyone else, within
    /// the buyer's limit, like an order. One hold per `order_ref`.
    Reserve {
        reservation_id: Uuid,
        order_ref: Text,
        user_id: UserId,
        quantity: Quantity,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    /// The checkout paid: the held units become the order `order_id`.
    ConfirmReservation {
        reservation_id: Uuid,
        order_id: Uuid,
        acting_user: Option<UserId>,
        now: DateTime<Utc>,
    },
    /// The checkout gave up: the held units go back to stock at once.
    ReleaseReservation {
        reservation_id: Uuid,
        acting_user: Option<UserId>,
        now: DateTime<Utc>,
    },
    /// The system's deadline: a hold still held at its expiry goes back to stock. Refused
    /// before the expiry and for a hold no longer held, so it fires once.
    ExpireReservation {
        reservation_id: Uuid,
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
    /// Units held for a checkout. `remaining_after` is the stock anyone can still buy;
    /// `reserved_after` the units held in all open reservations.
    Reserved {
        reservation_id: Uuid,
        order_ref: Text,
        user_id: UserId,
        quantity: Quantity,
        unit_price: Money,
        expires_at: DateTime<Utc>,
        remaining_after: u32,
        reserved_after: u32,
        at: DateTime<Utc>,
    },
    /// A hold became the order `order_id` (an order created, as `order.created` is).
    ReservationConfirmed {
        reservation_id: Uuid,
        order_id: Uuid,
        user_id: UserId,
        quantity: Quantity,
        unit_price: Money,
        total_price: Money,
        remaining_after: u32,
        reserved_after: u32,
        at: DateTime<Utc>,
    },
    /// A hold given up by the checkout: its units are back in stock.
    ReservationReleased(HoldEnded),
    /// A hold that reached its expiry unconfirmed: its units are back in stock.
    ReservationExpired(HoldEnded),
}

/// A hold that ended without an order: what went back to stock.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldEnded {
    pub reservation_id: Uuid,
    pub user_id: UserId,
    pub quantity: Quantity,
    pub remaining_after: u32,
    pub reserved_after: u32,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeSale {
    spec: Option<TimeSaleSpec>,
    remaining: u32,
    orders: HashMap<Uuid, Order>,
    /// Units each user holds in live (not cancelled) orders and open holds: the per-user
    /// limit.
    bought: HashMap<UserId, u32>,
    /// Units held in open reservations.
    #[serde(default)]
    reserved: u32,
    #[serde(default)]
    reservations: HashMap<Uuid, Reservation>,
    /// The shop's order reference → its reservation (one hold per checkout).
    #[serde(default)]
    order_refs: HashMap<String, Uuid>,
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
    /// Units held in open reservations.
    pub fn reserved(&self) -> u32 {
        self.reserved
    }
    pub fn reservation(&self, reservation_id: &Uuid) -> Option<&Reservation> {
        self.reservations.get(reservation_id)
    }
    /// The reservation of the shop's order `order_ref`, if one was made.
    pub fn reservation_of(&self, order_ref: &str) -> Option<(Uuid, &Reservation)> {
        let id = self.order_refs.get(order_ref)?;
        Some((*id, self.reservations.get(id)?))
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
                self.check_take(spec, user_id, quantity, now)?;
                if self.orders.contains_key(&order_id) {
                    return Err(DomainError::OrderIdTaken);
                }
                let total_price = total(spec, quantity)?;
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
            TimeSaleCommand::Reserve {
                reservation_id,
                order_ref,
                user_id,
                quantity,
                expires_at,
                now,
            } => {
                if self.order_refs.contains_key(order_ref.as_str()) {
                    return Err(DomainError::ReservationExists);
                }
                self.check_take(spec, user_id, quantity, now)?;
                if self.reservations.contains_key(&reservation_id) {
                    return Err(DomainError::ReservationExists);
                }
                let expires_at = checked_time(expires_at, "ttlSeconds")?;
                if expires_at <= now {
                    return Err(DomainError::unacceptable(
                        "ttlSeconds",
                        "the hold must end after now",
                    ));
                }
                total(spec, quantity)?;
                Ok(vec![TimeSaleEvent::Reserved {
                    reservation_id,
                    order_ref,
                    user_id,
                    quantity,
                    unit_price: spec.discount_price,
                    expires_at,
                    remaining_after: self.remaining - quantity.get(),
                    reserved_after: self.reserved + quantity.get(),
                    at: now,
                }])
            }
            TimeSaleCommand::ConfirmReservation {
                reservation_id,
                order_id,
                acting_user,
                now,
            } => {
                let hold = self.open_hold(reservation_id, acting_user, now)?;
                if self.orders.contains_key(&order_id) {
                    return Err(DomainError::OrderIdTaken);
                }
                Ok(vec![TimeSaleEvent::ReservationConfirmed {
                    reservation_id,
                    order_id,
                    user_id: hold.user_id,
                    quantity: hold.quantity,
                    unit_price: spec.discount_price,
                    total_price: total(spec, hold.quantity)?,
                    remaining_after: self.remaining,
                    reserved_after: self.reserved - hold.quantity.get(),
                    at: now,
                }])
            }
            TimeSaleCommand::ReleaseReservation {
                reservation_id,
                acting_user,
                now,
            } => {
                let hold = self.open_hold(reservation_id, acting_user, now)?;
                Ok(vec![TimeSaleEvent::ReservationReleased(self.hold_ended(
                    reservation_id,
                    hold,
                    now,
                ))])
            }
            TimeSaleCommand::ExpireReservation {
                reservation_id,
                now,
            } => {
                let hold = self
                    .reservations
                    .get(&reservation_id)
                    .ok_or(DomainError::ReservationNotFound)?;
                if hold.status != ReservationStatus::Held {
                    return Err(DomainError::ReservationClosed);
                }
                if now < hold.expires_at {
                    return Err(DomainError::ReservationNotDue);
                }
                Ok(vec![TimeSaleEvent::ReservationExpired(self.hold_ended(
                    reservation_id,
                    hold,
                    now,
                ))])
            }
        }
    }

    /// Whether `user_id` may take `quantity` units now (order or hold): the sale is active,
    /// the stock suffices, the buyer's limit holds.
    fn check_take(
        &self,
        spec: &TimeSaleSpec,
        user_id: UserId,
        quantity: Quantity,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        match TimeSaleStatus::at(spec.start_at, spec.end_at, self.remaining, now) {
            TimeSaleStatus::Scheduled => return Err(DomainError::TimeSaleNotStarted),
            TimeSaleStatus::Ended => return Err(DomainError::TimeSaleEnded),
            TimeSaleStatus::SoldOut => return Err(DomainError::SoldOut),
            TimeSaleStatus::Active => {}
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
        Ok(())
    }

    /// A hold its buyer (or a service) may still confirm or release: held and not past its
    /// expiry — past it, only the deadline ends it.
    fn open_hold(
        &self,
        reservation_id: Uuid,
        acting_user: Option<UserId>,
        now: DateTime<Utc>,
    ) -> Result<&Reservation, DomainError> {
        let hold = self
            .reservations
            .get(&reservation_id)
            .ok_or(DomainError::ReservationNotFound)?;
        if acting_user.is_some_and(|user| user != hold.user_id) {
            return Err(DomainError::NotReservationOwner);
        }
        match hold.status {
            ReservationStatus::Held if now < hold.expires_at => Ok(hold),
            ReservationStatus::Held | ReservationStatus::Expired => {
                Err(DomainError::ReservationExpired)
            }
            ReservationStatus::Confirmed | ReservationStatus::Released => {
                Err(DomainError::ReservationClosed)
            }
        }
    }

    fn hold_ended(
        &self,
        reservation_id: Uuid,
        hold: &Reservation,
        now: DateTime<Utc>,
    ) -> HoldEnded {
        HoldEnded {
            reservation_id,
            user_id: hold.user_id,
            quantity: hold.quantity,
            remaining_after: self.remaining + hold.quantity.get(),
            reserved_after: self.reserved - hold.quantity.get(),
            at: now,
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
            TimeSaleEvent::Reserved {
                reservation_id,
                order_ref,
                user_id,
                quantity,
                expires_at,
                remaining_after,
                reserved_after,
                ..
            } => {
                self.remaining = remaining_after;
                self.reserved = reserved_after;
                *self.bought.entry(user_id).or_default() += quantity.get();
                self.order_refs
                    .insert(order_ref.as_str().to_owned(), reservation_id);
                self.reservations.insert(
                    reservation_id,
                    Reservation {
                        order_ref,
                        user_id,
                        quantity,
                        expires_at,
                        status: ReservationStatus::Held,
                        order_id: None,
                    },
                );
            }
            TimeSaleEvent::ReservationConfirmed {
                reservation_id,
                order_id,
                user_id,
                quantity,
                remaining_after,
                reserved_after,
                ..
            } => {
                // The units stay counted in the buyer's limit: the hold became an order.
                self.remaining = remaining_after;
                self.reserved = reserved_after;
                if let Some(hold) = self.reservations.get_mut(&reservation_id) {
                    hold.status = ReservationStatus::Confirmed;
                    hold.order_id = Some(order_id);
                }
                self.orders.insert(
                    order_id,
                    Order {
                        user_id,
                        quantity,
                        status: OrderStatus::Created,
                    },
                );
            }
            TimeSaleEvent::ReservationReleased(ended) => {
                self.end_hold(ended, ReservationStatus::Released)
            }
            TimeSaleEvent::ReservationExpired(ended) => {
                self.end_hold(ended, ReservationStatus::Expired)
            }
        }
    }

    fn end_hold(&mut self, ended: HoldEnded, status: ReservationStatus) {
        self.remaining = ended.remaining_after;
        self.reserved = ended.reserved_after;
        if let Some(bought) = self.bought.get_mut(&ended.user_id) {
            *bought = bought.saturating_sub(ended.quantity.get());
        }
        if let Some(hold) = self.reservations.get_mut(&ended.reservation_id) {
            hold.status = status;
        }
    }
}

/// The price of `quantity` units at the sale's price.
fn total(spec: &TimeSaleSpec, quantity: Quantity) -> Result<Money, DomainError> {
    spec.discount_price
        .checked_mul(quantity)
        .ok_or(DomainError::unacceptable(
            "quantity",
            "order total is too large",
        ))
}

crate::cqrs_aggregate!(
    TimeSale,
    "timesale",
    TimeSaleCommand,
    TimeSaleEvent,
    |e| match e {
        TimeSaleEvent::OrderPlaced { order_id, .. }
        | TimeSaleEvent::ReservationConfirmed { order_id, .. } => Some(*order_id),
        TimeSaleEvent::Reserved { reservation_id, .. } => Some(*reservation_id),
        _ => None,
    }
);
