//! The write endpoints of docs/product.md, one module per capability.

pub(crate) mod accounts;
mod coupons;
mod points;
mod sales;

use axum::Router;

use crate::AppState;

/// The routes behind the gate (a bearer token, rate limits).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .merge(accounts::router())
        .merge(coupons::router())
        .merge(points::router())
        .merge(sales::router())
}
