//! The read endpoints of docs/product.md, one module per resource as in command-api: coupon
//! policies and coupons, points, products / time sales / orders. Every query reads the live
//! read-model schema; hot values (balances, remaining stock, issued/used counts) come from
//! Redis when it has them. The SQL is readmodel's typed queries (`readmodel::queries`). Shared
//! here: paging and user ids from the path.

pub(crate) mod as_of;
pub(crate) mod coupons;
pub(crate) mod points;
pub(crate) mod sales;

use axum::{Json, Router};
use domain::values::UserId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AppState, QueryError};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .merge(coupons::router())
        .merge(points::router())
        .merge(sales::router())
        .merge(as_of::router())
}

/// The last page a list answers: past 100,000 pages of 100 a list is not browsed, it is
/// scanned, and the offset would make PostgreSQL read every row before it.
const MAX_PAGE: i64 = 100_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Page {
    /// From 1 (default 1), at most 100,000.
    #[param(minimum = 1, maximum = 100_000)]
    page: Option<i64>,
    /// 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
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

/// One page of a list: `page` from 1, `limit` 1–100, `total` matching rows.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Paged<T> {
    pub(crate) items: Vec<T>,
    pub(crate) page: i64,
    pub(crate) limit: i64,
    pub(crate) total: i64,
}

fn paged<T>(items: Vec<T>, page: i64, limit: i64, total: i64) -> Json<Paged<T>> {
    Json(Paged {
        items,
        page,
        limit,
        total,
    })
}

/// A value the read model stores as its wire name (`PERCENTAGE`, `CANCELED`, …), as the
/// domain's type; anything else is a read model this code did not write.
fn recorded<T: serde::de::DeserializeOwned>(name: &str) -> Result<T, QueryError> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|e| QueryError::Unavailable(format!("the read model holds {name:?}: {e}")))
}

fn user(raw: i64) -> Result<UserId, QueryError> {
    UserId::parse(raw, "userId").map_err(|_| QueryError::BadRequest {
        detail: "userId must be a positive integer".into(),
        field: "userId",
    })
}
