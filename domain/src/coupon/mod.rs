//! Coupon policies and the coupons they issue. One policy is one consistency boundary: it
//! decides issuance (window, total quantity, one per user) and every coupon's lifecycle
//! (use, cancel use, revoke), so each invariant is checked against one in-memory state.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{Money, Text, UserId};
use crate::DomainError;

mod state;
mod terms;

pub use state::check_applicable;
pub use state::{Coupon, CouponState, CouponStatus};
pub use terms::{
    check_budget, DiscountTerms, DiscountType, PolicySpec, COUPON_VALIDITY_AFTER_END_DAYS,
};

#[derive(Debug, Clone, PartialEq)]
pub enum CouponCommand {
    CreatePolicy {
        spec: PolicySpec,
    },
    IssueCoupon {
        coupon_id: Uuid,
        user_id: UserId,
        now: DateTime<Utc>,
    },
    UseCoupon {
        coupon_id: Uuid,
        acting_user: Option<UserId>,
        order_id: Text,
        order_amount: Money,
        now: DateTime<Utc>,
    },
    CancelCouponUse {
        coupon_id: Uuid,
        acting_user: Option<UserId>,
        now: DateTime<Utc>,
    },
    RevokeCoupon {
        coupon_id: Uuid,
        now: DateTime<Utc>,
    },
    /// Holds an available coupon for a checkout's order until `until`: it applies as a use
    /// would (and its discount counts against the budget), and no one may use it meanwhile.
    ReserveCoupon {
        coupon_id: Uuid,
        acting_user: Option<UserId>,
        order_id: Text,
        order_amount: Money,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    /// The checkout paid: the held coupon is used on its order.
    ConfirmCouponReservation {
        coupon_id: Uuid,
        acting_user: Option<UserId>,
        now: DateTime<Utc>,
    },
    /// The checkout gave up: the coupon is available again at once.
    ReleaseCouponReservation {
        coupon_id: Uuid,
        acting_user: Option<UserId>,
        now: DateTime<Utc>,
    },
    /// The system's deadline: a hold still held at its end is released. Refused before then
    /// and for a coupon no longer held.
    ExpireCouponReservation {
        coupon_id: Uuid,
        now: DateTime<Utc>,
    },
}

/// Everything that happens to a policy and its coupons. The counts carried by the events are
/// the values right after the event, so a read model can set them idempotently.
/// Serialized as its wire form (`crate::wire`, which implements serde for it).
#[derive(Debug, Clone, PartialEq)]
pub enum CouponEvent {
    PolicyCreated {
        spec: PolicySpec,
    },
    CouponIssued {
        coupon_id: Uuid,
        user_id: UserId,
        expires_at: DateTime<Utc>,
        issued_count: u32,
        at: DateTime<Utc>,
    },
    CouponUsed {
        coupon_id: Uuid,
        user_id: UserId,
        order_id: Text,
        order_amount: Money,
        discount: Money,
        used_count: u32,
        /// The discount all uses not cancelled have granted, this one included (`None` in
        /// events recorded before budgets, v1).
        discount_granted: Option<Money>,
        at: DateTime<Utc>,
    },
    CouponUseCanceled {
        coupon_id: Uuid,
        user_id: UserId,
        order_id: Text,
        used_count: u32,
        /// The discount granted after this use gave its own back (`None` before budgets, v1).
        discount_granted: Option<Money>,
        at: DateTime<Utc>,
    },
    CouponRevoked {
        coupon_id: Uuid,
        user_id: UserId,
        at: DateTime<Utc>,
    },
    /// A coupon held for a checkout's order until `until` (its discount counts against the
    /// budget from now on).
    CouponReserved {
        coupon_id: Uuid,
        user_id: UserId,
        order_id: Text,
        order_amount: Money,
        discount: Money,
        until: DateTime<Utc>,
        discount_granted: Money,
        at: DateTime<Utc>,
    },
    /// A hold given up by its checkout: the coupon is available again.
    CouponReservationReleased(CouponHoldEnded),
    /// A hold that reached its end unconfirmed: the coupon is available again.
    CouponReservationExpired(CouponHoldEnded),
}

/// A coupon hold that ended without a use.
#[derive(Debug, Clone, PartialEq)]
pub struct CouponHoldEnded {
    pub coupon_id: Uuid,
    pub user_id: UserId,
    pub order_id: Text,
    /// The budget's tally after the hold gave its discount back.
    pub discount_granted: Money,
    pub at: DateTime<Utc>,
}

/// A coupon policy with its issued coupons.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CouponPolicy {
    spec: Option<PolicySpec>,
    issued_count: u32,
    used_count: u32,
    /// Who holds a coupon of this policy (their first): the per-user limit.
    holders: HashMap<UserId, Uuid>,
    /// Coupons issued to each user beyond their first.
    #[serde(default)]
    issued_more: HashMap<UserId, u32>,
    coupons: HashMap<Uuid, Coupon>,
    /// The discount granted by the uses not cancelled: the budget's tally.
    #[serde(default)]
    discount_granted: i64,
}

impl CouponPolicy {
    pub fn spec(&self) -> Option<&PolicySpec> {
        self.spec.as_ref()
    }
    pub fn issued_count(&self) -> u32 {
        self.issued_count
    }
    pub fn used_count(&self) -> u32 {
        self.used_count
    }
    pub fn coupon(&self, coupon_id: &Uuid) -> Option<&Coupon> {
        self.coupons.get(coupon_id)
    }
    pub fn coupon_of(&self, user_id: UserId) -> Option<Uuid> {
        self.holders.get(&user_id).copied()
    }
    pub fn coupons(&self) -> impl Iterator<Item = (&Uuid, &Coupon)> {
        self.coupons.iter()
    }
    /// The discount granted by the uses not cancelled.
    pub fn discount_granted(&self) -> Money {
        Money::tally(self.discount_granted)
    }
    /// Coupons of this policy issued to `user_id`.
    pub fn issued_to(&self, user_id: UserId) -> u32 {
        u32::from(self.holders.contains_key(&user_id))
            + self.issued_more.get(&user_id).copied().unwrap_or(0)
    }

    /// Decides a command against the current state: the events to append, or why not.
    pub fn decide(&self, command: CouponCommand) -> Result<Vec<CouponEvent>, DomainError> {
        let Some(spec) = &self.spec else {
            return match command {
                CouponCommand::CreatePolicy { spec } => {
                    Ok(vec![CouponEvent::PolicyCreated { spec }])
                }
                _ => Err(DomainError::PolicyNotFound),
            };
        };
        match command {
            CouponCommand::CreatePolicy { .. } => Err(DomainError::PolicyAlreadyExists),
            CouponCommand::IssueCoupon {
                coupon_id,
                user_id,
                now,
            } => {
                if now < spec.start_time {
                    return Err(DomainError::IssuanceNotStarted);
                }
                if now >= spec.end_time {
                    return Err(DomainError::IssuanceEnded);
                }
                if self.issued_to(user_id) >= spec.coupons_per_user.get() {
                    return Err(DomainError::CouponAlreadyIssued);
                }
                if self.issued_count >= spec.total_quantity.get() {
                    return Err(DomainError::CouponsExhausted);
                }
                if self.coupons.contains_key(&coupon_id) {
                    return Err(DomainError::CouponIdTaken);
                }
                Ok(vec![CouponEvent::CouponIssued {
                    coupon_id,
                    user_id,
                    expires_at: spec.coupon_expiry(),
                    issued_count: self.issued_count + 1,
                    at: now,
                }])
            }
            CouponCommand::UseCoupon {
                coupon_id,
                acting_user,
                order_id,
                order_amount,
                now,
            } => {
                let coupon = self.coupons.get(&coupon_id);
                let discount =
                    check_applicable(coupon, &spec.terms, acting_user, order_amount, now)?;
                check_budget(spec.discount_budget(), self.discount_granted(), discount)?;
                let user_id = coupon.ok_or(DomainError::CouponNotFound)?.user_id;
                Ok(vec![CouponEvent::CouponUsed {
                    coupon_id,
                    user_id,
                    order_id,
                    order_amount,
                    discount,
                    used_count: self.used_count + 1,
                    discount_granted: Some(Money::tally(
                        self.discount_granted.saturating_add(discount.get()),
                    )),
                    at: now,
                }])
            }
            CouponCommand::ReserveCoupon {
                coupon_id,
                acting_user,
                order_id,
                order_amount,
                until,
                now,
            } => {
                let coupon = self.coupons.get(&coupon_id);
                let discount =
                    check_applicable(coupon, &spec.terms, acting_user, order_amount, now)?;
                check_budget(spec.discount_budget(), self.discount_granted(), discount)?;
                let user_id = coupon.ok_or(DomainError::CouponNotFound)?.user_id;
                let until = crate::values::checked_time(until, "ttlSeconds")?;
                if until <= now {
                    return Err(DomainError::unacceptable(
                        "ttlSeconds",
                        "the hold must end after now",
                    ));
                }
                Ok(vec![CouponEvent::CouponReserved {
                    coupon_id,
                    user_id,
                    order_id,
                    order_amount,
                    discount,
                    until,
                    discount_granted: Money::tally(
                        self.discount_granted.saturating_add(discount.get()),
                    ),
                    at: now,
                }])
            }
            CouponCommand::ConfirmCouponReservation {
                coupon_id,
                acting_user,
                now,
            } => {
                let coupon = self.owned_coupon(&coupon_id, acting_user)?;
                let CouponState::Reserved {
                    order_id,
                    order_amount,
                    discount,
                    until,
                } = &coupon.state
                else {
                    return Err(DomainError::ReservationClosed);
                };
                if now >= *until {
                    return Err(DomainError::ReservationExpired);
                }
                Ok(vec![CouponEvent::CouponUsed {
                    coupon_id,
                    user_id: coupon.user_id,
                    order_id: order_id.clone(),
                    order_amount: *order_amount,
                    discount: *discount,
                    used_count: self.used_count + 1,
                    discount_granted: Some(self.discount_granted()),
                    at: now,
                }])
            }
            CouponCommand::ReleaseCouponReservation {
                coupon_id,
                acting_user,
                now,
            } => {
                let coupon = self.owned_coupon(&coupon_id, acting_user)?;
                match &coupon.state {
                    CouponState::Reserved { until, .. } if now < *until => {}
                    CouponState::Reserved { .. } => return Err(DomainError::ReservationExpired),
                    _ => return Err(DomainError::ReservationClosed),
                }
                Ok(vec![CouponEvent::CouponReservationReleased(
                    self.hold_ended(coupon_id, coupon, now),
                )])
            }
            CouponCommand::ExpireCouponReservation { coupon_id, now } => {
                let coupon = self.owned_coupon(&coupon_id, None)?;
                match &coupon.state {
                    CouponState::Reserved { until, .. } if now >= *until => {}
                    CouponState::Reserved { .. } => return Err(DomainError::ReservationNotDue),
                    _ => return Err(DomainError::ReservationClosed),
                }
                Ok(vec![CouponEvent::CouponReservationExpired(
                    self.hold_ended(coupon_id, coupon, now),
                )])
            }
            CouponCommand::CancelCouponUse {
                coupon_id,
                acting_user,
                now,
            } => {
                let coupon = self.owned_coupon(&coupon_id, acting_user)?;
                match &coupon.state {
                    CouponState::Used {
                        order_id, discount, ..
                    } => Ok(vec![CouponEvent::CouponUseCanceled {
                        coupon_id,
                        user_id: coupon.user_id,
                        order_id: order_id.clone(),
                        used_count: self.used_count - 1,
                        discount_granted: Some(Money::tally(
                            (self.discount_granted - discount.get()).max(0),
                        )),
                        at: now,
                    }]),
                    CouponState::Revoked => Err(DomainError::CouponRevoked),
                    CouponState::Reserved { .. } => Err(DomainError::CouponReserved),
                    CouponState::Available => Err(DomainError::CouponNotUsed),
                }
            }
            CouponCommand::RevokeCoupon { coupon_id, now } => {
                let coupon = self.owned_coupon(&coupon_id, None)?;
                match CouponStatus::at(&coupon.state, coupon.expires_at, now) {
                    CouponStatus::Available => Ok(vec![CouponEvent::CouponRevoked {
                        coupon_id,
                        user_id: coupon.user_id,
                        at: now,
                    }]),
                    CouponStatus::Used => Err(DomainError::CouponAlreadyUsed),
                    CouponStatus::Reserved => Err(DomainError::CouponReserved),
                    CouponStatus::Canceled => Err(DomainError::CouponRevoked),
                    CouponStatus::Expired => Err(DomainError::CouponExpired),
                }
            }
        }
    }

    /// The end of `coupon`'s hold: the discount it held goes back to the budget.
    fn hold_ended(&self, coupon_id: Uuid, coupon: &Coupon, now: DateTime<Utc>) -> CouponHoldEnded {
        let (order_id, discount) = match &coupon.state {
            CouponState::Reserved {
                order_id, discount, ..
            } => (order_id.clone(), discount.get()),
            _ => (Text::from(String::new()), 0),
        };
        CouponHoldEnded {
            coupon_id,
            user_id: coupon.user_id,
            order_id,
            discount_granted: Money::tally(self.discount_granted - discount),
            at: now,
        }
    }

    fn owned_coupon(
        &self,
        coupon_id: &Uuid,
        acting_user: Option<UserId>,
    ) -> Result<&Coupon, DomainError> {
        let coupon = self
            .coupons
            .get(coupon_id)
            .ok_or(DomainError::CouponNotFound)?;
        if acting_user.is_some_and(|user| user != coupon.user_id) {
            return Err(DomainError::NotCouponOwner);
        }
        Ok(coupon)
    }

    /// Applies an event that was decided (or loaded); never fails.
    pub fn apply_event(&mut self, event: CouponEvent) {
        match event {
            CouponEvent::PolicyCreated { spec } => self.spec = Some(spec),
            CouponEvent::CouponIssued {
                coupon_id,
                user_id,
                expires_at,
                issued_count,
                ..
            } => {
                self.issued_count = issued_count;
                match self.holders.entry(user_id) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        *self.issued_more.entry(user_id).or_default() += 1;
                    }
                    std::collections::hash_map::Entry::Vacant(first) => {
                        first.insert(coupon_id);
                    }
                }
                self.coupons.insert(
                    coupon_id,
                    Coupon {
                        user_id,
                        expires_at,
                        state: CouponState::Available,
                    },
                );
            }
            CouponEvent::CouponUsed {
                coupon_id,
                order_id,
                order_amount,
                discount,
                used_count,
                ..
            } => {
                self.used_count = used_count;
                if let Some(coupon) = self.coupons.get_mut(&coupon_id) {
                    // A held coupon's discount was counted when it was held.
                    if !matches!(coupon.state, CouponState::Reserved { .. }) {
                        self.discount_granted =
                            self.discount_granted.saturating_add(discount.get());
                    }
                    coupon.state = CouponState::Used {
                        order_id,
                        order_amount,
                        discount,
                    };
                }
            }
            CouponEvent::CouponUseCanceled {
                coupon_id,
                used_count,
                ..
            } => {
                self.used_count = used_count;
                if let Some(coupon) = self.coupons.get_mut(&coupon_id) {
                    if let CouponState::Used { discount, .. } = &coupon.state {
                        self.discount_granted = (self.discount_granted - discount.get()).max(0);
                    }
                    coupon.state = CouponState::Available;
                }
            }
            CouponEvent::CouponRevoked { coupon_id, .. } => {
                if let Some(coupon) = self.coupons.get_mut(&coupon_id) {
                    coupon.state = CouponState::Revoked;
                }
            }
            CouponEvent::CouponReserved {
                coupon_id,
                order_id,
                order_amount,
                discount,
                until,
                ..
            } => {
                self.discount_granted = self.discount_granted.saturating_add(discount.get());
                if let Some(coupon) = self.coupons.get_mut(&coupon_id) {
                    coupon.state = CouponState::Reserved {
                        order_id,
                        order_amount,
                        discount,
                        until,
                    };
                }
            }
            CouponEvent::CouponReservationReleased(ended)
            | CouponEvent::CouponReservationExpired(ended) => {
                if let Some(coupon) = self.coupons.get_mut(&ended.coupon_id) {
                    if let CouponState::Reserved { discount, .. } = &coupon.state {
                        self.discount_granted = (self.discount_granted - discount.get()).max(0);
                    }
                    coupon.state = CouponState::Available;
                }
            }
        }
    }
}

crate::cqrs_aggregate!(
    CouponPolicy,
    "coupon",
    CouponCommand,
    CouponEvent,
    |e| match e {
        CouponEvent::CouponIssued { coupon_id, .. } => Some(*coupon_id),
        _ => None,
    }
);
