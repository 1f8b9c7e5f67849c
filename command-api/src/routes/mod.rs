//! The write endpoints of docs/product.md, one module per capability.

mod coupons;
mod points;
mod sales;

use axum::Router;

use crate::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .merge(coupons::router())
        .merge(points::router())
        .merge(sales::router())
}
