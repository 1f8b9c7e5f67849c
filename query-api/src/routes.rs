//! The read endpoints of docs/product.md. Every query reads the read-model schema; hot values
//! (balances, remaining stock, issued/used counts) come from Redis when it has them.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use domain::coupon::{
    check_applicable, Coupon, CouponState, CouponStatus, DiscountTerms, DiscountType,
};
use domain::time_sale::TimeSaleStatus;
use domain::values::{Money, Text, UserId};
use problem::{Path, Query};
use readmodel::hot::keys;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use auth::http::Caller;

use crate::{AppState, QueryError};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/coupon-policies", get(policies))
        .route("/api/v1/coupon-policies/{id}", get(policy))
        .route("/api/v1/coupons/{id}", get(coupon))
        .route("/api/v1/coupons/{id}/quote", get(quote))
        .route("/api/v1/coupons/user/{user_id}", get(user_coupons))
        .route("/api/v1/points/users/{user_id}/balance", get(balance))
        .route("/api/v1/points/users/{user_id}/history", get(history))
        .route("/api/v1/products/{id}", get(product))
        .route("/api/v1/time-sales", get(time_sales))
        .route("/api/v1/time-sales/{id}", get(time_sale))
        .route("/api/v1/orders/{id}", get(order))
        .route("/api/v1/orders/user/{user_id}", get(user_orders))
}

/// The last page a list answers: past 100,000 pages of 100 a list is not browsed, it is
/// scanned, and the offset would make PostgreSQL read every row before it.
const MAX_PAGE: i64 = 100_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    page: Option<i64>,
    limit: Option<i64>,
}

/// A user's coupons: a page, and optionally only those of one status (the one list that
/// filters; any other list refuses `status` as an unknown parameter).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CouponPage {
    page: Option<i64>,
    limit: Option<i64>,
    status: Option<String>,
}

impl Page {
    /// (page, limit, offset): page from 1, limit 1–100 (default 20).
    fn bounds(&self) -> Result<(i64, i64, i64), QueryError> {
        let page = self.page.unwrap_or(1);
        let limit = self.limit.unwrap_or(20);
        if page < 1 {
            return Err(QueryError::BadRequest {
                detail: "page must be at least 1".into(),
                field: "page",
            });
        }
        if !(1..=100).contains(&limit) {
            return Err(QueryError::BadRequest {
                detail: "limit must be between 1 and 100".into(),
                field: "limit",
            });
        }
        if page > MAX_PAGE {
            return Err(QueryError::BadRequest {
                detail: format!("page must be at most {MAX_PAGE}"),
                field: "page",
            });
        }
        Ok((page, limit, (page - 1) * limit))
    }
}

fn paged(items: Vec<Value>, page: i64, limit: i64, total: i64) -> Json<Value> {
    Json(json!({ "items": items, "page": page, "limit": limit, "total": total }))
}

/// One page of a list: `columns` of the rows of `from` (a table of the live read-model
/// schema, with its `WHERE`; `$1` is `user` when given) in `order`, and how many rows match.
async fn fetch_page<R>(
    state: &AppState,
    columns: &str,
    from: &str,
    order: &str,
    user: Option<i64>,
    (limit, offset): (i64, i64),
) -> Result<(Vec<R>, i64), QueryError>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let live = state.live();
    let s = &live.schema;
    let next = if user.is_some() { 2 } else { 1 };
    let rows_sql = format!(
        "SELECT {columns} FROM {s}.{from} ORDER BY {order} LIMIT ${next} OFFSET ${}",
        next + 1
    );
    let count_sql = format!("SELECT count(*) FROM {s}.{from}");
    let mut rows = sqlx::query_as(&rows_sql);
    let mut count = sqlx::query_scalar(&count_sql);
    if let Some(user) = user {
        rows = rows.bind(user);
        count = count.bind(user);
    }
    let rows = rows.bind(limit).bind(offset).fetch_all(&state.pool).await?;
    let total: i64 = count.fetch_one(&state.pool).await?;
    Ok((rows, total))
}

fn user(raw: i64) -> Result<UserId, QueryError> {
    UserId::parse(raw, "userId").map_err(|_| QueryError::BadRequest {
        detail: "userId must be a positive integer".into(),
        field: "userId",
    })
}

// ---- coupon policies and coupons ----

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QuoteQuery {
    order_amount: i64,
    user_id: Option<i64>,
}

/// Whether a coupon applies to an order, the discount, and why not — the domain's own rule
/// (`check_applicable`, the one `use` runs) over the read model. Changes nothing.
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

// ---- points ----

async fn balance(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(user_id): Path<i64>,
) -> Result<Json<Value>, QueryError> {
    let user_id = user(user_id)?.get();
    caller.require_user(user_id)?;
    state.check_account(user_id)?;
    let key = keys::balance(&state.live().prefix, user_id);
    let balance = match state.hot.field(&key, "balance").await {
        Some(balance) => balance,
        None => {
            let live = state.live();
            let s = &live.schema;
            sqlx::query_scalar(&format!(
                "SELECT balance FROM {s}.point_balances WHERE user_id = $1"
            ))
            .bind(user_id)
            .fetch_optional(&state.pool)
            .await?
            .unwrap_or(0)
        }
    };
    Ok(Json(json!({ "userId": user_id, "balance": balance })))
}

#[derive(sqlx::FromRow)]
struct HistoryRow {
    transaction_id: Uuid,
    r#type: String,
    amount: i64,
    description: String,
    order_id: Option<String>,
    canceled_transaction_id: Option<Uuid>,
    balance_after: i64,
    occurred_at: DateTime<Utc>,
}

async fn history(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(user_id): Path<i64>,
    Query(q): Query<Page>,
) -> Result<Json<Value>, QueryError> {
    let user_id = user(user_id)?.get();
    caller.require_user(user_id)?;
    state.check_account(user_id)?;
    let (page, limit, offset) = q.bounds()?;
    let (rows, total): (Vec<HistoryRow>, i64) = fetch_page(
        &state,
        "transaction_id, type, amount, description, order_id, canceled_transaction_id, balance_after, occurred_at",
        "point_history WHERE user_id = $1",
        "version DESC",
        Some(user_id),
        (limit, offset),
    )
    .await?;
    let items = rows
        .into_iter()
        .map(|r| {
            json!({
                "transactionId": r.transaction_id, "type": r.r#type, "amount": r.amount,
                "description": r.description, "orderId": r.order_id,
                "canceledTransactionId": r.canceled_transaction_id,
                "balanceAfter": r.balance_after, "occurredAt": r.occurred_at,
            })
        })
        .collect();
    let mut body = paged(items, page, limit, total);
    body["userId"] = json!(user_id);
    Ok(body)
}

// ---- products, time sales, orders ----

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
