//! Products, time sales and orders.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use domain::time_sale::TimeSaleStatus;
use problem::{Path, Query};
use readmodel::hot::keys;
use serde_json::{json, Value};
use uuid::Uuid;

use auth::http::Caller;

use crate::{AppState, QueryError};

use readmodel::queries::{self, OrderRow, SaleRow, Window};

use super::{paged, user, Page};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/products/{id}", get(product))
        .route("/api/v1/time-sales", get(time_sales))
        .route("/api/v1/time-sales/{id}", get(time_sale))
        .route("/api/v1/orders/{id}", get(order))
        .route("/api/v1/orders/user/{user_id}", get(user_orders))
}

#[utoipa::path(
    get,
    path = "/api/v1/products/{id}",
    tag = "sales",
    summary = "A product",
    params(("id" = Uuid, Path, description = "The product's id")),
    responses(
        (status = 200, description = "Found", body = crate::openapi::Product),
    )
)]
async fn product(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, QueryError> {
    state.check_aggregate(id, "product")?;
    let row = queries::product(&state.pool, &state.live().schema, id)
        .await?
        .ok_or(QueryError::NotFound("product"))?;
    Ok(Json(json!({
        "productId": row.product_id, "name": row.name, "price": row.price,
        "description": row.description, "createdAt": row.created_at,
    })))
}

/// Sales as the API answers them, with their live stock from Redis (one round trip for them
/// all; the projected stock where Redis has none).
async fn sales_json(state: &AppState, rows: Vec<SaleRow>) -> Vec<Value> {
    let prefix = state.live().prefix.clone();
    let reads: Vec<(String, &str)> = rows
        .iter()
        .map(|row| (keys::stock(&prefix, row.time_sale_id), "remaining"))
        .collect();
    let stock = state.hot.fields(&reads).await;
    rows.iter()
        .zip(stock)
        .map(|(row, remaining)| sale_value(row, remaining.unwrap_or(row.remaining)))
        .collect()
}

fn sale_value(row: &SaleRow, remaining: i64) -> Value {
    let status = TimeSaleStatus::at(
        row.start_at,
        row.end_at,
        u32::try_from(remaining).unwrap_or(0),
        Utc::now(),
    );
    json!({
        "timeSaleId": row.time_sale_id, "productId": row.product_id, "productPrice": row.product_price,
        "discountPrice": row.discount_price, "quantity": row.quantity, "remainingQuantity": remaining,
        "soldQuantity": row.quantity - remaining, "startAt": row.start_at, "endAt": row.end_at,
        "perUserLimit": row.per_user_limit, "status": status, "createdAt": row.created_at,
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/time-sales",
    tag = "sales",
    summary = "Flash sales, newest first, with their live stock",
    params(super::Page),
    responses(
        (status = 200, description = "Found", body = crate::openapi::Paged<crate::openapi::TimeSale>),
    )
)]
async fn time_sales(
    State(state): State<AppState>,
    Query(q): Query<Page>,
) -> Result<Json<Value>, QueryError> {
    let (page, limit, offset) = q.bounds()?;
    let (rows, total) =
        queries::time_sales(&state.pool, &state.live().schema, Window { limit, offset }).await?;
    Ok(paged(sales_json(&state, rows).await, page, limit, total))
}

#[utoipa::path(
    get,
    path = "/api/v1/time-sales/{id}",
    tag = "sales",
    summary = "A flash sale with its live stock",
    params(("id" = Uuid, Path, description = "The sale's id")),
    responses(
        (status = 200, description = "Found", body = crate::openapi::TimeSale),
    )
)]
async fn time_sale(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, QueryError> {
    state.check_aggregate(id, "time sale")?;
    let live = state.live();
    // Only the stock of a sale changes: with the stock from Redis, the rest comes from the
    // cache of sale rows (per generation); PostgreSQL is read on a miss of either.
    let hot = state
        .hot
        .field(&keys::stock(&live.prefix, id), "remaining")
        .await;
    if let Some(remaining) = hot {
        if let Some(row) = state.sales.get(live.number, id) {
            return Ok(Json(sale_value(&row, remaining)));
        }
    }
    let row = queries::time_sale(&state.pool, &live.schema, id)
        .await?
        .ok_or(QueryError::NotFound("time sale"))?;
    let value = sale_value(&row, hot.unwrap_or(row.remaining));
    state.sales.insert(live.number, id, row);
    Ok(Json(value))
}

/// An order as the API answers it.
fn order_json(row: &OrderRow) -> Value {
    json!({
        "orderId": row.order_id, "timeSaleId": row.time_sale_id, "userId": row.user_id,
        "quantity": row.quantity, "unitPrice": row.unit_price, "totalPrice": row.total_price,
        "status": row.status, "createdAt": row.created_at, "canceledAt": row.canceled_at,
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}",
    tag = "sales",
    summary = "An order (its buyer, a service or an admin)",
    params(("id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "Found", body = crate::openapi::Order),
    )
)]
async fn order(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, QueryError> {
    let row = queries::order(&state.pool, &state.live().schema, id).await?;
    let Some(row) = row else {
        state.check_missing_entity(id, "timesale", "order").await?;
        return Err(QueryError::NotFound("order"));
    };
    caller.require_user(row.user_id)?;
    state.check_aggregate(row.time_sale_id, "order")?;
    Ok(Json(order_json(&row)))
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/user/{user_id}",
    tag = "sales",
    summary = "A user's orders, newest first",
    params(("user_id" = i64, Path, description = "The user's id"), super::Page),
    responses(
        (status = 200, description = "Found", body = crate::openapi::Paged<crate::openapi::Order>),
    )
)]
async fn user_orders(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(user_id): Path<i64>,
    Query(q): Query<Page>,
) -> Result<Json<Value>, QueryError> {
    let user_id = user(user_id)?.get();
    caller.require_user(user_id)?;
    state
        .check_user("timesale", user_id, "user's orders")
        .await?;
    let (page, limit, offset) = q.bounds()?;
    let window = Window { limit, offset };
    let (rows, total) =
        queries::user_orders(&state.pool, &state.live().schema, user_id, window).await?;
    Ok(paged(
        rows.iter().map(order_json).collect(),
        page,
        limit,
        total,
    ))
}
