//! The command API's OpenAPI 3.1 document (ADR 12), built from the handlers' `#[utoipa::path]`
//! annotations, the request types and the answer types the handlers return; served with Swagger UI
//! at `/api/docs/command` (`/api/docs` redirects there) and checked in CI by
//! openapi-spec-validator and schemathesis against the running API.

use utoipa::openapi::path::Operation;
use utoipa::openapi::{ObjectBuilder, Type};
use utoipa::OpenApi;

use super::{accounts, coupons, holds, points, sales};

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
        accounts::register,
        accounts::login,
        accounts::me,
        coupons::create_policy,
        coupons::issue,
        coupons::use_coupon,
        coupons::cancel_use,
        coupons::revoke,
        points::earn,
        points::spend,
        points::cancel,
        sales::create_product,
        sales::create_time_sale,
        sales::place_order,
        sales::cancel_order,
        holds::reserve,
        holds::confirm,
        holds::release,
        holds::reserve_coupon,
        holds::confirm_coupon,
        holds::release_coupon,
    ),
    modifiers(&Shared, &CONVENTIONS),
    tags(
        (name = "accounts", description = "Sign-up, sign-in and the caller's identity"),
        (name = "coupons", description = "Coupon policies (campaigns) and their coupons"),
        (name = "points", description = "Loyalty point accounts"),
        (name = "sales", description = "Products, flash sales, checkout holds and orders"),
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
        problem::openapi::visible_ascii(255),
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
