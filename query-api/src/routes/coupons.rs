//! Coupon policies, coupons, a user's coupons and the quote.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use domain::coupon::{
    check_applicable, Coupon, CouponState, CouponStatus, DiscountTerms, DiscountType,
};
use domain::values::{Money, Text, UserId};
use problem::{Path, Query};
use readmodel::hot::keys;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use auth::http::Caller;

use crate::{AppState, QueryError};

use super::{fetch_page, paged, user, Page};

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

#[derive(sqlx::FromRow)]
struct PolicyRow {
    policy_id: Uuid,
    title: String,
    description: String,
    total_quantity: i64,
    start_time: DateTime<Utc>,
    end_time: DateTime<Utc>,
    discount_type: String,
    discount_value: i64,
    minimum_order_amount: i64,
    maximum_discount_amount: i64,
    coupon_expires_at: DateTime<Utc>,
    issued_count: i64,
    used_count: i64,
    created_at: DateTime<Utc>,
}

const POLICY_COLUMNS: &str = "policy_id, title, description, total_quantity, start_time, end_time, discount_type, \
     discount_value, minimum_order_amount, maximum_discount_amount, coupon_expires_at, issued_count, used_count, created_at";

async fn policy_json(state: &AppState, row: PolicyRow) -> Value {
    let key = keys::policy(&state.live().prefix, row.policy_id);
    let issued = state
        .hot
        .field(&key, "issued")
        .await
        .unwrap_or(row.issued_count);
    let used = state
        .hot
        .field(&key, "used")
        .await
        .unwrap_or(row.used_count);
    json!({
        "policyId": row.policy_id, "title": row.title, "description": row.description,
        "totalQuantity": row.total_quantity, "startTime": row.start_time, "endTime": row.end_time,
        "discountType": row.discount_type, "discountValue": row.discount_value,
        "minimumOrderAmount": row.minimum_order_amount, "maximumDiscountAmount": row.maximum_discount_amount,
        "couponExpiresAt": row.coupon_expires_at, "issuedCount": issued, "usedCount": used,
        "remainingQuantity": (row.total_quantity - issued).max(0), "createdAt": row.created_at,
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/coupon-policies",
    tag = "coupons",
    summary = "Coupon policies, newest first",
    params(super::Page),
    responses(
        (status = 200, description = "Found", body = crate::openapi::Paged<crate::openapi::Policy>),
        (status = 503, description = "A dependency is down, the read is not consistent yet, or the aggregate's read model is faulted (PROJECTION_FAULTED)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn policies(
    State(state): State<AppState>,
    Query(q): Query<Page>,
) -> Result<Json<Value>, QueryError> {
    let (page, limit, offset) = q.bounds()?;
    let (rows, total): (Vec<PolicyRow>, i64) = fetch_page(
        &state,
        POLICY_COLUMNS,
        "coupon_policies",
        "created_at DESC, policy_id",
        None,
        (limit, offset),
    )
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(policy_json(&state, row).await);
    }
    Ok(paged(items, page, limit, total))
}

#[utoipa::path(
    get,
    path = "/api/v1/coupon-policies/{id}",
    tag = "coupons",
    summary = "A coupon policy with its live counts",
    params(("id" = Uuid, Path, description = "The policy's id")),
    responses(
        (status = 200, description = "Found", body = crate::openapi::Policy),
        (status = 503, description = "A dependency is down, the read is not consistent yet, or the aggregate's read model is faulted (PROJECTION_FAULTED)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn policy(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, QueryError> {
    state.check_aggregate(id, "coupon policy")?;
    let live = state.live();
    let s = &live.schema;
    let row: PolicyRow = sqlx::query_as(&format!(
        "SELECT {POLICY_COLUMNS} FROM {s}.coupon_policies WHERE policy_id = $1"
    ))
    .bind(id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or(QueryError::NotFound("coupon policy"))?;
    Ok(Json(policy_json(&state, row).await))
}

#[derive(sqlx::FromRow)]
struct CouponRow {
    coupon_id: Uuid,
    policy_id: Uuid,
    user_id: i64,
    state: String,
    expires_at: DateTime<Utc>,
    order_id: Option<String>,
    order_amount: Option<i64>,
    discount_amount: Option<i64>,
    issued_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
}

const COUPON_COLUMNS: &str =
    "coupon_id, policy_id, user_id, state, expires_at, order_id, order_amount, discount_amount, issued_at, used_at";

impl CouponRow {
    /// The coupon as the domain sees it, so quote and status use the domain's own rules.
    fn domain(&self) -> Coupon {
        let state = match self.state.as_str() {
            "USED" => CouponState::Used {
                order_id: Text::parse(self.order_id.as_deref().unwrap_or("?"), "orderId")
                    .unwrap_or_else(|_| Text::parse("?", "orderId").expect("non-blank literal")),
                order_amount: Money::parse(self.order_amount.unwrap_or(0), "orderAmount")
                    .unwrap_or_default(),
                discount: Money::parse(self.discount_amount.unwrap_or(0), "discount")
                    .unwrap_or_default(),
            },
            "CANCELED" => CouponState::Revoked,
            _ => CouponState::Available,
        };
        Coupon {
            user_id: UserId::parse(self.user_id, "userId")
                .unwrap_or_else(|_| UserId::parse(1, "userId").expect("1 > 0")),
            expires_at: self.expires_at,
            state,
        }
    }

    fn json(&self, now: DateTime<Utc>) -> Value {
        let coupon = self.domain();
        json!({
            "couponId": self.coupon_id, "policyId": self.policy_id, "userId": self.user_id,
            "status": CouponStatus::at(&coupon.state, coupon.expires_at, now),
            "expiresAt": self.expires_at, "issuedAt": self.issued_at, "usedAt": self.used_at,
            "orderId": self.order_id, "orderAmount": self.order_amount, "discountAmount": self.discount_amount,
        })
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/coupons/{id}",
    tag = "coupons",
    summary = "A coupon (its owner, a service or an admin)",
    params(("id" = Uuid, Path, description = "The coupon's id")),
    responses(
        (status = 200, description = "Found", body = crate::openapi::Coupon),
        (status = 503, description = "A dependency is down, the read is not consistent yet, or the aggregate's read model is faulted (PROJECTION_FAULTED)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn coupon(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, QueryError> {
    let live = state.live();
    let s = &live.schema;
    let row: Option<CouponRow> = sqlx::query_as(&format!(
        "SELECT {COUPON_COLUMNS} FROM {s}.coupons WHERE coupon_id = $1"
    ))
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    let Some(row) = row else {
        state.check_missing_entity(id, "coupon", "coupon").await?;
        return Err(QueryError::NotFound("coupon"));
    };
    caller.require_user(row.user_id)?;
    state.check_aggregate(row.policy_id, "coupon")?;
    Ok(Json(row.json(Utc::now())))
}

#[utoipa::path(
    get,
    path = "/api/v1/coupons/user/{user_id}",
    tag = "coupons",
    summary = "A user's coupons, optionally of one status",
    params(("user_id" = i64, Path, description = "The user's id"), CouponPage),
    responses(
        (status = 200, description = "Found", body = crate::openapi::Paged<crate::openapi::Coupon>),
        (status = 503, description = "A dependency is down, the read is not consistent yet, or the aggregate's read model is faulted (PROJECTION_FAULTED)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn user_coupons(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(user_id): Path<i64>,
    Query(q): Query<CouponPage>,
) -> Result<Json<Value>, QueryError> {
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
        None => "",
        Some("AVAILABLE") => "AND state = 'AVAILABLE' AND expires_at > now()",
        Some("EXPIRED") => "AND state = 'AVAILABLE' AND expires_at <= now()",
        Some("USED") => "AND state = 'USED'",
        Some("CANCELED") => "AND state = 'CANCELED'",
        Some(_) => {
            return Err(QueryError::BadRequest {
                detail: "status must be AVAILABLE, USED, EXPIRED or CANCELED".into(),
                field: "status",
            })
        }
    };
    let (rows, total): (Vec<CouponRow>, i64) = fetch_page(
        &state,
        COUPON_COLUMNS,
        &format!("coupons WHERE user_id = $1 {filter}"),
        "issued_at DESC, coupon_id",
        Some(user_id),
        (limit, offset),
    )
    .await?;
    let now = Utc::now();
    Ok(paged(
        rows.iter().map(|r| r.json(now)).collect(),
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
    order_amount: i64,
    /// For a service or an admin: the user the quote is for (a user is always itself).
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
        (status = 200, description = "Found", body = crate::openapi::Quote),
        (status = 503, description = "A dependency is down, the read is not consistent yet, or the aggregate's read model is faulted (PROJECTION_FAULTED)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn quote(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<QuoteQuery>,
) -> Result<Json<Value>, QueryError> {
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
    let s = &live.schema;
    let row: Option<CouponRow> = sqlx::query_as(&format!(
        "SELECT {COUPON_COLUMNS} FROM {s}.coupons WHERE coupon_id = $1"
    ))
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    match &row {
        Some(row) => state.check_aggregate(row.policy_id, "coupon")?,
        None => state.check_missing_entity(id, "coupon", "coupon").await?,
    }
    let policy: Option<(String, i64, i64, i64)> = match &row {
        Some(row) => {
            sqlx::query_as(&format!(
            "SELECT discount_type, discount_value, minimum_order_amount, maximum_discount_amount \
             FROM {s}.coupon_policies WHERE policy_id = $1"
        ))
            .bind(row.policy_id)
            .fetch_optional(&state.pool)
            .await?
        }
        None => None,
    };
    let terms = policy.and_then(|(kind, value, minimum, cap)| {
        let kind = if kind == "PERCENTAGE" {
            DiscountType::Percentage
        } else {
            DiscountType::FixedAmount
        };
        DiscountTerms::new(
            kind,
            value,
            Money::parse(minimum, "m").ok()?,
            Money::parse(cap, "c").ok()?,
        )
        .ok()
    });
    let coupon = row.as_ref().map(CouponRow::domain);
    let outcome = match &terms {
        Some(terms) => check_applicable(coupon.as_ref(), terms, acting, amount, Utc::now()),
        None => Err(domain::DomainError::CouponNotFound),
    };
    Ok(Json(match outcome {
        Ok(discount) => json!({
            "couponId": id, "orderAmount": amount, "applicable": true, "discountAmount": discount,
            "finalAmount": amount.get() - discount.get(), "reason": null,
        }),
        Err(reason) => json!({
            "couponId": id, "orderAmount": amount, "applicable": false, "discountAmount": 0,
            "finalAmount": amount, "reason": reason.code(),
        }),
    }))
}
