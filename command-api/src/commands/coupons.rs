//! Coupon policies and their coupons: open a campaign, issue a coupon to a user, use it on an
//! order, undo the use, revoke it.

use chrono::{DateTime, Utc};
use domain::coupon::{
    CouponCommand, CouponEvent, CouponPolicy, CouponStatus, DiscountTerms, DiscountType, PolicySpec,
};
use domain::values::{Money, Quantity, Text, UserId};
use domain::DomainError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{changing, creating, Call, CommandError, Commands, Routed, Written};

/// A coupon campaign: how many coupons, when, and what each takes off an order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePolicy {
    #[schema(schema_with = domain::openapi::text)]
    pub title: String,
    #[serde(default)]
    #[schema(schema_with = domain::openapi::optional_text)]
    pub description: String,
    #[schema(minimum = 1, maximum = 4_294_967_295_i64)]
    pub total_quantity: i64,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub discount_type: DiscountType,
    /// Percent (1–100) or an amount (at least 1).
    #[schema(minimum = 1)]
    pub discount_value: i64,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub minimum_order_amount: i64,
    /// 0: no cap.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub maximum_discount_amount: i64,
    /// The most discount all uses not cancelled may grant together; a use that would pass it
    /// is refused `BUDGET_EXHAUSTED`, a cancelled use gives its discount back. No budget when
    /// absent.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub discount_budget: Option<i64>,
    /// Coupons one user may be issued (each used once); 1 when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4_294_967_295_i64)]
    pub coupons_per_user: Option<i64>,
}

/// A coupon of a policy for a user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Issue {
    pub policy_id: Uuid,
    #[schema(minimum = 1)]
    pub user_id: i64,
}

/// An order a coupon is used on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Use {
    /// The shop's order id.
    #[schema(schema_with = domain::openapi::reference)]
    pub order_id: String,
    #[schema(minimum = 0)]
    pub order_amount: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCreated {
    pub policy_id: Uuid,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CouponIssued {
    pub coupon_id: Uuid,
    pub policy_id: Uuid,
    pub user_id: i64,
    pub status: CouponStatus,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CouponUsed {
    pub coupon_id: Uuid,
    pub policy_id: Uuid,
    pub status: CouponStatus,
    pub order_id: String,
    pub order_amount: i64,
    /// What the coupon took off the order.
    pub discount_amount: i64,
}

/// A coupon after its use was undone (available again, or expired meanwhile) or after it was
/// revoked.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CouponChanged {
    pub coupon_id: Uuid,
    pub policy_id: Uuid,
    pub status: CouponStatus,
}

impl Commands {
    /// Opens a coupon campaign (admin).
    pub async fn create_policy(
        &self,
        call: &Call,
        input: CreatePolicy,
    ) -> Result<Written<PolicyCreated>, CommandError> {
        call.caller.require_admin()?;
        let terms = DiscountTerms::new(
            input.discount_type,
            input.discount_value,
            Money::parse(input.minimum_order_amount, "minimumOrderAmount")?,
            Money::parse(input.maximum_discount_amount, "maximumDiscountAmount")?,
        )?;
        let spec = PolicySpec::new(
            Text::parse(&input.title, "title")?,
            Text::parse_optional(&input.description, "description")?,
            Quantity::parse(input.total_quantity, "totalQuantity")?,
            input.start_time,
            input.end_time,
            terms,
        )?
        .with_limits(
            input
                .discount_budget
                .map(|b| Money::parse_positive(b, "discountBudget"))
                .transpose()?,
            input
                .coupons_per_user
                .map(|n| Quantity::parse(n, "couponsPerUser"))
                .transpose()?,
        );
        let policy_id = self.new_id();
        let command = CouponCommand::CreatePolicy { spec };
        self.write(
            &self.coupons,
            policy_id,
            call,
            creating("CreateCouponPolicy", command),
            move |_, _| Some(PolicyCreated { policy_id }),
        )
        .await
    }

    /// Issues a coupon of a policy to a user: once per user, never past the total.
    pub async fn issue(
        &self,
        call: &Call,
        input: Issue,
    ) -> Result<Written<CouponIssued>, CommandError> {
        let user_id = UserId::parse(input.user_id, "userId")?;
        call.caller.require_user(user_id.get())?;
        let policy_id = input.policy_id;
        if !self.lookup.exists(policy_id, "coupon").await? {
            return Err(DomainError::PolicyNotFound.into());
        }
        let command = CouponCommand::IssueCoupon {
            coupon_id: Uuid::new_v4(),
            user_id,
            now: Utc::now(),
        };
        if let Some(answer) = self
            .routed(policy_id, call, || Routed::IssueCoupon(input))
            .await
        {
            return answer;
        }
        self.write(
            &self.coupons,
            policy_id,
            call,
            creating("IssueCoupon", command),
            move |_, events| match events {
                [CouponEvent::CouponIssued {
                    coupon_id,
                    user_id,
                    expires_at,
                    ..
                }] => Some(CouponIssued {
                    coupon_id: *coupon_id,
                    policy_id,
                    user_id: user_id.get(),
                    status: CouponStatus::Available,
                    expires_at: *expires_at,
                }),
                _ => None,
            },
        )
        .await
    }

    /// Uses a coupon on an order.
    pub async fn use_coupon(
        &self,
        call: &Call,
        coupon_id: Uuid,
        input: Use,
    ) -> Result<Written<CouponUsed>, CommandError> {
        let command = CouponCommand::UseCoupon {
            coupon_id,
            acting_user: call.acting(),
            order_id: Text::parse_reference(&input.order_id, "orderId")?,
            order_amount: Money::parse(input.order_amount, "orderAmount")?,
            now: Utc::now(),
        };
        let policy_id = self.lookup.stream_of(coupon_id, "coupon", "coupon").await?;
        if let Some(answer) = self
            .routed(policy_id, call, || Routed::UseCoupon { coupon_id, input })
            .await
        {
            return answer;
        }
        self.write(
            &self.coupons,
            policy_id,
            call,
            changing("UseCoupon", command),
            move |_, events| match events {
                [CouponEvent::CouponUsed {
                    order_id,
                    order_amount,
                    discount,
                    ..
                }] => Some(CouponUsed {
                    coupon_id,
                    policy_id,
                    status: CouponStatus::Used,
                    order_id: order_id.as_str().to_owned(),
                    order_amount: order_amount.get(),
                    discount_amount: discount.get(),
                }),
                _ => None,
            },
        )
        .await
    }

    /// Undoes a coupon's use (a service: a refund is the shop's decision, not the shopper's —
    /// a user could otherwise keep the order's discount and have the coupon back).
    pub async fn cancel_coupon_use(
        &self,
        call: &Call,
        coupon_id: Uuid,
    ) -> Result<Written<CouponChanged>, CommandError> {
        call.caller.require_service()?;
        let policy_id = self.lookup.stream_of(coupon_id, "coupon", "coupon").await?;
        if let Some(answer) = self
            .routed(policy_id, call, || Routed::CancelCouponUse { coupon_id })
            .await
        {
            return answer;
        }
        let now = Utc::now();
        let command = CouponCommand::CancelCouponUse {
            coupon_id,
            acting_user: call.acting(),
            now,
        };
        self.write(
            &self.coupons,
            policy_id,
            call,
            changing("CancelCouponUse", command),
            move |policy: &CouponPolicy, _| {
                let coupon = policy.coupon(&coupon_id)?;
                Some(CouponChanged {
                    coupon_id,
                    policy_id,
                    status: CouponStatus::at(&coupon.state, coupon.expires_at, now),
                })
            },
        )
        .await
    }

    /// Revokes a coupon (admin).
    pub async fn revoke_coupon(
        &self,
        call: &Call,
        coupon_id: Uuid,
    ) -> Result<Written<CouponChanged>, CommandError> {
        call.caller.require_admin()?;
        let policy_id = self.lookup.stream_of(coupon_id, "coupon", "coupon").await?;
        if let Some(answer) = self
            .routed(policy_id, call, || Routed::RevokeCoupon { coupon_id })
            .await
        {
            return answer;
        }
        let command = CouponCommand::RevokeCoupon {
            coupon_id,
            now: Utc::now(),
        };
        self.write(
            &self.coupons,
            policy_id,
            call,
            changing("RevokeCoupon", command),
            move |_, _| {
                Some(CouponChanged {
                    coupon_id,
                    policy_id,
                    status: CouponStatus::Canceled,
                })
            },
        )
        .await
    }
}
