//! The write endpoints of docs/product.md, one module per capability.

pub(crate) mod accounts;
pub(crate) mod coupons;
pub(crate) mod points;
pub(crate) mod sales;

use axum::Router;

use crate::AppState;

/// The body of a command that takes none: nothing, or `{}`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Empty {}

/// The routes behind the gate (a bearer token, rate limits).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .merge(accounts::router())
        .merge(coupons::router())
        .merge(points::router())
        .merge(sales::router())
}
