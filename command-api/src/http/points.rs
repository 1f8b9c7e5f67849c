//! `/api/v1/points/…`: earn, use, cancel a transaction.

use axum::extract::State;
use axum::routing::post;
use axum::Router;

use super::extract::{Caller, JsonBody};
use super::Answered;
use crate::commands::points::{Cancel, Earn, PointEntry, Spend};
use crate::commands::{CommandError, Commands, Written};

pub(super) fn router() -> Router<Commands> {
    Router::new()
        .route("/api/v1/points/earn", post(earn))
        .route("/api/v1/points/use", post(spend))
        .route("/api/v1/points/cancel", post(cancel))
}

#[utoipa::path(
    post,
    path = "/api/v1/points/earn",
    tag = "points",
    summary = "Grant points (service)",
    request_body = Earn,
    responses(
        (status = 201, description = "The transaction and the balance after it", body = Answered<PointEntry>),
        (status = 422, description = "A rule refused it", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn earn(
    State(commands): State<Commands>,
    caller: Caller,
    body: JsonBody<Earn>,
) -> Result<Written<PointEntry>, CommandError> {
    commands
        .earn_points(&caller.with(body.hash), body.value)
        .await
}

#[utoipa::path(
    post,
    path = "/api/v1/points/use",
    tag = "points",
    summary = "Spend points",
    request_body = Spend,
    responses(
        (status = 201, description = "The transaction and the balance after it", body = Answered<PointEntry>),
        (status = 422, description = "Insufficient balance, or no account", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn spend(
    State(commands): State<Commands>,
    caller: Caller,
    body: JsonBody<Spend>,
) -> Result<Written<PointEntry>, CommandError> {
    commands
        .spend_points(&caller.with(body.hash), body.value)
        .await
}

#[utoipa::path(
    post,
    path = "/api/v1/points/cancel",
    tag = "points",
    summary = "Cancel a point transaction (service: a refund)",
    request_body = Cancel,
    responses(
        (status = 201, description = "The cancellation and the balance after it", body = Answered<PointEntry>),
        (status = 404, description = "No such transaction of this user", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Already canceled, or the balance would go negative", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn cancel(
    State(commands): State<Commands>,
    caller: Caller,
    body: JsonBody<Cancel>,
) -> Result<Written<PointEntry>, CommandError> {
    commands
        .cancel_points(&caller.with(body.hash), body.value)
        .await
}
