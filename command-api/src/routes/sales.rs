//! Products, time sales and orders.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Utc};
use domain::product::{Product, ProductCommand, ProductSpec};
use domain::time_sale::{TimeSale, TimeSaleCommand, TimeSaleEvent, TimeSaleSpec};
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
        .route("/api/v1/products", post(create_product))
        .route("/api/v1/time-sales", post(create_time_sale))
        .route("/api/v1/orders", post(place_order))
        .route("/api/v1/orders/{id}/cancel", post(cancel_order))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateProduct {
    name: String,
    price: i64,
    #[serde(default)]
    description: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/products",
    tag = "sales",
    summary = "Create a product (admin)",
    request_body = CreateProduct,
    responses(
        (status = 201, description = "The product", body = crate::openapi::ProductCreated),
        (status = 422, description = "A rule refused it", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn create_product(
    State(app): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    key: IdempotencyKey,
    body: JsonBody<CreateProduct>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let b = body.value;
    let spec = ProductSpec::new(
        Text::parse(&b.name, "name")?,
        Money::parse_positive(b.price, "price")?,
        Text::parse_optional(&b.description, "description")?,
    )?;
    let product_id = Uuid::new_v4();
    let request = CommandContext::new(&caller, &headers, key, body.hash, "CreateProduct")?.request(
        ProductCommand::CreateProduct {
            spec,
            now: Utc::now(),
        },
        StatusCode::CREATED,
        move |_: &Product, _| json!({ "productId": product_id }),
    );
    Ok(respond(app.products.execute(product_id, request).await))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateTimeSale {
    product_id: Uuid,
    discount_price: i64,
    quantity: i64,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    #[serde(default)]
    per_user_limit: Option<i64>,
}

#[utoipa::path(
    post,
    path = "/api/v1/time-sales",
    tag = "sales",
    summary = "Open a flash sale of a product (admin)",
    request_body = CreateTimeSale,
    responses(
        (status = 201, description = "The sale", body = crate::openapi::TimeSaleCreated),
        (status = 404, description = "No such product", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A rule refused it (price, quantity, window)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn create_time_sale(
    State(app): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    key: IdempotencyKey,
    body: JsonBody<CreateTimeSale>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let b = body.value;
    let discount_price = Money::parse(b.discount_price, "discountPrice")?;
    let quantity = Quantity::parse(b.quantity, "quantity")?;
    let per_user_limit = b
        .per_user_limit
        .map(|l| Quantity::parse(l, "perUserLimit"))
        .transpose()?;
    if !app.exists(b.product_id, "product").await? {
        return Err(DomainError::ProductNotFound.into());
    }
    // The product's price goes into the command: the time sale never reads another aggregate.
    let price = app
        .products
        .read(b.product_id, |p: &Product| p.spec().map(|s| s.price))
        .await
        .map_err(ApiError::from)?
        .ok_or(DomainError::ProductNotFound)?;
    let spec = TimeSaleSpec::new(
        b.product_id,
        price,
        discount_price,
        quantity,
        b.start_at,
        b.end_at,
        per_user_limit,
    )?;
    let time_sale_id = Uuid::new_v4();
    let request = CommandContext::new(&caller, &headers, key, body.hash, "CreateTimeSale")?
        .request(
            TimeSaleCommand::CreateTimeSale {
                spec,
                now: Utc::now(),
            },
            StatusCode::CREATED,
            move |_: &TimeSale, _| json!({ "timeSaleId": time_sale_id, "productId": b.product_id }),
        );
    Ok(respond(app.time_sales.execute(time_sale_id, request).await))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PlaceOrder {
    time_sale_id: Uuid,
    user_id: i64,
    quantity: i64,
}

#[utoipa::path(
    post,
    path = "/api/v1/orders",
    tag = "sales",
    summary = "Order from a flash sale (never oversold)",
    request_body = PlaceOrder,
    responses(
        (status = 201, description = "The order", body = crate::openapi::OrderAnswer),
        (status = 404, description = "No such sale", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Sold out, over the per-user limit, or outside the window", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn place_order(
    State(app): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    key: IdempotencyKey,
    body: JsonBody<PlaceOrder>,
) -> Result<Response, ApiError> {
    let b = body.value;
    caller.require_user(b.user_id)?;
    if !app.exists(b.time_sale_id, "timesale").await? {
        return Err(DomainError::TimeSaleNotFound.into());
    }
    let command = TimeSaleCommand::PlaceOrder {
        order_id: Uuid::new_v4(),
        user_id: UserId::parse(b.user_id, "userId")?,
        quantity: Quantity::parse(b.quantity, "quantity")?,
        now: Utc::now(),
    };
    let time_sale_id = b.time_sale_id;
    let request = CommandContext::new(&caller, &headers, key, body.hash, "PlaceOrder")?.request(
        command,
        StatusCode::CREATED,
        move |_: &TimeSale, events| match events {
            [TimeSaleEvent::OrderPlaced {
                order_id,
                user_id,
                quantity,
                unit_price,
                total_price,
                ..
            }] => json!({
                "orderId": order_id, "timeSaleId": time_sale_id, "userId": user_id,
                "quantity": quantity, "unitPrice": unit_price, "totalPrice": total_price,
                "status": "CREATED",
            }),
            _ => json!({ "timeSaleId": time_sale_id }),
        },
    );
    Ok(respond(app.time_sales.execute(time_sale_id, request).await))
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/cancel",
    tag = "sales",
    summary = "Cancel an order; its units go back to the sale",
    request_body(content = Option<Empty>, description = "Nothing, or an empty object"),
    params(("id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order, canceled", body = crate::openapi::OrderAnswer),
        (status = 404, description = "No such order", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Canceled already, or not the owner", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn cancel_order(
    State(app): State<AppState>,
    Caller(caller): Caller,
    Path(order_id): Path<Uuid>,
    headers: HeaderMap,
    key: IdempotencyKey,
    body: JsonBody<Empty>,
) -> Result<Response, ApiError> {
    let time_sale_id = app.stream_of(order_id, "timesale", "order").await?;
    let request = CommandContext::new(&caller, &headers, key, body.hash, "CancelOrder")?.request(
        TimeSaleCommand::CancelOrder { order_id, acting_user: acting(&caller), now: Utc::now() },
        StatusCode::OK,
        move |_: &TimeSale, _| json!({ "orderId": order_id, "timeSaleId": time_sale_id, "status": "CANCELED" }),
    );
    Ok(respond(app.time_sales.execute(time_sale_id, request).await))
}
