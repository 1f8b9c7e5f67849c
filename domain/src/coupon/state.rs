//! One coupon's lifecycle: its state, the status a reader sees at a time, and whether it
//! applies to an order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::DiscountTerms;
use crate::values::{Money, Text, UserId};
use crate::DomainError;

/// The stored lifecycle state of one coupon. `EXPIRED` is not stored: it is derived from the
/// time (see [`CouponStatus::at`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CouponState {
    Available,
    /// Held for a checkout until `until`: no one may use it meanwhile; the checkout confirms
    /// (a use) or releases it, or the hold expires.
    Reserved {
        order_id: Text,
        order_amount: Money,
        discount: Money,
        until: DateTime<Utc>,
    },
    Used {
        order_id: Text,
        order_amount: Money,
        discount: Money,
    },
    Revoked,
}

/// The status a client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CouponStatus {
    Available,
    /// Held for a checkout.
    Reserved,
    Used,
    Expired,
    /// Revoked.
    Canceled,
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
        CouponStatus::Reserved => return Err(DomainError::CouponReserved),
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

impl CouponStatus {
    /// The status at `now` of a coupon whose stored state is `state`.
    pub fn at(state: &CouponState, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        match state {
            // A hold past its end is ended by the system; until then the coupon is held.
            CouponState::Reserved { .. } => CouponStatus::Reserved,
            CouponState::Used { .. } => CouponStatus::Used,
            CouponState::Revoked => CouponStatus::Canceled,
            CouponState::Available if now >= expires_at => CouponStatus::Expired,
            CouponState::Available => CouponStatus::Available,
        }
    }
}
