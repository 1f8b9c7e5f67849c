//! Products, time sales and orders.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use domain::time_sale::{OrderStatus, ReservationStatus, TimeSaleStatus};
use problem::{Path, Query};
use readmodel::hot::keys;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use auth::http::Caller;

use crate::{AppState, QueryError};

use readmodel::queries::{self, OrderRow, ReservationRow, SaleRow, Window};

use super::{paged, recorded, user, Page, Paged};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Product {
    product_id: Uuid,
    name: String,
    price: i64,
    description: String,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TimeSale {
    time_sale_id: Uuid,
    product_id: Uuid,
    product_price: i64,
    discount_price: i64,
    quantity: i64,
    /// Units anyone can still buy or hold.
    remaining_quantity: i64,
    /// Units held by open checkout holds: not available, not sold yet.
    reserved_quantity: i64,
    /// Units in orders (including those confirmed from holds).
    sold_quantity: i64,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    per_user_limit: Option<i64>,
    status: TimeSaleStatus,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Order {
    order_id: Uuid,
    time_sale_id: Uuid,
    user_id: i64,
    quantity: i64,
    unit_price: i64,
    total_price: i64,
    status: OrderStatus,
    created_at: DateTime<Utc>,
    canceled_at: Option<DateTime<Utc>>,
}

/// A checkout hold.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Reservation {
    reservation_id: Uuid,
    time_sale_id: Uuid,
    /// The shop's order id the hold was made for.
    order_id: String,
    user_id: i64,
    quantity: i64,
    status: ReservationStatus,
    expires_at: DateTime<Utc>,
    /// The order a confirmation created.
    created_order_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/products/{id}", get(product))
        .route("/api/v1/time-sales", get(time_sales))
        .route("/api/v1/time-sales/{id}", get(time_sale))
        .route("/api/v1/orders/{id}", get(order))
        .route("/api/v1/reservations/{id}", get(reservation))
        .route("/api/v1/orders/user/{user_id}", get(user_orders))
}

#[utoipa::path(
    get,
    path = "/api/v1/products/{id}",
    tag = "sales",
    summary = "A product",
    params(("id" = Uuid, Path, description = "The product's id")),
    responses(
        (status = 200, description = "Found", body = Product),
    )
)]
async fn product(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<Product>, QueryError> {
    state.check_aggregate(id, "product")?;
    let row = state
        .db(queries::product(&state.pool, &state.live().schema, id))
        .await?
        .ok_or(QueryError::NotFound("product"))?;
    Ok(Json(Product {
        product_id: row.product_id,
        name: row.name,
        price: row.price,
        description: row.description,
        created_at: row.created_at,
    }))
}

/// Sales as the API answers them, with their live stock from Redis (one round trip for them
/// all; the projected stock where Redis has none).
async fn time_sale_views(state: &AppState, rows: Vec<SaleRow>) -> Vec<TimeSale> {
    let prefix = state.live().prefix.clone();
    let keys: Vec<String> = rows
        .iter()
        .map(|row| keys::stock(&prefix, row.time_sale_id))
        .collect();
    let stock = state.hot.hashes(&keys, &["remaining", "reserved"]).await;
    rows.iter()
        .zip(stock)
        // Both hot values, or the projected row's (a key written before holds has no
        // `reserved`; mixing the two would miscount).
        .map(|(row, hot)| match hot[..] {
            [Some(remaining), Some(reserved)] => sale_value(row, Some(remaining), Some(reserved)),
            _ => sale_value(row, None, None),
        })
        .collect()
}

/// A sale with its stock: Redis's live values where it has them, else the projected row's.
fn sale_value(row: &SaleRow, remaining: Option<i64>, reserved: Option<i64>) -> TimeSale {
    sale_at(row, remaining, reserved, Utc::now())
}

/// [`sale_value`] with its status at `now`.
pub(super) fn sale_at(
    row: &SaleRow,
    remaining: Option<i64>,
    reserved: Option<i64>,
    now: DateTime<Utc>,
) -> TimeSale {
    let remaining = remaining.unwrap_or(row.remaining);
    let reserved = reserved.unwrap_or(row.reserved);
    let status = TimeSaleStatus::at(
        row.start_at,
        row.end_at,
        u32::try_from(remaining).unwrap_or(0),
        now,
    );
    TimeSale {
        time_sale_id: row.time_sale_id,
        product_id: row.product_id,
        product_price: row.product_price,
        discount_price: row.discount_price,
        quantity: row.quantity,
        remaining_quantity: remaining,
        reserved_quantity: reserved,
        sold_quantity: row.quantity - remaining - reserved,
        start_at: row.start_at,
        end_at: row.end_at,
        per_user_limit: row.per_user_limit,
        status,
        created_at: row.created_at,
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/time-sales",
    tag = "sales",
    summary = "Flash sales, newest first, with their live stock",
    params(super::Page),
    responses(
        (status = 200, description = "Found", body = Paged<TimeSale>),
    )
)]
async fn time_sales(
    State(state): State<AppState>,
    Query(q): Query<Page>,
) -> Result<Json<Paged<TimeSale>>, QueryError> {
    let (page, limit, offset) = q.bounds()?;
    let (rows, total) = state
        .db(queries::time_sales(
            &state.pool,
            &state.live().schema,
            Window { limit, offset },
        ))
        .await?;
    Ok(paged(
        time_sale_views(&state, rows).await,
        page,
        limit,
        total,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/time-sales/{id}",
    tag = "sales",
    summary = "A flash sale with its live stock",
    params(("id" = Uuid, Path, description = "The sale's id")),
    responses(
        (status = 200, description = "Found", body = TimeSale),
    )
)]
async fn time_sale(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<TimeSale>, QueryError> {
    state.check_aggregate(id, "time sale")?;
    let live = state.live();
    // Only the stock of a sale changes (what is left and what is held): with both from Redis,
    // the rest comes from the cache of sale rows (per generation); PostgreSQL is read on a
    // miss of any.
    let key = keys::stock(&live.prefix, id);
    let hot = state.hot.hashes(&[key], &["remaining", "reserved"]).await;
    let (remaining, reserved) = match hot.first().map(Vec::as_slice) {
        Some(&[remaining, reserved]) => (remaining, reserved),
        _ => (None, None),
    };
    // Both hot values, or PostgreSQL's row (a key written before holds has no `reserved`).
    if remaining.is_some() && reserved.is_some() {
        if let Some(row) = state.sales.get(live.number, id) {
            return Ok(Json(sale_value(&row, remaining, reserved)));
        }
    }
    let row = state
        .db(queries::time_sale(&state.pool, &live.schema, id))
        .await?
        .ok_or(QueryError::NotFound("time sale"))?;
    let (remaining, reserved) = match (remaining, reserved) {
        (Some(remaining), Some(reserved)) => (Some(remaining), Some(reserved)),
        _ => (None, None),
    };
    let value = sale_value(&row, remaining, reserved);
    state.sales.insert(live.number, id, row);
    Ok(Json(value))
}

/// An order as the API answers it.
fn order_view(row: &OrderRow) -> Result<Order, QueryError> {
    Ok(Order {
        order_id: row.order_id,
        time_sale_id: row.time_sale_id,
        user_id: row.user_id,
        quantity: row.quantity,
        unit_price: row.unit_price,
        total_price: row.total_price,
        status: recorded(&row.status)?,
        created_at: row.created_at,
        canceled_at: row.canceled_at,
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}",
    tag = "sales",
    summary = "An order (its buyer, a service or an admin)",
    params(("id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "Found", body = Order),
    )
)]
async fn order(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Order>, QueryError> {
    let row = state
        .db(queries::order(&state.pool, &state.live().schema, id))
        .await?;
    let Some(row) = row else {
        state.check_missing_entity(id, "timesale", "order").await?;
        return Err(QueryError::NotFound("order"));
    };
    caller.require_user(row.user_id)?;
    state.check_aggregate(row.time_sale_id, "order")?;
    Ok(Json(order_view(&row)?))
}

fn reservation_view(row: &ReservationRow) -> Result<Reservation, QueryError> {
    Ok(Reservation {
        reservation_id: row.reservation_id,
        time_sale_id: row.time_sale_id,
        order_id: row.order_id.clone(),
        user_id: row.user_id,
        quantity: row.quantity,
        status: recorded(&row.status)?,
        expires_at: row.expires_at,
        created_order_id: row.created_order_id,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/reservations/{id}",
    tag = "sales",
    summary = "A checkout hold (its buyer, a service or an admin)",
    params(("id" = Uuid, Path, description = "The reservation's id")),
    responses(
        (status = 200, description = "Found", body = Reservation),
    )
)]
async fn reservation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Reservation>, QueryError> {
    let row = state
        .db(queries::reservation(&state.pool, &state.live().schema, id))
        .await?;
    let Some(row) = row else {
        state
            .check_missing_entity(id, "timesale", "reservation")
            .await?;
        return Err(QueryError::NotFound("reservation"));
    };
    caller.require_user(row.user_id)?;
    state.check_aggregate(row.time_sale_id, "reservation")?;
    Ok(Json(reservation_view(&row)?))
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/user/{user_id}",
    tag = "sales",
    summary = "A user's orders, newest first",
    params(("user_id" = i64, Path, minimum = 1, description = "The user's id"), super::Page),
    responses(
        (status = 200, description = "Found", body = Paged<Order>),
    )
)]
async fn user_orders(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(user_id): Path<i64>,
    Query(q): Query<Page>,
) -> Result<Json<Paged<Order>>, QueryError> {
    let user_id = user(user_id)?.get();
    caller.require_user(user_id)?;
    state
        .check_user("timesale", user_id, "user's orders")
        .await?;
    let (page, limit, offset) = q.bounds()?;
    let window = Window { limit, offset };
    let (rows, total) = state
        .db(queries::user_orders(
            &state.pool,
            &state.live().schema,
            user_id,
            window,
        ))
        .await?;
    Ok(paged(
        rows.iter().map(order_view).collect::<Result<_, _>>()?,
        page,
        limit,
        total,
    ))
}
