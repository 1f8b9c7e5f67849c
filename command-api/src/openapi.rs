//! The command API's OpenAPI 3.1 document (ADR 12), built from the handlers' `#[utoipa::path]`
//! annotations and the request types, with the answers' shapes below; served with Swagger UI
//! at `/api/docs/command` (`/api/docs` redirects there) and checked in CI by
//! openapi-spec-validator and schemathesis against the running API.
#![allow(dead_code)] // The answer types describe JSON the handlers build; they are never built.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{ObjectBuilder, Type};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::routes;

/// Where Swagger UI is served (the document at `{DOCS}/openapi.json`).
pub const DOCS: &str = "/api/docs/command";

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Promotion command API",
        description = "Every write of the promotion back end: coupon policies and coupons, point \
                       accounts, products, flash sales and their orders; sign-up and sign-in. \
                       Each command answers the log `position` of its events: send it as \
                       `X-Min-Position` to the query API to read your own write.",
        version = env!("CARGO_PKG_VERSION"),
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        routes::accounts::register,
        routes::accounts::login,
        routes::accounts::me,
        routes::coupons::create_policy,
        routes::coupons::issue,
        routes::coupons::use_coupon,
        routes::coupons::cancel_use,
        routes::coupons::revoke,
        routes::points::earn,
        routes::points::spend,
        routes::points::cancel,
        routes::sales::create_product,
        routes::sales::create_time_sale,
        routes::sales::place_order,
        routes::sales::cancel_order,
    ),
    modifiers(&Shared, &CONVENTIONS),
    tags(
        (name = "accounts", description = "Sign-up, sign-in and the caller's identity"),
        (name = "coupons", description = "Coupon policies (campaigns) and their coupons"),
        (name = "points", description = "Loyalty point accounts"),
        (name = "sales", description = "Products, flash sales and orders"),
    )
)]
pub struct ApiDoc;

/// Routes that take no token.
const OPEN: &[&str] = &["/api/v1/auth/register", "/api/v1/auth/login"];
const CONVENTIONS: problem::openapi::Conventions = problem::openapi::Conventions { open: OPEN };

/// The document, as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// What every command (each POST behind the gate) takes and answers: `Idempotency-Key`, and
/// `Idempotent-Replayed` on an answer sent again for a key.
#[derive(Debug)]
struct Shared;

impl utoipa::Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if OPEN.contains(&path.as_str()) {
                continue;
            }
            if let Some(operation) = item.post.as_mut() {
                idempotent(operation);
            }
        }
    }
}

fn idempotent(operation: &mut Operation) {
    use problem::openapi::{answer_header, header_param, problem_answer};
    header_param(
        operation,
        "Idempotency-Key",
        "1 to 255 visible ASCII characters. A retry with the same key and body gets the \
         first answer again (kept 24 h); the same key with another body is 409.",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(255)),
    );
    problem_answer(
        operation,
        "409",
        "The Idempotency-Key came with another body, or the aggregate changed underneath",
    );
    answer_header(
        operation,
        |status| status.starts_with('2'),
        "Idempotent-Replayed",
        "`true` when this is the stored answer to an earlier request with the same key",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["true"])),
    );
}

/// Every command's answer carries where its events landed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCreated {
    pub policy_id: Uuid,
    /// The aggregate's version after the command.
    pub version: i64,
    /// The log position of the command's last event (0 when it recorded none).
    pub position: i64,
}

/// A coupon after a command: issued, used, canceled or revoked.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CouponAnswer {
    pub coupon_id: Option<Uuid>,
    pub policy_id: Uuid,
    pub user_id: Option<i64>,
    /// AVAILABLE, USED, EXPIRED, REVOKED or CANCELED (the use undone: AVAILABLE again).
    pub status: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub order_id: Option<String>,
    pub order_amount: Option<i64>,
    pub discount_amount: Option<i64>,
    pub version: i64,
    pub position: i64,
}

/// A point transaction and the balance right after it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PointEntry {
    pub transaction_id: Uuid,
    pub user_id: i64,
    /// EARN, USE or CANCEL.
    #[serde(rename = "type")]
    pub kind: String,
    pub amount: i64,
    pub balance: i64,
    /// A cancellation's target.
    pub canceled_transaction_id: Option<Uuid>,
    pub canceled_type: Option<String>,
    pub version: i64,
    pub position: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductCreated {
    pub product_id: Uuid,
    pub version: i64,
    pub position: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeSaleCreated {
    pub time_sale_id: Uuid,
    pub product_id: Uuid,
    pub version: i64,
    pub position: i64,
}

/// An order after a command: placed or canceled.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderAnswer {
    pub order_id: Option<Uuid>,
    pub time_sale_id: Uuid,
    pub user_id: Option<i64>,
    pub quantity: Option<i64>,
    pub unit_price: Option<i64>,
    pub total_price: Option<i64>,
    /// CREATED or CANCELED.
    pub status: Option<String>,
    pub version: i64,
    pub position: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    pub user_id: i64,
    pub email: String,
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedIn {
    /// The bearer token for both APIs.
    pub token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    pub user_id: i64,
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    /// The token's `sub`.
    pub subject: String,
    pub role: String,
    /// A user's id (absent for admins and services).
    pub user_id: Option<i64>,
    /// A registered account's email.
    pub email: Option<String>,
}
