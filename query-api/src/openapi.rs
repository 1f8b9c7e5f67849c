//! The query API's OpenAPI 3.1 document (ADR 12), built from the handlers' `#[utoipa::path]`
//! annotations and the answer types the handlers return; served with Swagger UI at `/api/docs/query`
//! (`/api/docs` redirects there) and checked in CI by openapi-spec-validator and schemathesis
//! against the running API.

use utoipa::openapi::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::OpenApi;

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
        routes::sales::reservation,
        routes::as_of::time_sale_as_of,
        routes::as_of::account_as_of,
        routes::as_of::coupon_as_of,
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
                 log's end is 422 UNKNOWN_POSITION.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(0))
                    .maximum(Some(i64::MAX)),
            );
            problem_answer(
                operation,
                "422",
                "X-Min-Position is beyond the end of the event log (UNKNOWN_POSITION): no \
                 command answered it",
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
