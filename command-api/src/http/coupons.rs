//! `/api/v1/coupon-policies` and `/api/v1/coupons/…`: open a campaign, issue, use, cancel a
//! use, revoke.

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use problem::Path;
use uuid::Uuid;

use super::extract::{Caller, JsonBody};
use super::{Answered, Empty};
use crate::commands::coupons::{
    CouponChanged, CouponIssued, CouponUsed, CreatePolicy, Issue, PolicyCreated, Use,
};
use crate::commands::{CommandError, Commands, Written};

pub(super) fn router() -> Router<Commands> {
    Router::new()
        .route("/api/v1/coupon-policies", post(create_policy))
        .route("/api/v1/coupons/issue", post(issue))
        .route("/api/v1/coupons/{id}/use", post(use_coupon))
        .route("/api/v1/coupons/{id}/cancel", post(cancel_use))
        .route("/api/v1/coupons/{id}/revoke", post(revoke))
}

#[utoipa::path(
    post,
    path = "/api/v1/coupon-policies",
    tag = "coupons",
    summary = "Open a coupon campaign (admin)",
    request_body = CreatePolicy,
    responses(
        (status = 201, description = "The policy", body = Answered<PolicyCreated>),
        (status = 422, description = "A rule refused it (e.g. the window ends before it starts)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn create_policy(
    State(commands): State<Commands>,
    caller: Caller,
    body: JsonBody<CreatePolicy>,
) -> Result<Written<PolicyCreated>, CommandError> {
    commands
        .create_policy(&caller.with(body.hash), body.value)
        .await
}

#[utoipa::path(
    post,
    path = "/api/v1/coupons/issue",
    tag = "coupons",
    summary = "Issue a coupon of a policy to a user (once per user, never past the total)",
    request_body = Issue,
    responses(
        (status = 201, description = "The coupon", body = Answered<CouponIssued>),
        (status = 404, description = "No such policy", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Sold out, already issued to this user, or outside the window", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn issue(
    State(commands): State<Commands>,
    caller: Caller,
    body: JsonBody<Issue>,
) -> Result<Written<CouponIssued>, CommandError> {
    commands.issue(&caller.with(body.hash), body.value).await
}

#[utoipa::path(
    post,
    path = "/api/v1/coupons/{id}/use",
    tag = "coupons",
    summary = "Use a coupon on an order",
    request_body = Use,
    params(("id" = Uuid, Path, description = "The coupon's id")),
    responses(
        (status = 200, description = "The coupon, used, with the discount", body = Answered<CouponUsed>),
        (status = 404, description = "No such coupon", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The coupon is another user's (NOT_OWNER)", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not usable: used, expired, revoked, or under the minimum order", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn use_coupon(
    State(commands): State<Commands>,
    caller: Caller,
    Path(coupon_id): Path<Uuid>,
    body: JsonBody<Use>,
) -> Result<Written<CouponUsed>, CommandError> {
    commands
        .use_coupon(&caller.with(body.hash), coupon_id, body.value)
        .await
}

#[utoipa::path(
    post,
    path = "/api/v1/coupons/{id}/cancel",
    tag = "coupons",
    summary = "Undo a coupon's use (service: a refund)",
    request_body(content = Option<Empty>, description = "Nothing, or an empty object"),
    params(("id" = Uuid, Path, description = "The coupon's id")),
    responses(
        (status = 200, description = "The coupon, available again", body = Answered<CouponChanged>),
        (status = 404, description = "No such coupon", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The coupon is not used", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn cancel_use(
    State(commands): State<Commands>,
    caller: Caller,
    Path(coupon_id): Path<Uuid>,
    body: JsonBody<Empty>,
) -> Result<Written<CouponChanged>, CommandError> {
    commands
        .cancel_coupon_use(&caller.with(body.hash), coupon_id)
        .await
}

#[utoipa::path(
    post,
    path = "/api/v1/coupons/{id}/revoke",
    tag = "coupons",
    summary = "Revoke a coupon (admin)",
    request_body(content = Option<Empty>, description = "Nothing, or an empty object"),
    params(("id" = Uuid, Path, description = "The coupon's id")),
    responses(
        (status = 200, description = "The coupon, revoked", body = Answered<CouponChanged>),
        (status = 404, description = "No such coupon", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The coupon is used or revoked already", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn revoke(
    State(commands): State<Commands>,
    caller: Caller,
    Path(coupon_id): Path<Uuid>,
    body: JsonBody<Empty>,
) -> Result<Written<CouponChanged>, CommandError> {
    commands
        .revoke_coupon(&caller.with(body.hash), coupon_id)
        .await
}
