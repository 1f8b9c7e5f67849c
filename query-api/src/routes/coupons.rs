//! Coupon policies, coupons, a user's coupons and the quote.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use domain::coupon::{
    check_applicable, check_budget, Coupon, CouponState, CouponStatus, DiscountTerms, DiscountType,
};
use domain::values::{Money, Text, UserId};
use problem::{Path, Query};
use readmodel::hot::keys;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use auth::http::Caller;

use crate::{AppState, QueryError};

use readmodel::queries::{self, CouponFilter, CouponRow, PolicyRow, Window};

use super::{paged, recorded, user, Page, Paged};

/// A coupon policy, with its live counts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Policy {
    policy_id: Uuid,
    title: String,
    description: String,
    total_quantity: i64,
    start_time: DateTime<Utc>,
    end_time: DateTime<Utc>,
    discount_type: DiscountType,
    discount_value: i64,
    minimum_order_amount: i64,
    maximum_discount_amount: i64,
    coupon_expires_at: DateTime<Utc>,
    issued_count: i64,
    used_count: i64,
    remaining_quantity: i64,
    /// The most discount all uses not cancelled may grant; null: no budget.
    discount_budget: Option<i64>,
    /// The discount granted by the uses not cancelled (as of the last projected batch).
    discount_granted: i64,
    /// Coupons one user may be issued.
    coupons_per_user: i64,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CouponView {
    coupon_id: Uuid,
    policy_id: Uuid,
    user_id: i64,
    status: CouponStatus,
    expires_at: DateTime<Utc>,
    issued_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    order_id: Option<String>,
    order_amount: Option<i64>,
    discount_amount: Option<i64>,
    /// Until when a RESERVED coupon is held for its checkout.
    #[serde(skip_serializing_if = "Option::is_none")]
    reserved_until: Option<DateTime<Utc>>,
}

/// Whether a coupon applies to an order, and the discount; changes nothing.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Quote {
    coupon_id: Uuid,
    order_amount: i64,
    applicable: bool,
    discount_amount: i64,
    final_amount: i64,
    /// Why not (a refusal code such as EXPIRED, BELOW_MINIMUM_ORDER, NOT_OWNER,
    /// BUDGET_EXHAUSTED, RESERVED), null when it
    /// applies.
    reason: Option<String>,
}

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/coupon-policies", get(policies))
        .route("/api/v1/coupon-policies/{id}", get(policy))
        .route("/api/v1/coupons/{id}", get(coupon))
        .route("/api/v1/coupons/{id}/quote", get(quote))
        .route("/api/v1/coupons/user/{user_id}", get(user_coupons))
}

/// A user's coupons: a page, and optionally only those of one status (the one list that
/// filters; any other list refuses `status` as an unknown parameter).
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CouponPage {
    /// From 1 (default 1), at most 100,000.
    #[param(minimum = 1, maximum = 100_000)]
    page: Option<i64>,
    /// 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Only coupons of this status.
    #[param(pattern = "^(AVAILABLE|USED|EXPIRED|CANCELED)$")]
    status: Option<String>,
}

/// Policies as the API answers them, with their live counts from Redis (one round trip for
/// them all; the projected counts where Redis has none).
async fn policies_with_counts(
    state: &AppState,
    rows: Vec<PolicyRow>,
) -> Result<Vec<Policy>, QueryError> {
    let prefix = state.live().prefix.clone();
    let keys: Vec<String> = rows
        .iter()
        .map(|row| keys::policy(&prefix, row.policy_id))
        .collect();
    let counts = state.hot.hashes(&keys, &["issued", "used"]).await;
    rows.into_iter()
        .zip(counts)
        .map(|(row, counts)| {
            let issued = counts[0].unwrap_or(row.issued_count);
            let used = counts[1].unwrap_or(row.used_count);
            policy_with_counts(row, issued, used)
        })
        .collect::<Result<_, _>>()
}

fn policy_with_counts(row: PolicyRow, issued: i64, used: i64) -> Result<Policy, QueryError> {
    Ok(Policy {
        policy_id: row.policy_id,
        title: row.title,
        description: row.description,
        total_quantity: row.total_quantity,
        start_time: row.start_time,
        end_time: row.end_time,
        discount_type: recorded(&row.discount_type)?,
        discount_value: row.discount_value,
        minimum_order_amount: row.minimum_order_amount,
        maximum_discount_amount: row.maximum_discount_amount,
        coupon_expires_at: row.coupon_expires_at,
        issued_count: issued,
        used_count: used,
        remaining_quantity: (row.total_quantity - issued).max(0),
        discount_budget: row.discount_budget,
        discount_granted: row.discount_granted,
        coupons_per_user: row.coupons_per_user,
        created_at: row.created_at,
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/coupon-policies",
    tag = "coupons",
    summary = "Coupon policies, newest first",
    params(super::Page),
    responses(
        (status = 200, description = "Found", body = Paged<Policy>),
    )
)]
async fn policies(
    State(state): State<AppState>,
    Query(q): Query<Page>,
) -> Result<Json<Paged<Policy>>, QueryError> {
    let (page, limit, offset) = q.bounds()?;
    let (rows, total) = state
        .db(queries::policies(
            &state.pool,
            &state.live().schema,
            Window { limit, offset },
        ))
        .await?;
    Ok(paged(
        policies_with_counts(&state, rows).await?,
        page,
        limit,
        total,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/coupon-policies/{id}",
    tag = "coupons",
    summary = "A coupon policy with its live counts",
    params(("id" = Uuid, Path, description = "The policy's id")),
    responses(
        (status = 200, description = "Found", body = Policy),
    )
)]
async fn policy(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<Policy>, QueryError> {
    state.check_aggregate(id, "coupon policy")?;
    let row = state
        .db(queries::policy(&state.pool, &state.live().schema, id))
        .await?
        .ok_or(QueryError::NotFound("coupon policy"))?;
    let mut one = policies_with_counts(&state, vec![row]).await?;
    one.pop()
        .map(Json)
        .ok_or(QueryError::NotFound("coupon policy"))
}

/// The coupon as the domain sees it, so quote and status use the domain's own rules.
fn coupon_domain(row: &CouponRow) -> Coupon {
    let state = match row.state.as_str() {
        "USED" => CouponState::Used {
            order_id: Text::parse(row.order_id.as_deref().unwrap_or("?"), "orderId")
                .unwrap_or_else(|_| Text::parse("?", "orderId").expect("non-blank literal")),
            order_amount: Money::parse(row.order_amount.unwrap_or(0), "orderAmount")
                .unwrap_or_default(),
            discount: Money::parse(row.discount_amount.unwrap_or(0), "discount")
                .unwrap_or_default(),
        },
        "RESERVED" => CouponState::Reserved {
            order_id: Text::parse(row.order_id.as_deref().unwrap_or("?"), "orderId")
                .unwrap_or_else(|_| Text::parse("?", "orderId").expect("non-blank literal")),
            order_amount: Money::parse(row.order_amount.unwrap_or(0), "orderAmount")
                .unwrap_or_default(),
            discount: Money::parse(row.discount_amount.unwrap_or(0), "discount")
                .unwrap_or_default(),
            until: row.reserved_until.unwrap_or(row.expires_at),
        },
        "CANCELED" => CouponState::Revoked,
        _ => CouponState::Available,
    };
    Coupon {
        user_id: UserId::parse(row.user_id, "userId")
            .unwrap_or_else(|_| UserId::parse(1, "userId").expect("1 > 0")),
        expires_at: row.expires_at,
        state,
    }
}

/// A coupon as the API answers it, its status at `now`.
pub(super) fn coupon_view(row: &CouponRow, now: DateTime<Utc>) -> CouponView {
    let coupon = coupon_domain(row);
    CouponView {
        coupon_id: row.coupon_id,
        policy_id: row.policy_id,
        user_id: row.user_id,
        status: CouponStatus::at(&coupon.state, coupon.expires_at, now),
        expires_at: row.expires_at,
        issued_at: row.issued_at,
        used_at: row.used_at,
        order_id: row.order_id.clone(),
        order_amount: row.order_amount,
        discount_amount: row.discount_amount,
        reserved_until: row.reserved_until,
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/coupons/{id}",
    tag = "coupons",
    summary = "A coupon (its owner, a service or an admin)",
    params(("id" = Uuid, Path, description = "The coupon's id")),
    responses(
        (status = 200, description = "Found", body = CouponView),
    )
)]
async fn coupon(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<CouponView>, QueryError> {
    let row = state
        .db(queries::coupon(&state.pool, &state.live().schema, id))
        .await?;
    let Some(row) = row else {
        state.check_missing_entity(id, "coupon", "coupon").await?;
        return Err(QueryError::NotFound("coupon"));
    };
    caller.require_user(row.user_id)?;
    state.check_aggregate(row.policy_id, "coupon")?;
    Ok(Json(coupon_view(&row, Utc::now())))
}

#[utoipa::path(
    get,
    path = "/api/v1/coupons/user/{user_id}",
    tag = "coupons",
    summary = "A user's coupons, optionally of one status",
    params(("user_id" = i64, Path, minimum = 1, description = "The user's id"), CouponPage),
    responses(
        (status = 200, description = "Found", body = Paged<CouponView>),
    )
)]
async fn user_coupons(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(user_id): Path<i64>,
    Query(q): Query<CouponPage>,
) -> Result<Json<Paged<CouponView>>, QueryError> {
    let user_id = user(user_id)?.get();
    caller.require_user(user_id)?;
    state
        .check_user("coupon", user_id, "user's coupons")
        .await?;
    let (page, limit, offset) = Page {
        page: q.page,
        limit: q.limit,
    }
    .bounds()?;
    let filter = match q.status.as_deref() {
        None => CouponFilter::All,
        Some("AVAILABLE") => CouponFilter::Available,
        Some("EXPIRED") => CouponFilter::Expired,
        Some("USED") => CouponFilter::Used,
        Some("CANCELED") => CouponFilter::Canceled,
        Some(_) => {
            return Err(QueryError::BadRequest {
                detail: "status must be AVAILABLE, USED, EXPIRED or CANCELED".into(),
                field: "status",
            })
        }
    };
    let window = Window { limit, offset };
    let (rows, total) = state
        .db(queries::user_coupons(
            &state.pool,
            &state.live().schema,
            user_id,
            filter,
            window,
        ))
        .await?;
    let now = Utc::now();
    Ok(paged(
        rows.iter().map(|r| coupon_view(r, now)).collect(),
        page,
        limit,
        total,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct QuoteQuery {
    /// The order's amount.
    #[param(minimum = 0)]
    order_amount: i64,
    /// For a service or an admin: the user the quote is for (a user is always itself).
    #[param(minimum = 1)]
    user_id: Option<i64>,
}

/// Whether a coupon applies to an order, the discount, and why not — the domain's own rule
/// (`check_applicable`, the one `use` runs) over the read model. Changes nothing.
#[utoipa::path(
    get,
    path = "/api/v1/coupons/{id}/quote",
    tag = "coupons",
    summary = "Whether a coupon applies to an order, and the discount",
    params(("id" = Uuid, Path, description = "The coupon's id"), QuoteQuery),
    responses(
        (status = 200, description = "Found", body = Quote),
    )
)]
async fn quote(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<QuoteQuery>,
) -> Result<Json<Quote>, QueryError> {
    let amount =
        Money::parse(q.order_amount, "orderAmount").map_err(|_| QueryError::BadRequest {
            detail: "orderAmount must not be negative".into(),
            field: "orderAmount",
        })?;
    let acting = q.user_id.map(user).transpose()?;
    // A user quotes as itself: someone else's coupon is NOT_OWNER, as using it would be.
    let acting = match caller.user_id() {
        Some(own) => {
            if acting.is_some_and(|a| a.get() != own) {
                return Err(auth::Forbidden("a user quotes as itself").into());
            }
            Some(user(own)?)
        }
        None => acting,
    };
    let live = state.live();
    let row = state
        .db(queries::coupon(&state.pool, &live.schema, id))
        .await?;
    match &row {
        Some(row) => state.check_aggregate(row.policy_id, "coupon")?,
        None => state.check_missing_entity(id, "coupon", "coupon").await?,
    }
    let policy = match &row {
        Some(row) => {
            state
                .db(queries::terms(&state.pool, &live.schema, row.policy_id))
                .await?
        }
        None => None,
    };
    // A discount type this code does not know is a read model it did not write: 503, as on
    // every other route, not "no such coupon".
    let kind: Option<DiscountType> = match &policy {
        Some(p) => Some(recorded(&p.discount_type)?),
        None => None,
    };
    let budget = policy.as_ref().map(|p| {
        (
            p.discount_budget
                .and_then(|b| Money::parse(b, "discountBudget").ok()),
            Money::tally(p.discount_granted),
        )
    });
    let terms = policy.zip(kind).and_then(|(p, kind)| {
        let (value, minimum, cap) = (
            p.discount_value,
            p.minimum_order_amount,
            p.maximum_discount_amount,
        );
        DiscountTerms::new(
            kind,
            value,
            Money::parse(minimum, "m").ok()?,
            Money::parse(cap, "c").ok()?,
        )
        .ok()
    });
    let coupon = row.as_ref().map(coupon_domain);
    let outcome = match &terms {
        Some(terms) => check_applicable(coupon.as_ref(), terms, acting, amount, Utc::now())
            .and_then(|discount| {
                let (budget, granted) = budget.unwrap_or((None, Money::ZERO));
                check_budget(budget, granted, discount).map(|()| discount)
            }),
        None => Err(domain::DomainError::CouponNotFound),
    };
    Ok(Json(match outcome {
        Ok(discount) => Quote {
            coupon_id: id,
            order_amount: amount.get(),
            applicable: true,
            discount_amount: discount.get(),
            final_amount: amount.get() - discount.get(),
            reason: None,
        },
        Err(reason) => Quote {
            coupon_id: id,
            order_amount: amount.get(),
            applicable: false,
            discount_amount: 0,
            final_amount: amount.get(),
            reason: Some(reason.code().to_owned()),
        },
    }))
}
