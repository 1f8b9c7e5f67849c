//! `/api/v1/reservations/…` and `/api/v1/coupons/{id}/reserve|confirm|release`: checkout holds
//! on a flash sale's units and on a coupon.

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use problem::Path;
use uuid::Uuid;

use super::extract::{Caller, JsonBody};
use super::{Answered, Empty};
use crate::commands::holds::{CouponHeld, Held, HoldEnd, Reserve, ReserveCoupon};
use crate::commands::{CommandError, Commands, Written};

pub(super) fn router() -> Router<Commands> {
    Router::new()
        .route("/api/v1/reservations", post(reserve))
        .route("/api/v1/reservations/{id}/confirm", post(confirm))
        .route("/api/v1/reservations/{id}/release", post(release))
        .route("/api/v1/coupons/{id}/reserve", post(reserve_coupon))
        .route("/api/v1/coupons/{id}/confirm", post(confirm_coupon))
        .route("/api/v1/coupons/{id}/release", post(release_coupon))
}

#[utoipa::path(
    post,
    path = "/api/v1/reservations",
    tag = "sales",
    summary = "Hold units of a flash sale for a checkout, until ttlSeconds pass",
    description = "The units are out of stock for everyone else until the hold is confirmed (an order), released, or expires (the system expires it at its due time, once). One hold per shop order id: the same request again answers the hold as it stands (200).",
    request_body = Reserve,
    responses(
        (status = 201, description = "The hold", body = Answered<Held>),
        (status = 200, description = "This order's hold, made before", body = Answered<Held>),
        (status = 404, description = "No such sale", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order id holds another reservation (RESERVATION_EXISTS)", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Sold out, over the per-user limit, outside the window, or a ttlSeconds outside this deployment's bounds", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn reserve(
    State(commands): State<Commands>,
    caller: Caller,
    body: JsonBody<Reserve>,
) -> Result<Written<Held>, CommandError> {
    commands.reserve(&caller.with(body.hash), body.value).await
}

#[utoipa::path(
    post,
    path = "/api/v1/reservations/{id}/confirm",
    tag = "sales",
    summary = "Confirm a hold: its units become an order",
    request_body(content = Option<Empty>, description = "Nothing, or an empty object"),
    params(("id" = Uuid, Path, description = "The reservation's id")),
    responses(
        (status = 200, description = "The hold, CONFIRMED, with the order it created", body = Answered<Held>),
        (status = 404, description = "No such reservation", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The hold is another user's (NOT_OWNER)", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Expired (RESERVATION_EXPIRED), or confirmed or released already (RESERVATION_CLOSED)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn confirm(
    State(commands): State<Commands>,
    caller: Caller,
    Path(reservation_id): Path<Uuid>,
    body: JsonBody<Empty>,
) -> Result<Written<Held>, CommandError> {
    commands
        .end_hold(&caller.with(body.hash), reservation_id, HoldEnd::Confirm)
        .await
}

#[utoipa::path(
    post,
    path = "/api/v1/reservations/{id}/release",
    tag = "sales",
    summary = "Release a hold: its units are back in stock at once",
    request_body(content = Option<Empty>, description = "Nothing, or an empty object"),
    params(("id" = Uuid, Path, description = "The reservation's id")),
    responses(
        (status = 200, description = "The hold, RELEASED", body = Answered<Held>),
        (status = 404, description = "No such reservation", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The hold is another user's (NOT_OWNER)", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Expired (RESERVATION_EXPIRED), or confirmed or released already (RESERVATION_CLOSED)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn release(
    State(commands): State<Commands>,
    caller: Caller,
    Path(reservation_id): Path<Uuid>,
    body: JsonBody<Empty>,
) -> Result<Written<Held>, CommandError> {
    commands
        .end_hold(&caller.with(body.hash), reservation_id, HoldEnd::Release)
        .await
}

#[utoipa::path(
    post,
    path = "/api/v1/coupons/{id}/reserve",
    tag = "coupons",
    summary = "Hold a coupon for a checkout's order, until ttlSeconds pass",
    description = "The coupon applies as a use would (its discount counts against the campaign's budget from now on) and no one may use it until the hold is confirmed (the coupon is used on the order), released, or expires (the system releases it at its due time, once).",
    request_body = ReserveCoupon,
    params(("id" = Uuid, Path, description = "The coupon's id")),
    responses(
        (status = 201, description = "The coupon, RESERVED", body = Answered<CouponHeld>),
        (status = 404, description = "No such coupon", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The coupon is another user's (NOT_OWNER)", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not applicable (EXPIRED, ALREADY_USED, RESERVED, BELOW_MINIMUM_ORDER, BUDGET_EXHAUSTED, …) or a ttlSeconds outside this deployment's bounds", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn reserve_coupon(
    State(commands): State<Commands>,
    caller: Caller,
    Path(coupon_id): Path<Uuid>,
    body: JsonBody<ReserveCoupon>,
) -> Result<Written<CouponHeld>, CommandError> {
    commands
        .reserve_coupon(&caller.with(body.hash), coupon_id, body.value)
        .await
}

#[utoipa::path(
    post,
    path = "/api/v1/coupons/{id}/confirm",
    tag = "coupons",
    summary = "Confirm a coupon's hold: the coupon is used on the held order",
    request_body(content = Option<Empty>, description = "Nothing, or an empty object"),
    params(("id" = Uuid, Path, description = "The coupon's id")),
    responses(
        (status = 200, description = "The coupon, USED", body = Answered<CouponHeld>),
        (status = 404, description = "No such coupon", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The coupon is another user's (NOT_OWNER)", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The hold expired (RESERVATION_EXPIRED) or there is none (RESERVATION_CLOSED)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn confirm_coupon(
    State(commands): State<Commands>,
    caller: Caller,
    Path(coupon_id): Path<Uuid>,
    body: JsonBody<Empty>,
) -> Result<Written<CouponHeld>, CommandError> {
    commands
        .end_coupon_hold(&caller.with(body.hash), coupon_id, HoldEnd::Confirm)
        .await
}

#[utoipa::path(
    post,
    path = "/api/v1/coupons/{id}/release",
    tag = "coupons",
    summary = "Release a coupon's hold: the coupon is available again at once",
    request_body(content = Option<Empty>, description = "Nothing, or an empty object"),
    params(("id" = Uuid, Path, description = "The coupon's id")),
    responses(
        (status = 200, description = "The coupon, AVAILABLE", body = Answered<CouponHeld>),
        (status = 404, description = "No such coupon", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The coupon is another user's (NOT_OWNER)", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The hold expired (RESERVATION_EXPIRED) or there is none (RESERVATION_CLOSED)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn release_coupon(
    State(commands): State<Commands>,
    caller: Caller,
    Path(coupon_id): Path<Uuid>,
    body: JsonBody<Empty>,
) -> Result<Written<CouponHeld>, CommandError> {
    commands
        .end_coupon_hold(&caller.with(body.hash), coupon_id, HoldEnd::Release)
        .await
}
