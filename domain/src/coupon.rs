//! Coupon policies and the coupons they issue. One policy is one consistency boundary: it
//! decides issuance (window, total quantity, one per user) and every coupon's lifecycle
//! (use, cancel use, revoke), so each invariant is checked against one in-memory state.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{checked_time, Money, Quantity, Text, UserId};
use crate::DomainError;

/// How long an issued coupon stays usable after its policy's issuance window closes.
pub const COUPON_VALIDITY_AFTER_END_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DiscountType {
    Percentage,
    FixedAmount,
}

/// What a coupon takes off an order. Built only through [`DiscountTerms::new`], so a
/// percentage is always 1–100 and the value always positive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscountTerms {
    discount_type: DiscountType,
    discount_value: i64,
    minimum_order_amount: Money,
    /// Caps a percentage discount; zero means no cap.
    maximum_discount_amount: Money,
}

impl DiscountTerms {
    pub fn new(
        discount_type: DiscountType,
        discount_value: i64,
        minimum_order_amount: Money,
        maximum_discount_amount: Money,
    ) -> Result<Self, DomainError> {
        if discount_value <= 0 {
            return Err(DomainError::invalid(
                "discountValue",
                "must be greater than 0",
            ));
        }
        if discount_type == DiscountType::Percentage && discount_value > 100 {
            return Err(DomainError::invalid(
                "discountValue",
                "a percentage must be between 1 and 100",
            ));
        }
        Ok(Self::recorded(
            discount_type,
            discount_value,
            minimum_order_amount,
            maximum_discount_amount,
        ))
    }

    /// Terms as a recorded event states them: not checked again.
    pub fn recorded(
        discount_type: DiscountType,
        discount_value: i64,
        minimum_order_amount: Money,
        maximum_discount_amount: Money,
    ) -> Self {
        Self {
            discount_type,
            discount_value,
            minimum_order_amount,
            maximum_discount_amount,
        }
    }

    pub fn discount_type(&self) -> DiscountType {
        self.discount_type
    }
    pub fn discount_value(&self) -> i64 {
        self.discount_value
    }
    pub fn minimum_order_amount(&self) -> Money {
        self.minimum_order_amount
    }
    pub fn maximum_discount_amount(&self) -> Money {
        self.maximum_discount_amount
    }

    /// The discount for an order of `order_amount`, ignoring the minimum order amount:
    /// the fixed value, or the percentage rounded down and capped; never above the order.
    pub fn discount_for(&self, order_amount: Money) -> Money {
        let amount = order_amount.get();
        let raw = match self.discount_type {
            DiscountType::FixedAmount => self.discount_value,
            DiscountType::Percentage => {
                // i128: amount × 100 cannot overflow, and the result is ≤ amount.
                let pct = i128::from(amount) * i128::from(self.discount_value) / 100;
                let pct = i64::try_from(pct).unwrap_or(amount);
                let cap = self.maximum_discount_amount.get();
                if cap > 0 {
                    pct.min(cap)
                } else {
                    pct
                }
            }
        };
        Money::parse(raw.min(amount), "discount").unwrap_or(Money::ZERO)
    }
}

/// A campaign: what it gives, how many, and when it may be issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySpec {
    title: Text,
    description: Text,
    total_quantity: Quantity,
    start_time: DateTime<Utc>,
    end_time: DateTime<Utc>,
    terms: DiscountTerms,
}

impl PolicySpec {
    pub fn new(
        title: Text,
        description: Text,
        total_quantity: Quantity,
        start_time: DateTime<Utc>,
        end_time: DateTime<Utc>,
        terms: DiscountTerms,
    ) -> Result<Self, DomainError> {
        let start_time = checked_time(start_time, "startTime")?;
        let end_time = checked_time(end_time, "endTime")?;
        if start_time >= end_time {
            return Err(DomainError::invalid("endTime", "must be after startTime"));
        }
        Ok(Self::recorded(
            title,
            description,
            total_quantity,
            start_time,
            end_time,
            terms,
        ))
    }

    /// A campaign as a recorded event states it: not checked again (the rules of the day it
    /// was created decided), so a stricter rule never makes the log unreadable.
    pub fn recorded(
        title: Text,
        description: Text,
        total_quantity: Quantity,
        start_time: DateTime<Utc>,
        end_time: DateTime<Utc>,
        terms: DiscountTerms,
    ) -> Self {
        Self {
            title,
            description,
            total_quantity,
            start_time,
            end_time,
            terms,
        }
    }

    pub fn title(&self) -> &Text {
        &self.title
    }
    pub fn description(&self) -> &Text {
        &self.description
    }
    pub fn total_quantity(&self) -> Quantity {
        self.total_quantity
    }
    pub fn start_time(&self) -> DateTime<Utc> {
        self.start_time
    }
    pub fn end_time(&self) -> DateTime<Utc> {
        self.end_time
    }
    pub fn terms(&self) -> &DiscountTerms {
        &self.terms
    }

    /// When coupons issued under this policy stop being usable.
    pub fn coupon_expiry(&self) -> DateTime<Utc> {
        // The end is before 9999-01-01 (checked_time), so this cannot overflow; saturate anyway.
        self.end_time
            .checked_add_signed(Duration::days(COUPON_VALIDITY_AFTER_END_DAYS))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// The stored lifecycle state of one coupon. `EXPIRED` is not stored: it is derived from the
/// time (see [`CouponStatus::at`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CouponState {
    Available,
    Used {
        order_id: Text,
        order_amount: Money,
        discount: Money,
    },
    Revoked,
}

/// The status a client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CouponStatus {
    Available,
    Used,
    Expired,
    Canceled,
}

impl CouponStatus {
    /// The status at `now` of a coupon whose stored state is `state`.
    pub fn at(state: &CouponState, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        match state {
            CouponState::Used { .. } => CouponStatus::Used,
            CouponState::Revoked => CouponStatus::Canceled,
            CouponState::Available if now >= expires_at => CouponStatus::Expired,
            CouponState::Available => CouponStatus::Available,
        }
    }
}

/// One issued coupon, as the policy remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coupon {
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
    pub state: CouponState,
}

/// Whether a coupon applies to an order, and the discount it gives. The same rule serves
/// `use` (command side) and `quote` (query side, from the read model), so they never disagree.
/// `acting_user` is `None` when a trusted service or an admin acts.
pub fn check_applicable(
    coupon: Option<&Coupon>,
    terms: &DiscountTerms,
    acting_user: Option<UserId>,
    order_amount: Money,
    now: DateTime<Utc>,
) -> Result<Money, DomainError> {
    let coupon = coupon.ok_or(DomainError::CouponNotFound)?;
    if acting_user.is_some_and(|user| user != coupon.user_id) {
        return Err(DomainError::NotCouponOwner);
    }
    match CouponStatus::at(&coupon.state, coupon.expires_at, now) {
        CouponStatus::Canceled => return Err(DomainError::CouponRevoked),
        CouponStatus::Used => return Err(DomainError::CouponAlreadyUsed),
        CouponStatus::Expired => return Err(DomainError::CouponExpired),
        CouponStatus::Available => {}
    }
    if order_amount < terms.minimum_order_amount {
        return Err(DomainError::BelowMinimumOrder);
    }
    Ok(terms.discount_for(order_amount))
}

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
}

/// Everything that happens to a policy and its coupons. The counts carried by the events are
/// the values right after the event, so a read model can set them idempotently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "crate::wire::WireEvent", try_from = "crate::wire::WireEvent")]
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
        at: DateTime<Utc>,
    },
    CouponUseCanceled {
        coupon_id: Uuid,
        user_id: UserId,
        order_id: Text,
        used_count: u32,
        at: DateTime<Utc>,
    },
    CouponRevoked {
        coupon_id: Uuid,
        user_id: UserId,
        at: DateTime<Utc>,
    },
}

/// A coupon policy with its issued coupons.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CouponPolicy {
    spec: Option<PolicySpec>,
    issued_count: u32,
    used_count: u32,
    /// Who holds a coupon of this policy: enforces one coupon per user.
    holders: HashMap<UserId, Uuid>,
    coupons: HashMap<Uuid, Coupon>,
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
                if self.holders.contains_key(&user_id) {
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
                let user_id = coupon.ok_or(DomainError::CouponNotFound)?.user_id;
                Ok(vec![CouponEvent::CouponUsed {
                    coupon_id,
                    user_id,
                    order_id,
                    order_amount,
                    discount,
                    used_count: self.used_count + 1,
                    at: now,
                }])
            }
            CouponCommand::CancelCouponUse {
                coupon_id,
                acting_user,
                now,
            } => {
                let coupon = self.owned_coupon(&coupon_id, acting_user)?;
                match &coupon.state {
                    CouponState::Used { order_id, .. } => {
                        Ok(vec![CouponEvent::CouponUseCanceled {
                            coupon_id,
                            user_id: coupon.user_id,
                            order_id: order_id.clone(),
                            used_count: self.used_count - 1,
                            at: now,
                        }])
                    }
                    CouponState::Revoked => Err(DomainError::CouponRevoked),
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
                    CouponStatus::Canceled => Err(DomainError::CouponRevoked),
                    CouponStatus::Expired => Err(DomainError::CouponExpired),
                }
            }
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
                self.holders.insert(user_id, coupon_id);
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
                    coupon.state = CouponState::Available;
                }
            }
            CouponEvent::CouponRevoked { coupon_id, .. } => {
                if let Some(coupon) = self.coupons.get_mut(&coupon_id) {
                    coupon.state = CouponState::Revoked;
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
