//! Coupon policies and coupons: create a policy, issue, use, cancel use, revoke.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Utc};
use domain::coupon::{
    CouponCommand, CouponEvent, CouponPolicy, CouponStatus, DiscountTerms, DiscountType, PolicySpec,
};
use domain::values::{Money, Quantity, Text, UserId};
use domain::DomainError;
use problem::Path;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use auth::http::Caller;

use super::Empty;
use crate::error::ApiError;
use crate::extract::{IdempotencyKey, JsonBody};
use crate::{acting, respond, AppState, CommandContext};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/coupon-policies", post(create_policy))
        .route("/api/v1/coupons/issue", post(issue))
        .route("/api/v1/coupons/{id}/use", post(use_coupon))
        .route("/api/v1/coupons/{id}/cancel", post(cancel_use))
        .route("/api/v1/coupons/{id}/revoke", post(revoke))
}

/// How a policy's coupons discount (the document's view of [`DiscountType`]).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(dead_code)]
enum DiscountKind {
    /// `discountValue` percent off (1–100), at most `maximumDiscountAmount` when set.
    Percentage,
    /// `discountValue` off the order.
    FixedAmount,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreatePolicy {
    title: String,
    #[serde(default)]
    description: String,
    total_quantity: i64,
    start_time: DateTime<Utc>,
    end_time: DateTime<Utc>,
    #[schema(value_type = DiscountKind)]
    discount_type: DiscountType,
    discount_value: i64,
    #[serde(default)]
    minimum_order_amount: i64,
    #[serde(default)]
    maximum_discount_amount: i64,
}

#[utoipa::path(
    post,
    path = "/api/v1/coupon-policies",
    tag = "coupons",
    summary = "Open a coupon campaign (admin)",
    request_body = CreatePolicy,
    responses(
        (status = 201, description = "The policy", body = crate::openapi::PolicyCreated),
        (status = 422, description = "A rule refused it (e.g. the window ends before it starts)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn create_policy(
    State(app): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    key: IdempotencyKey,
    body: JsonBody<CreatePolicy>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let b = body.value;
    let terms = DiscountTerms::new(
        b.discount_type,
        b.discount_value,
        Money::parse(b.minimum_order_amount, "minimumOrderAmount")?,
        Money::parse(b.maximum_discount_amount, "maximumDiscountAmount")?,
    )?;
    let spec = PolicySpec::new(
        Text::parse(&b.title, "title")?,
        Text::parse_optional(&b.description, "description")?,
        Quantity::parse(b.total_quantity, "totalQuantity")?,
        b.start_time,
        b.end_time,
        terms,
    )?;
    let policy_id = Uuid::new_v4();
    let request = CommandContext::new(&caller, &headers, key, body.hash, "CreateCouponPolicy")?
        .request(
            CouponCommand::CreatePolicy { spec },
            StatusCode::CREATED,
            move |_: &CouponPolicy, _| json!({ "policyId": policy_id }),
        );
    Ok(respond(app.coupons.execute(policy_id, request).await))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Issue {
    policy_id: Uuid,
    user_id: i64,
}

#[utoipa::path(
    post,
    path = "/api/v1/coupons/issue",
    tag = "coupons",
    summary = "Issue a coupon of a policy to a user (once per user, never past the total)",
    request_body = Issue,
    responses(
        (status = 201, description = "The coupon", body = crate::openapi::CouponAnswer),
        (status = 404, description = "No such policy", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Sold out, already issued to this user, or outside the window", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn issue(
    State(app): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    key: IdempotencyKey,
    body: JsonBody<Issue>,
) -> Result<Response, ApiError> {
    let user_id = UserId::parse(body.value.user_id, "userId")?;
    caller.require_user(user_id.get())?;
    let policy_id = body.value.policy_id;
    if !app.exists(policy_id, "coupon").await? {
        return Err(DomainError::PolicyNotFound.into());
    }
    let command = CouponCommand::IssueCoupon {
        coupon_id: Uuid::new_v4(),
        user_id,
        now: Utc::now(),
    };
    let request = CommandContext::new(&caller, &headers, key, body.hash, "IssueCoupon")?.request(
        command,
        StatusCode::CREATED,
        move |_: &CouponPolicy, events| match events {
            [CouponEvent::CouponIssued {
                coupon_id,
                user_id,
                expires_at,
                ..
            }] => json!({
                "couponId": coupon_id, "policyId": policy_id, "userId": user_id,
                "status": "AVAILABLE", "expiresAt": expires_at,
            }),
            _ => json!({ "policyId": policy_id }),
        },
    );
    Ok(respond(app.coupons.execute(policy_id, request).await))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Use {
    order_id: String,
    order_amount: i64,
}

#[utoipa::path(
    post,
    path = "/api/v1/coupons/{id}/use",
    tag = "coupons",
    summary = "Use a coupon on an order",
    request_body = Use,
    params(("id" = Uuid, Path, description = "The coupon's id")),
    responses(
        (status = 200, description = "The coupon, used, with the discount", body = crate::openapi::CouponAnswer),
        (status = 404, description = "No such coupon", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not usable: used, expired, revoked, not the owner, or under the minimum order", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn use_coupon(
    State(app): State<AppState>,
    Caller(caller): Caller,
    Path(coupon_id): Path<Uuid>,
    headers: HeaderMap,
    key: IdempotencyKey,
    body: JsonBody<Use>,
) -> Result<Response, ApiError> {
    let command = CouponCommand::UseCoupon {
        coupon_id,
        acting_user: acting(&caller),
        order_id: Text::parse_reference(&body.value.order_id, "orderId")?,
        order_amount: Money::parse(body.value.order_amount, "orderAmount")?,
        now: Utc::now(),
    };
    let policy_id = app.stream_of(coupon_id, "coupon", "coupon").await?;
    let request = CommandContext::new(&caller, &headers, key, body.hash, "UseCoupon")?.request(
        command,
        StatusCode::OK,
        move |_: &CouponPolicy, events| match events {
            [CouponEvent::CouponUsed {
                order_id,
                order_amount,
                discount,
                ..
            }] => json!({
                "couponId": coupon_id, "policyId": policy_id, "status": "USED",
                "orderId": order_id, "orderAmount": order_amount, "discountAmount": discount,
            }),
            _ => json!({ "couponId": coupon_id }),
        },
    );
    Ok(respond(app.coupons.execute(policy_id, request).await))
}

#[utoipa::path(
    post,
    path = "/api/v1/coupons/{id}/cancel",
    tag = "coupons",
    summary = "Undo a coupon's use (service: a refund)",
    request_body(content = Option<Empty>, description = "Nothing, or an empty object"),
    params(("id" = Uuid, Path, description = "The coupon's id")),
    responses(
        (status = 200, description = "The coupon, available again", body = crate::openapi::CouponAnswer),
        (status = 404, description = "No such coupon", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The coupon is not used", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn cancel_use(
    State(app): State<AppState>,
    Caller(caller): Caller,
    Path(coupon_id): Path<Uuid>,
    headers: HeaderMap,
    key: IdempotencyKey,
    body: JsonBody<Empty>,
) -> Result<Response, ApiError> {
    // Undoing a use is a refund — the shop's decision, not the shopper's: a user could
    // otherwise keep the order's discount and have the coupon back.
    caller.require_service()?;
    let policy_id = app.stream_of(coupon_id, "coupon", "coupon").await?;
    let now = Utc::now();
    let request = CommandContext::new(&caller, &headers, key, body.hash, "CancelCouponUse")?
        .request(
            CouponCommand::CancelCouponUse {
                coupon_id,
                acting_user: acting(&caller),
                now,
            },
            StatusCode::OK,
            move |policy: &CouponPolicy, _| {
                let status = policy
                    .coupon(&coupon_id)
                    .map(|c| CouponStatus::at(&c.state, c.expires_at, now));
                json!({ "couponId": coupon_id, "policyId": policy_id, "status": status })
            },
        );
    Ok(respond(app.coupons.execute(policy_id, request).await))
}

#[utoipa::path(
    post,
    path = "/api/v1/coupons/{id}/revoke",
    tag = "coupons",
    summary = "Revoke a coupon (admin)",
    request_body(content = Option<Empty>, description = "Nothing, or an empty object"),
    params(("id" = Uuid, Path, description = "The coupon's id")),
    responses(
        (status = 200, description = "The coupon, revoked", body = crate::openapi::CouponAnswer),
        (status = 404, description = "No such coupon", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The coupon is used or revoked already", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn revoke(
    State(app): State<AppState>,
    Caller(caller): Caller,
    Path(coupon_id): Path<Uuid>,
    headers: HeaderMap,
    key: IdempotencyKey,
    body: JsonBody<Empty>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let policy_id = app.stream_of(coupon_id, "coupon", "coupon").await?;
    let request = CommandContext::new(&caller, &headers, key, body.hash, "RevokeCoupon")?.request(
        CouponCommand::RevokeCoupon { coupon_id, now: Utc::now() },
        StatusCode::OK,
        move |_: &CouponPolicy, _| json!({ "couponId": coupon_id, "policyId": policy_id, "status": "CANCELED" }),
    );
    Ok(respond(app.coupons.execute(policy_id, request).await))
}
