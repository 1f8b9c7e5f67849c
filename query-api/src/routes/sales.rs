//! Products, time sales and orders.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use domain::time_sale::TimeSaleStatus;
use problem::{Path, Query};
use readmodel::hot::keys;
use serde_json::{json, Value};
use uuid::Uuid;

use auth::http::Caller;

use crate::{AppState, QueryError};

use super::{fetch_page, paged, user, Page};

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
        (status = 503, description = "A dependency is down, the read is not consistent yet, or the aggregate's read model is faulted (PROJECTION_FAULTED)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn product(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, QueryError> {
    state.check_aggregate(id, "product")?;
    let live = state.live();
    let s = &live.schema;
    let row: (Uuid, String, i64, String, DateTime<Utc>) = sqlx::query_as(&format!(
        "SELECT product_id, name, price, description, created_at FROM {s}.products WHERE product_id = $1"
    ))
    .bind(id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or(QueryError::NotFound("product"))?;
    Ok(Json(
        json!({ "productId": row.0, "name": row.1, "price": row.2, "description": row.3, "createdAt": row.4 }),
    ))
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SaleRow {
    time_sale_id: Uuid,
    product_id: Uuid,
    product_price: i64,
    discount_price: i64,
    quantity: i64,
    remaining: i64,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    per_user_limit: Option<i64>,
    created_at: DateTime<Utc>,
}

const SALE_COLUMNS: &str =
    "time_sale_id, product_id, product_price, discount_price, quantity, remaining, start_at, \
     end_at, per_user_limit, created_at";

async fn sale_json(state: &AppState, row: SaleRow) -> Value {
    let remaining = state
        .hot
        .field(
            &keys::stock(&state.live().prefix, row.time_sale_id),
            "remaining",
        )
        .await
        .unwrap_or(row.remaining);
    sale_value(&row, remaining)
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
        (status = 503, description = "A dependency is down, the read is not consistent yet, or the aggregate's read model is faulted (PROJECTION_FAULTED)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn time_sales(
    State(state): State<AppState>,
    Query(q): Query<Page>,
) -> Result<Json<Value>, QueryError> {
    let (page, limit, offset) = q.bounds()?;
    let (rows, total): (Vec<SaleRow>, i64) = fetch_page(
        &state,
        SALE_COLUMNS,
        "time_sales",
        "start_at DESC, time_sale_id",
        None,
        (limit, offset),
    )
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(sale_json(&state, row).await);
    }
    Ok(paged(items, page, limit, total))
}

#[utoipa::path(
    get,
    path = "/api/v1/time-sales/{id}",
    tag = "sales",
    summary = "A flash sale with its live stock",
    params(("id" = Uuid, Path, description = "The sale's id")),
    responses(
        (status = 200, description = "Found", body = crate::openapi::TimeSale),
        (status = 503, description = "A dependency is down, the read is not consistent yet, or the aggregate's read model is faulted (PROJECTION_FAULTED)", body = problem::openapi::Problem, content_type = "application/problem+json"),
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
    let s = &live.schema;
    let row: SaleRow = sqlx::query_as(&format!(
        "SELECT {SALE_COLUMNS} FROM {s}.time_sales WHERE time_sale_id = $1"
    ))
    .bind(id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or(QueryError::NotFound("time sale"))?;
    let value = sale_value(&row, hot.unwrap_or(row.remaining));
    state.sales.insert(live.number, id, row);
    Ok(Json(value))
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    order_id: Uuid,
    time_sale_id: Uuid,
    user_id: i64,
    quantity: i64,
    unit_price: i64,
    total_price: i64,
    status: String,
    created_at: DateTime<Utc>,
    canceled_at: Option<DateTime<Utc>>,
}

const ORDER_COLUMNS: &str =
    "order_id, time_sale_id, user_id, quantity, unit_price, total_price, status, created_at, canceled_at";

impl OrderRow {
    fn json(&self) -> Value {
        json!({
            "orderId": self.order_id, "timeSaleId": self.time_sale_id, "userId": self.user_id,
            "quantity": self.quantity, "unitPrice": self.unit_price, "totalPrice": self.total_price,
            "status": self.status, "createdAt": self.created_at, "canceledAt": self.canceled_at,
        })
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}",
    tag = "sales",
    summary = "An order (its buyer, a service or an admin)",
    params(("id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "Found", body = crate::openapi::Order),
        (status = 503, description = "A dependency is down, the read is not consistent yet, or the aggregate's read model is faulted (PROJECTION_FAULTED)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn order(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, QueryError> {
    let live = state.live();
    let s = &live.schema;
    let row: Option<OrderRow> = sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM {s}.orders WHERE order_id = $1"
    ))
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    let Some(row) = row else {
        state.check_missing_entity(id, "timesale", "order").await?;
        return Err(QueryError::NotFound("order"));
    };
    caller.require_user(row.user_id)?;
    state.check_aggregate(row.time_sale_id, "order")?;
    Ok(Json(row.json()))
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/user/{user_id}",
    tag = "sales",
    summary = "A user's orders, newest first",
    params(("user_id" = i64, Path, description = "The user's id"), super::Page),
    responses(
        (status = 200, description = "Found", body = crate::openapi::Paged<crate::openapi::Order>),
        (status = 503, description = "A dependency is down, the read is not consistent yet, or the aggregate's read model is faulted (PROJECTION_FAULTED)", body = problem::openapi::Problem, content_type = "application/problem+json"),
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
    let (rows, total): (Vec<OrderRow>, i64) = fetch_page(
        &state,
        ORDER_COLUMNS,
        "orders WHERE user_id = $1",
        "created_at DESC, order_id",
        Some(user_id),
        (limit, offset),
    )
    .await?;
    Ok(paged(
        rows.iter().map(OrderRow::json).collect(),
        page,
        limit,
        total,
    ))
}
