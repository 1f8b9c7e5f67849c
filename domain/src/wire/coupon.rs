//! The coupon policy's events on the wire: `coupon.policy_created` (v2: the budget and the
//! coupons per user), `coupon.issued` (v2), `coupon.used` and `coupon.canceled` (v2: the
//! budget's tally), `coupon.revoked`. Older versions are upcast (`super::UPCASTERS`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::*;
use crate::coupon::{CouponEvent, CouponHoldEnded, DiscountTerms, DiscountType, PolicySpec};
use crate::values::{Money, Quantity, Text, UserId};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyCreatedV2 {
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    discount_budget: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    coupons_per_user: Option<Quantity>,
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
struct CouponUsedV2 {
    coupon_id: Uuid,
    user_id: UserId,
    order_id: Text,
    order_amount: Money,
    discount_amount: Money,
    used_count: u32,
    used_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    discount_granted: Option<Money>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CouponCanceledV2 {
    coupon_id: Uuid,
    user_id: UserId,
    order_id: Text,
    used_count: u32,
    canceled_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    discount_granted: Option<Money>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CouponRevokedV1 {
    coupon_id: Uuid,
    user_id: UserId,
    revoked_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CouponReservedV1 {
    coupon_id: Uuid,
    user_id: UserId,
    order_id: Text,
    order_amount: Money,
    discount_amount: Money,
    reserved_until: DateTime<Utc>,
    discount_granted: Money,
    reserved_at: DateTime<Utc>,
}

/// `coupon.reservation_released` and `coupon.reservation_expired`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CouponHoldEndedV1 {
    coupon_id: Uuid,
    user_id: UserId,
    order_id: Text,
    discount_granted: Money,
    occurred_at: DateTime<Utc>,
}

impl From<CouponHoldEnded> for CouponHoldEndedV1 {
    fn from(e: CouponHoldEnded) -> Self {
        CouponHoldEndedV1 {
            coupon_id: e.coupon_id,
            user_id: e.user_id,
            order_id: e.order_id,
            discount_granted: e.discount_granted,
            occurred_at: e.at,
        }
    }
}

impl From<CouponHoldEndedV1> for CouponHoldEnded {
    fn from(d: CouponHoldEndedV1) -> Self {
        CouponHoldEnded {
            coupon_id: d.coupon_id,
            user_id: d.user_id,
            order_id: d.order_id,
            discount_granted: d.discount_granted,
            at: d.occurred_at,
        }
    }
}

impl WireCodec for CouponEvent {
    fn type_name(&self) -> &'static str {
        match self {
            CouponEvent::PolicyCreated { .. } => COUPON_POLICY_CREATED,
            CouponEvent::CouponIssued { .. } => COUPON_ISSUED,
            CouponEvent::CouponUsed { .. } => COUPON_USED,
            CouponEvent::CouponUseCanceled { .. } => COUPON_CANCELED,
            CouponEvent::CouponRevoked { .. } => COUPON_REVOKED,
            CouponEvent::CouponReserved { .. } => COUPON_RESERVED,
            CouponEvent::CouponReservationReleased(_) => COUPON_RESERVATION_RELEASED,
            CouponEvent::CouponReservationExpired(_) => COUPON_RESERVATION_EXPIRED,
        }
    }

    fn to_wire(&self) -> WireEvent {
        let name = self.type_name();
        match self.clone() {
            CouponEvent::PolicyCreated { spec } => {
                let terms = spec.terms();
                encode(
                    name,
                    PolicyCreatedV2 {
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
                        discount_budget: spec.discount_budget(),
                        coupons_per_user: Some(spec.coupons_per_user()).filter(|n| n.get() > 1),
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
                discount_granted,
                at,
            } => encode(
                name,
                CouponUsedV2 {
                    coupon_id,
                    user_id,
                    order_id,
                    order_amount,
                    discount_amount: discount,
                    used_count,
                    used_at: at,
                    discount_granted,
                },
            ),
            CouponEvent::CouponUseCanceled {
                coupon_id,
                user_id,
                order_id,
                used_count,
                discount_granted,
                at,
            } => encode(
                name,
                CouponCanceledV2 {
                    coupon_id,
                    user_id,
                    order_id,
                    used_count,
                    canceled_at: at,
                    discount_granted,
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
            CouponEvent::CouponReserved {
                coupon_id,
                user_id,
                order_id,
                order_amount,
                discount,
                until,
                discount_granted,
                at,
            } => encode(
                name,
                CouponReservedV1 {
                    coupon_id,
                    user_id,
                    order_id,
                    order_amount,
                    discount_amount: discount,
                    reserved_until: until,
                    discount_granted,
                    reserved_at: at,
                },
            ),
            CouponEvent::CouponReservationReleased(ended)
            | CouponEvent::CouponReservationExpired(ended) => {
                encode(name, CouponHoldEndedV1::from(ended))
            }
        }
    }

    fn from_wire(wire: &WireEvent) -> Result<Self, WireError> {
        let wire = &*upcast(wire)?;
        Ok(match wire.event_type.as_str() {
            COUPON_POLICY_CREATED => {
                let d: PolicyCreatedV2 = decode(wire)?;
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
                )
                .with_limits(d.discount_budget, d.coupons_per_user);
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
                let d: CouponUsedV2 = decode(wire)?;
                CouponEvent::CouponUsed {
                    coupon_id: d.coupon_id,
                    user_id: d.user_id,
                    order_id: d.order_id,
                    order_amount: d.order_amount,
                    discount: d.discount_amount,
                    used_count: d.used_count,
                    discount_granted: d.discount_granted,
                    at: d.used_at,
                }
            }
            COUPON_CANCELED => {
                let d: CouponCanceledV2 = decode(wire)?;
                CouponEvent::CouponUseCanceled {
                    coupon_id: d.coupon_id,
                    user_id: d.user_id,
                    order_id: d.order_id,
                    used_count: d.used_count,
                    discount_granted: d.discount_granted,
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
            COUPON_RESERVED => {
                let d: CouponReservedV1 = decode(wire)?;
                CouponEvent::CouponReserved {
                    coupon_id: d.coupon_id,
                    user_id: d.user_id,
                    order_id: d.order_id,
                    order_amount: d.order_amount,
                    discount: d.discount_amount,
                    until: d.reserved_until,
                    discount_granted: d.discount_granted,
                    at: d.reserved_at,
                }
            }
            COUPON_RESERVATION_RELEASED => {
                CouponEvent::CouponReservationReleased(decode::<CouponHoldEndedV1>(wire)?.into())
            }
            COUPON_RESERVATION_EXPIRED => {
                CouponEvent::CouponReservationExpired(decode::<CouponHoldEndedV1>(wire)?.into())
            }
            _ => return Err(unknown(wire)),
        })
    }
}
