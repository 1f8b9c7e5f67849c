//! Checkout holds: a checkout reserves a flash sale's units, or a coupon, for a while, then
//! confirms (an order; the coupon's use), releases, or lets the hold expire — the system
//! expires it at its due time ([`crate::deadlines`]).

use chrono::{DateTime, Duration, SubsecRound, Utc};
use domain::coupon::{CouponCommand, CouponPolicy, CouponState, CouponStatus};
use domain::time_sale::{Reservation, ReservationStatus, TimeSale, TimeSaleCommand};
use domain::values::{Money, Quantity, Text, UserId};
use domain::DomainError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{changing, creating, Call, CommandError, Commands, Routed, Written};

/// The API's own bound on a hold's lifetime; a deployment narrows it (`[holds]`).
pub const MAX_TTL_SECONDS: i64 = 86_400;

/// Units of a flash sale held for a checkout.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reserve {
    pub time_sale_id: Uuid,
    /// The shop's order (checkout) id: one hold per order; the same request again answers the
    /// same hold.
    #[schema(schema_with = domain::openapi::reference)]
    pub order_id: String,
    #[schema(minimum = 1)]
    pub user_id: i64,
    #[schema(minimum = 1, maximum = 4_294_967_295_i64)]
    pub quantity: i64,
    /// How long the units are held, in seconds; the deployment's bounds (5 to 1,800 by
    /// default) apply within this range, outside them 422 `UNACCEPTABLE_VALUE`.
    #[schema(minimum = 1, maximum = 86_400)]
    pub ttl_seconds: i64,
}

/// A hold and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    pub reservation_id: Uuid,
    pub time_sale_id: Uuid,
    pub order_id: String,
    pub user_id: i64,
    pub quantity: i64,
    pub status: ReservationStatus,
    pub expires_at: DateTime<Utc>,
    /// The order a confirmation created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_order_id: Option<Uuid>,
}

impl Held {
    fn of(time_sale_id: Uuid, reservation_id: Uuid, hold: &Reservation) -> Self {
        Held {
            reservation_id,
            time_sale_id,
            order_id: hold.order_ref.as_str().to_owned(),
            user_id: hold.user_id.get(),
            quantity: i64::from(hold.quantity.get()),
            status: hold.status,
            expires_at: hold.expires_at,
            created_order_id: hold.order_id,
        }
    }
}

/// What ends a hold: its buyer's checkout, or its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HoldEnd {
    Confirm,
    Release,
    Expire,
}

impl Commands {
    /// Holds units for a checkout. The same order's hold again (same buyer and quantity) is
    /// answered with the hold as it stands, 200; another request under that order id is
    /// refused `RESERVATION_EXISTS`.
    pub async fn reserve(
        &self,
        call: &Call,
        input: Reserve,
    ) -> Result<Written<Held>, CommandError> {
        call.caller.require_user(input.user_id)?;
        let time_sale_id = input.time_sale_id;
        let order_ref = Text::parse_reference(&input.order_id, "orderId")?;
        let user_id = UserId::parse(input.user_id, "userId")?;
        let quantity = Quantity::parse(input.quantity, "quantity")?;
        let ttl = self.hold_ttl(input.ttl_seconds)?;
        if !self.lookup.exists(time_sale_id, "timesale").await? {
            return Err(DomainError::TimeSaleNotFound.into());
        }
        if let Some(answer) = self
            .routed(time_sale_id, call, || Routed::Reserve(input.clone()))
            .await
        {
            return answer;
        }
        // To the microsecond, as PostgreSQL keeps times.
        let now = Utc::now().trunc_subsecs(6);
        let reservation_id = Uuid::new_v4();
        let command = TimeSaleCommand::Reserve {
            reservation_id,
            order_ref: order_ref.clone(),
            user_id,
            quantity,
            expires_at: now + ttl,
            now,
        };
        let written = self
            .write(
                &self.time_sales,
                time_sale_id,
                call,
                creating("Reserve", command),
                move |sale: &TimeSale, _| {
                    let hold = sale.reservation(&reservation_id)?;
                    Some(Held::of(time_sale_id, reservation_id, hold))
                },
            )
            .await;
        match written {
            Err(CommandError::Refused(DomainError::ReservationExists)) => {
                self.same_hold(time_sale_id, order_ref, user_id, quantity)
                    .await
            }
            written => written,
        }
    }

    /// The hold the order `order_ref` has, when it is the one this request asks for.
    async fn same_hold(
        &self,
        time_sale_id: Uuid,
        order_ref: Text,
        user_id: UserId,
        quantity: Quantity,
    ) -> Result<Written<Held>, CommandError> {
        let held = self
            .time_sales
            .read(time_sale_id, move |sale: &TimeSale| {
                sale.reservation_of(order_ref.as_str())
                    .filter(|(_, hold)| hold.user_id == user_id && hold.quantity == quantity)
                    .map(|(id, hold)| Held::of(time_sale_id, id, hold))
            })
            .await?;
        let held = held.ok_or(DomainError::ReservationExists)?;
        self.answered_before(time_sale_id, held).await
    }

    /// Ends a hold: `Confirm` and `Release` as its buyer (or a service) asks, `Expire` as the
    /// deadline runner does.
    pub async fn end_hold(
        &self,
        call: &Call,
        reservation_id: Uuid,
        end: HoldEnd,
    ) -> Result<Written<Held>, CommandError> {
        let time_sale_id = self
            .lookup
            .stream_of(reservation_id, "timesale", "reservation")
            .await?;
        if end != HoldEnd::Expire {
            if let Some(answer) = self
                .routed(time_sale_id, call, || Routed::EndHold {
                    reservation_id,
                    end,
                })
                .await
            {
                return answer;
            }
        }
        let now = Utc::now();
        let acting_user = call.acting();
        let (name, command) = match end {
            HoldEnd::Confirm => (
                "ConfirmReservation",
                TimeSaleCommand::ConfirmReservation {
                    reservation_id,
                    order_id: Uuid::new_v4(),
                    acting_user,
                    now,
                },
            ),
            HoldEnd::Release => (
                "ReleaseReservation",
                TimeSaleCommand::ReleaseReservation {
                    reservation_id,
                    acting_user,
                    now,
                },
            ),
            HoldEnd::Expire => (
                "ExpireReservation",
                TimeSaleCommand::ExpireReservation {
                    reservation_id,
                    now,
                },
            ),
        };
        let written = self
            .write(
                &self.time_sales,
                time_sale_id,
                call,
                changing(name, command),
                move |sale: &TimeSale, _| {
                    let hold = sale.reservation(&reservation_id)?;
                    Some(Held::of(time_sale_id, reservation_id, hold))
                },
            )
            .await;
        // A confirmation or release sent again (a retry after a lost answer, without an
        // Idempotency-Key) finds the hold as it asked: answered with the hold, not refused.
        let already = match end {
            HoldEnd::Confirm => ReservationStatus::Confirmed,
            HoldEnd::Release => ReservationStatus::Released,
            HoldEnd::Expire => return written,
        };
        match written {
            Err(CommandError::Refused(DomainError::ReservationClosed)) => {
                let held = self
                    .time_sales
                    .read(time_sale_id, move |sale: &TimeSale| {
                        sale.reservation(&reservation_id)
                            .filter(|hold| hold.status == already)
                            .map(|hold| Held::of(time_sale_id, reservation_id, hold))
                    })
                    .await?
                    .ok_or(DomainError::ReservationClosed)?;
                self.answered_before(time_sale_id, held).await
            }
            written => written,
        }
    }

    /// `answer`, which an earlier command on `time_sale_id` made, with the stream's version and
    /// the log's head (read after it: at or past that command's events).
    async fn answered_before<T>(
        &self,
        time_sale_id: Uuid,
        answer: T,
    ) -> Result<Written<T>, CommandError> {
        let unavailable = |e: eventlog::StoreError| CommandError::Unavailable(e.to_string());
        let version = self
            .log
            .stream_version(time_sale_id)
            .await
            .map_err(unavailable)?;
        let position = self.log.head().await.map_err(unavailable)?;
        Ok(Written {
            answer,
            version,
            position,
            created: false,
            replayed: false,
        })
    }

    /// `ttl_seconds` within the API's bound (400) and the deployment's (422).
    fn hold_ttl(&self, ttl_seconds: i64) -> Result<Duration, CommandError> {
        if !(1..=MAX_TTL_SECONDS).contains(&ttl_seconds) {
            return Err(DomainError::invalid("ttlSeconds", "must be 1 to 86400").into());
        }
        let (min, max) = self.hold_bounds;
        if ttl_seconds < i64::from(min) || ttl_seconds > i64::from(max) {
            return Err(DomainError::unacceptable(
                "ttlSeconds",
                "outside this deployment's hold bounds ([holds] min_ttl_seconds to max_ttl_seconds)",
            )
            .into());
        }
        Ok(Duration::seconds(ttl_seconds))
    }
}

/// A coupon held for a checkout's order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReserveCoupon {
    /// The shop's order id.
    #[schema(schema_with = domain::openapi::reference)]
    pub order_id: String,
    #[schema(minimum = 0)]
    pub order_amount: i64,
    /// How long the coupon is held, in seconds, within the deployment's bounds (as a sale's
    /// hold).
    #[schema(minimum = 1, maximum = 86_400)]
    pub ttl_seconds: i64,
}

/// A coupon and its hold (or its use, once confirmed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CouponHeld {
    pub coupon_id: Uuid,
    pub policy_id: Uuid,
    pub status: CouponStatus,
    /// The order it is held for or was used on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_amount: Option<i64>,
    /// Until when it is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_until: Option<DateTime<Utc>>,
}

impl CouponHeld {
    fn of(
        policy_id: Uuid,
        coupon_id: Uuid,
        policy: &CouponPolicy,
        now: DateTime<Utc>,
    ) -> Option<Self> {
        let coupon = policy.coupon(&coupon_id)?;
        let (order_id, discount, until) = match &coupon.state {
            CouponState::Reserved {
                order_id,
                discount,
                until,
                ..
            } => (Some(order_id), Some(discount), Some(*until)),
            CouponState::Used {
                order_id, discount, ..
            } => (Some(order_id), Some(discount), None),
            CouponState::Available | CouponState::Revoked => (None, None, None),
        };
        Some(CouponHeld {
            coupon_id,
            policy_id,
            status: CouponStatus::at(&coupon.state, coupon.expires_at, now),
            order_id: order_id.map(|o| o.as_str().to_owned()),
            discount_amount: discount.map(|d| d.get()),
            reserved_until: until,
        })
    }
}

impl Commands {
    /// Holds a coupon for a checkout's order: it applies as a use would (its discount counts
    /// against the budget from now on), and no one may use it until the hold ends.
    pub async fn reserve_coupon(
        &self,
        call: &Call,
        coupon_id: Uuid,
        input: ReserveCoupon,
    ) -> Result<Written<CouponHeld>, CommandError> {
        let order_id = Text::parse_reference(&input.order_id, "orderId")?;
        let order_amount = Money::parse(input.order_amount, "orderAmount")?;
        let ttl = self.hold_ttl(input.ttl_seconds)?;
        let policy_id = self.lookup.stream_of(coupon_id, "coupon", "coupon").await?;
        if let Some(answer) = self
            .routed(policy_id, call, || Routed::ReserveCoupon {
                coupon_id,
                input: input.clone(),
            })
            .await
        {
            return answer;
        }
        let now = Utc::now().trunc_subsecs(6);
        let command = CouponCommand::ReserveCoupon {
            coupon_id,
            acting_user: call.acting(),
            order_id,
            order_amount,
            until: now + ttl,
            now,
        };
        self.write(
            &self.coupons,
            policy_id,
            call,
            creating("ReserveCoupon", command),
            move |policy: &CouponPolicy, _| CouponHeld::of(policy_id, coupon_id, policy, now),
        )
        .await
    }

    /// Ends a coupon's hold: `Confirm` (the coupon is used on its order) and `Release` as its
    /// holder (or a service) asks, `Expire` as the deadline runner does.
    pub async fn end_coupon_hold(
        &self,
        call: &Call,
        coupon_id: Uuid,
        end: HoldEnd,
    ) -> Result<Written<CouponHeld>, CommandError> {
        let policy_id = self.lookup.stream_of(coupon_id, "coupon", "coupon").await?;
        if end != HoldEnd::Expire {
            if let Some(answer) = self
                .routed(policy_id, call, || Routed::EndCouponHold { coupon_id, end })
                .await
            {
                return answer;
            }
        }
        let now = Utc::now();
        let acting_user = call.acting();
        let (name, command) = match end {
            HoldEnd::Confirm => (
                "ConfirmCouponReservation",
                CouponCommand::ConfirmCouponReservation {
                    coupon_id,
                    acting_user,
                    now,
                },
            ),
            HoldEnd::Release => (
                "ReleaseCouponReservation",
                CouponCommand::ReleaseCouponReservation {
                    coupon_id,
                    acting_user,
                    now,
                },
            ),
            HoldEnd::Expire => (
                "ExpireCouponReservation",
                CouponCommand::ExpireCouponReservation { coupon_id, now },
            ),
        };
        self.write(
            &self.coupons,
            policy_id,
            call,
            changing(name, command),
            move |policy: &CouponPolicy, _| CouponHeld::of(policy_id, coupon_id, policy, now),
        )
        .await
    }
}
