//! The read models' typed queries: every SELECT the query API runs, over one read-model
//! schema (a generation's, e.g. `rm_g1`), answering rows as they are stored. Hot values (stock,
//! balances, counts) are the caller's to overlay from Redis ([`crate::hot`]).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::projection::checked_schema;
use crate::ReadModelError;

/// One page of a list and how many rows match in all.
pub type Page<R> = (Vec<R>, i64);

/// Rows `limit` at a time, from `offset`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PolicyRow {
    pub policy_id: Uuid,
    pub title: String,
    pub description: String,
    pub total_quantity: i64,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub discount_type: String,
    pub discount_value: i64,
    pub minimum_order_amount: i64,
    pub maximum_discount_amount: i64,
    pub coupon_expires_at: DateTime<Utc>,
    pub issued_count: i64,
    pub used_count: i64,
    pub created_at: DateTime<Utc>,
    pub discount_budget: Option<i64>,
    pub coupons_per_user: i64,
    /// The budget's tally as of the last projected batch.
    pub discount_granted: i64,
}

const POLICY_COLUMNS: &str = "policy_id, title, description, total_quantity, start_time, end_time, discount_type, \
     discount_value, minimum_order_amount, maximum_discount_amount, coupon_expires_at, issued_count, used_count, created_at, \
     discount_budget, coupons_per_user, discount_granted";

/// A policy's discount terms, as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TermsRow {
    pub discount_type: String,
    pub discount_value: i64,
    pub minimum_order_amount: i64,
    pub maximum_discount_amount: i64,
    pub discount_budget: Option<i64>,
    pub discount_granted: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CouponRow {
    pub coupon_id: Uuid,
    pub policy_id: Uuid,
    pub user_id: i64,
    /// AVAILABLE, RESERVED, USED or CANCELED (revoked); expiry is read from `expires_at`.
    pub state: String,
    pub expires_at: DateTime<Utc>,
    pub order_id: Option<String>,
    pub order_amount: Option<i64>,
    pub discount_amount: Option<i64>,
    pub issued_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    /// Until when a RESERVED coupon is held.
    pub reserved_until: Option<DateTime<Utc>>,
}

const COUPON_COLUMNS: &str =
    "coupon_id, policy_id, user_id, state, expires_at, order_id, order_amount, discount_amount, issued_at, used_at, \
     reserved_until";

/// Which of a user's coupons a list holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponFilter {
    All,
    Available,
    Expired,
    Used,
    Canceled,
}

impl CouponFilter {
    fn sql(self) -> &'static str {
        match self {
            CouponFilter::All => "",
            CouponFilter::Available => "AND state = 'AVAILABLE' AND expires_at > now()",
            CouponFilter::Expired => "AND state = 'AVAILABLE' AND expires_at <= now()",
            CouponFilter::Used => "AND state = 'USED'",
            CouponFilter::Canceled => "AND state = 'CANCELED'",
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryRow {
    pub transaction_id: Uuid,
    /// EARN, USE or CANCEL.
    pub r#type: String,
    pub amount: i64,
    pub description: String,
    pub order_id: Option<String>,
    pub canceled_transaction_id: Option<Uuid>,
    pub balance_after: i64,
    pub occurred_at: DateTime<Utc>,
}

const HISTORY_COLUMNS: &str =
    "transaction_id, type, amount, description, order_id, canceled_transaction_id, balance_after, occurred_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProductRow {
    pub product_id: Uuid,
    pub name: String,
    pub price: i64,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SaleRow {
    pub time_sale_id: Uuid,
    pub product_id: Uuid,
    pub product_price: i64,
    pub discount_price: i64,
    pub quantity: i64,
    /// As of the last projected batch; Redis holds the live value.
    pub remaining: i64,
    /// Units held by open checkout holds, as of the last projected batch.
    pub reserved: i64,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub per_user_limit: Option<i64>,
    pub created_at: DateTime<Utc>,
}

const SALE_COLUMNS: &str =
    "time_sale_id, product_id, product_price, discount_price, quantity, remaining, reserved, \
     start_at, end_at, per_user_limit, created_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    pub order_id: Uuid,
    pub time_sale_id: Uuid,
    pub user_id: i64,
    pub quantity: i64,
    pub unit_price: i64,
    pub total_price: i64,
    /// CREATED or CANCELED.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub canceled_at: Option<DateTime<Utc>>,
}

const ORDER_COLUMNS: &str =
    "order_id, time_sale_id, user_id, quantity, unit_price, total_price, status, created_at, canceled_at";

/// Coupon policies, newest first.
pub async fn policies(
    pool: &PgPool,
    schema: &str,
    window: Window,
) -> Result<Page<PolicyRow>, ReadModelError> {
    page(
        pool,
        schema,
        POLICY_COLUMNS,
        "coupon_policies",
        "created_at DESC, policy_id",
        None,
        window,
    )
    .await
}

pub async fn policy(
    pool: &PgPool,
    schema: &str,
    id: Uuid,
) -> Result<Option<PolicyRow>, ReadModelError> {
    one(
        pool,
        schema,
        POLICY_COLUMNS,
        "coupon_policies WHERE policy_id = $1",
        id,
    )
    .await
}

pub async fn terms(
    pool: &PgPool,
    schema: &str,
    policy_id: Uuid,
) -> Result<Option<TermsRow>, ReadModelError> {
    one(
        pool,
        schema,
        "discount_type, discount_value, minimum_order_amount, maximum_discount_amount, \
         discount_budget, discount_granted",
        "coupon_policies WHERE policy_id = $1",
        policy_id,
    )
    .await
}

pub async fn coupon(
    pool: &PgPool,
    schema: &str,
    id: Uuid,
) -> Result<Option<CouponRow>, ReadModelError> {
    one(
        pool,
        schema,
        COUPON_COLUMNS,
        "coupons WHERE coupon_id = $1",
        id,
    )
    .await
}

/// A user's coupons, newest first.
pub async fn user_coupons(
    pool: &PgPool,
    schema: &str,
    user_id: i64,
    filter: CouponFilter,
    window: Window,
) -> Result<Page<CouponRow>, ReadModelError> {
    let from = format!("coupons WHERE user_id = $1 {}", filter.sql());
    page(
        pool,
        schema,
        COUPON_COLUMNS,
        &from,
        "issued_at DESC, coupon_id",
        Some(user_id),
        window,
    )
    .await
}

/// A user's balance as projected (`None`: no account).
/// A user's balance, with what expires next (amount and when) if anything does.
pub async fn balance(
    pool: &PgPool,
    schema: &str,
    user_id: i64,
) -> Result<Option<(i64, Option<i64>, Option<DateTime<Utc>>)>, ReadModelError> {
    let schema = checked_schema(schema)?;
    Ok(sqlx::query_as(&format!(
        "SELECT balance, expiring, expiring_at FROM {schema}.point_balances WHERE user_id = $1"
    ))
    .bind(user_id)
    .fetch_optional(pool)
    .await?)
}

/// A user's point transactions, newest first.
pub async fn history(
    pool: &PgPool,
    schema: &str,
    user_id: i64,
    window: Window,
) -> Result<Page<HistoryRow>, ReadModelError> {
    page(
        pool,
        schema,
        HISTORY_COLUMNS,
        "point_history WHERE user_id = $1",
        "version DESC",
        Some(user_id),
        window,
    )
    .await
}

pub async fn product(
    pool: &PgPool,
    schema: &str,
    id: Uuid,
) -> Result<Option<ProductRow>, ReadModelError> {
    one(
        pool,
        schema,
        "product_id, name, price, description, created_at",
        "products WHERE product_id = $1",
        id,
    )
    .await
}

/// Flash sales, latest start first.
pub async fn time_sales(
    pool: &PgPool,
    schema: &str,
    window: Window,
) -> Result<Page<SaleRow>, ReadModelError> {
    page(
        pool,
        schema,
        SALE_COLUMNS,
        "time_sales",
        "start_at DESC, time_sale_id",
        None,
        window,
    )
    .await
}

pub async fn time_sale(
    pool: &PgPool,
    schema: &str,
    id: Uuid,
) -> Result<Option<SaleRow>, ReadModelError> {
    one(
        pool,
        schema,
        SALE_COLUMNS,
        "time_sales WHERE time_sale_id = $1",
        id,
    )
    .await
}

pub async fn order(
    pool: &PgPool,
    schema: &str,
    id: Uuid,
) -> Result<Option<OrderRow>, ReadModelError> {
    one(
        pool,
        schema,
        ORDER_COLUMNS,
        "orders WHERE order_id = $1",
        id,
    )
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReservationRow {
    pub reservation_id: Uuid,
    pub time_sale_id: Uuid,
    pub order_id: String,
    pub user_id: i64,
    pub quantity: i64,
    /// HELD, CONFIRMED, RELEASED or EXPIRED.
    pub status: String,
    pub expires_at: DateTime<Utc>,
    pub created_order_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const RESERVATION_COLUMNS: &str = "reservation_id, time_sale_id, order_id, user_id, quantity, \
     status, expires_at, created_order_id, created_at, updated_at";

/// A checkout hold.
pub async fn reservation(
    pool: &PgPool,
    schema: &str,
    id: Uuid,
) -> Result<Option<ReservationRow>, ReadModelError> {
    one(
        pool,
        schema,
        RESERVATION_COLUMNS,
        "reservations WHERE reservation_id = $1",
        id,
    )
    .await
}

/// A user's orders, newest first.
pub async fn user_orders(
    pool: &PgPool,
    schema: &str,
    user_id: i64,
    window: Window,
) -> Result<Page<OrderRow>, ReadModelError> {
    page(
        pool,
        schema,
        ORDER_COLUMNS,
        "orders WHERE user_id = $1",
        "created_at DESC, order_id",
        Some(user_id),
        window,
    )
    .await
}

/// The row of `from` (a table of `schema` with its `WHERE` on `$1`), if any.
async fn one<R>(
    pool: &PgPool,
    schema: &str,
    columns: &str,
    from: &str,
    id: Uuid,
) -> Result<Option<R>, ReadModelError>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let schema = checked_schema(schema)?;
    Ok(
        sqlx::query_as(&format!("SELECT {columns} FROM {schema}.{from}"))
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

/// One page of `columns` of the rows of `from` (a table of `schema`, with its `WHERE`; `$1`
/// is `user` when given) in `order`, and how many rows match.
async fn page<R>(
    pool: &PgPool,
    schema: &str,
    columns: &str,
    from: &str,
    order: &str,
    user: Option<i64>,
    window: Window,
) -> Result<Page<R>, ReadModelError>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let schema = checked_schema(schema)?;
    let next = if user.is_some() { 2 } else { 1 };
    let rows_sql = format!(
        "SELECT {columns} FROM {schema}.{from} ORDER BY {order} LIMIT ${next} OFFSET ${}",
        next + 1
    );
    let count_sql = format!("SELECT count(*) FROM {schema}.{from}");
    let mut rows = sqlx::query_as(&rows_sql);
    let mut count = sqlx::query_scalar(&count_sql);
    if let Some(user) = user {
        rows = rows.bind(user);
        count = count.bind(user);
    }
    let rows = rows
        .bind(window.limit)
        .bind(window.offset)
        .fetch_all(pool)
        .await?;
    let total: i64 = count.fetch_one(pool).await?;
    Ok((rows, total))
}
