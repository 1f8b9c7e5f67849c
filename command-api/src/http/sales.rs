//! `/api/v1/products`, `/api/v1/time-sales`, `/api/v1/orders/…`.

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use problem::Path;
use uuid::Uuid;

use super::extract::{Caller, JsonBody};
use super::{Answered, Empty};
use crate::commands::sales::{
    CreateProduct, CreateTimeSale, OrderCanceled, OrderPlaced, PlaceOrder, ProductCreated,
    TimeSaleCreated,
};
use crate::commands::{CommandError, Commands, Written};

pub(super) fn router() -> Router<Commands> {
    Router::new()
        .route("/api/v1/products", post(create_product))
        .route("/api/v1/time-sales", post(create_time_sale))
        .route("/api/v1/orders", post(place_order))
        .route("/api/v1/orders/{id}/cancel", post(cancel_order))
}

#[utoipa::path(
    post,
    path = "/api/v1/products",
    tag = "sales",
    summary = "Create a product (admin)",
    request_body = CreateProduct,
    responses(
        (status = 201, description = "The product", body = Answered<ProductCreated>),
        (status = 422, description = "A rule refused it", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn create_product(
    State(commands): State<Commands>,
    caller: Caller,
    body: JsonBody<CreateProduct>,
) -> Result<Written<ProductCreated>, CommandError> {
    commands
        .create_product(&caller.with(body.hash), body.value)
        .await
}

#[utoipa::path(
    post,
    path = "/api/v1/time-sales",
    tag = "sales",
    summary = "Open a flash sale of a product (admin)",
    request_body = CreateTimeSale,
    responses(
        (status = 201, description = "The sale", body = Answered<TimeSaleCreated>),
        (status = 404, description = "No such product", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A rule refused it (price, quantity, window)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn create_time_sale(
    State(commands): State<Commands>,
    caller: Caller,
    body: JsonBody<CreateTimeSale>,
) -> Result<Written<TimeSaleCreated>, CommandError> {
    commands
        .create_time_sale(&caller.with(body.hash), body.value)
        .await
}

#[utoipa::path(
    post,
    path = "/api/v1/orders",
    tag = "sales",
    summary = "Order from a flash sale (never oversold)",
    request_body = PlaceOrder,
    responses(
        (status = 201, description = "The order", body = Answered<OrderPlaced>),
        (status = 404, description = "No such sale", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Sold out, over the per-user limit, or outside the window", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn place_order(
    State(commands): State<Commands>,
    caller: Caller,
    body: JsonBody<PlaceOrder>,
) -> Result<Written<OrderPlaced>, CommandError> {
    commands
        .place_order(&caller.with(body.hash), body.value)
        .await
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/cancel",
    tag = "sales",
    summary = "Cancel an order; its units go back to the sale",
    request_body(content = Option<Empty>, description = "Nothing, or an empty object"),
    params(("id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order, canceled", body = Answered<OrderCanceled>),
        (status = 404, description = "No such order", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The order is another user's (NOT_OWNER)", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Canceled already", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn cancel_order(
    State(commands): State<Commands>,
    caller: Caller,
    Path(order_id): Path<Uuid>,
    body: JsonBody<Empty>,
) -> Result<Written<OrderCanceled>, CommandError> {
    commands
        .cancel_order(&caller.with(body.hash), order_id)
        .await
}
