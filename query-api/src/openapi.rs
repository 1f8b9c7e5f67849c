//! The query API's OpenAPI 3.1 document (ADR 12), built from the handlers' `#[utoipa::path]`
//! annotations, with the answers' shapes below; served with Swagger UI at `/api/docs/query`
//! (`/api/docs` redirects there) and checked in CI by openapi-spec-validator and schemathesis
//! against the running API.
#![allow(dead_code)] // The answer types describe JSON the handlers build; they are never built.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::openapi::{ObjectBuilder, Type};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::routes;

/// Where Swagger UI is served (the document at `{DOCS}/openapi.json`).
pub const DOCS: &str = "/api/docs/query";

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Promotion query API",
        description = "Every read of the promotion back end, from the read models: Redis first \
                       for hot values, PostgreSQL otherwise. Send a command's `position` as \
                       `X-Min-Position` to read your own write.",
        version = env!("CARGO_PKG_VERSION"),
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        routes::coupons::policies,
        routes::coupons::policy,
        routes::coupons::coupon,
        routes::coupons::quote,
        routes::coupons::user_coupons,
        routes::points::balance,
        routes::points::history,
        routes::sales::product,
        routes::sales::time_sales,
        routes::sales::time_sale,
        routes::sales::order,
        routes::sales::user_orders,
    ),
    modifiers(&Consistency, &CONVENTIONS),
    tags(
        (name = "coupons", description = "Coupon policies, coupons and quotes"),
        (name = "points", description = "Balances and histories"),
        (name = "sales", description = "Products, flash sales and orders"),
    )
)]
pub struct ApiDoc;

const CONVENTIONS: problem::openapi::Conventions = problem::openapi::Conventions { open: &[] };

/// The document, as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Read-your-writes on every read: `X-Min-Position` in, `X-Projection-Position` out, and the
/// 404 and 503 every read can answer.
#[derive(Debug)]
struct Consistency;

impl utoipa::Modify for Consistency {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use problem::openapi::{answer_header, header_param, problem_answer};
        for (path, item) in openapi.paths.paths.iter_mut() {
            let Some(operation) = item.get.as_mut() else {
                continue;
            };
            header_param(
                operation,
                "X-Min-Position",
                "A log position a command answered: the read waits (up to 2 s) until the read \
                 models have reached it, else 503 NOT_YET_CONSISTENT. A position beyond the \
                 log's end is 400.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            );
            // What a path names (`{id}`, `{user_id}`) may not exist; a whole list always does.
            if path.contains('{') {
                problem_answer(operation, "404", "No such resource");
            }
            problem_answer(
                operation,
                "503",
                "A dependency is down, X-Min-Position was not reached in time \
                 (NOT_YET_CONSISTENT), or the aggregate's read model is faulted \
                 (PROJECTION_FAULTED): retry after `Retry-After`",
            );
            answer_header(
                operation,
                |status| status == "200",
                "X-Projection-Position",
                "The read models' position this answer was read at (with X-Min-Position)",
                ObjectBuilder::new().schema_type(Type::Integer),
            );
        }
    }
}

/// A coupon policy, with its live counts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub policy_id: Uuid,
    pub title: String,
    pub description: String,
    pub total_quantity: i64,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    /// PERCENTAGE or FIXED_AMOUNT.
    pub discount_type: String,
    pub discount_value: i64,
    pub minimum_order_amount: i64,
    pub maximum_discount_amount: i64,
    pub coupon_expires_at: DateTime<Utc>,
    pub issued_count: i64,
    pub used_count: i64,
    pub remaining_quantity: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Coupon {
    pub coupon_id: Uuid,
    pub policy_id: Uuid,
    pub user_id: i64,
    /// AVAILABLE, USED, EXPIRED or CANCELED (revoked).
    pub status: String,
    pub expires_at: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub order_id: Option<String>,
    pub order_amount: Option<i64>,
    pub discount_amount: Option<i64>,
}

/// Whether a coupon applies to an order, and the discount; changes nothing.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quote {
    pub coupon_id: Uuid,
    pub order_amount: i64,
    pub applicable: bool,
    pub discount_amount: i64,
    pub final_amount: i64,
    /// Why not (a refusal code such as EXPIRED, BELOW_MINIMUM, NOT_OWNER), null when it applies.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    pub user_id: i64,
    pub balance: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub transaction_id: Uuid,
    /// EARN, USE or CANCEL.
    #[serde(rename = "type")]
    pub kind: String,
    pub amount: i64,
    pub description: String,
    pub order_id: Option<String>,
    pub canceled_transaction_id: Option<Uuid>,
    pub balance_after: i64,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub product_id: Uuid,
    pub name: String,
    pub price: i64,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeSale {
    pub time_sale_id: Uuid,
    pub product_id: Uuid,
    pub product_price: i64,
    pub discount_price: i64,
    pub quantity: i64,
    pub remaining_quantity: i64,
    pub sold_quantity: i64,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub per_user_limit: Option<i64>,
    /// SCHEDULED, ACTIVE, SOLD_OUT or ENDED.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
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

/// One page of a list: `page` from 1, `limit` 1–100, `total` matching rows.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paged<T: ToSchema> {
    pub items: Vec<T>,
    pub page: i64,
    pub limit: i64,
    pub total: i64,
}

/// A page of a user's point history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub items: Vec<HistoryEntry>,
    pub page: i64,
    pub limit: i64,
    pub total: i64,
    pub user_id: i64,
}
