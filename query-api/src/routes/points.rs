//! A user's point balance and history.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use problem::{Path, Query};
use readmodel::hot::keys;
use serde_json::{json, Value};
use uuid::Uuid;

use auth::http::Caller;

use crate::{AppState, QueryError};

use super::{fetch_page, paged, user, Page};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/points/users/{user_id}/balance", get(balance))
        .route("/api/v1/points/users/{user_id}/history", get(history))
}

#[utoipa::path(
    get,
    path = "/api/v1/points/users/{user_id}/balance",
    tag = "points",
    summary = "A user's point balance",
    params(("user_id" = i64, Path, description = "The user's id")),
    responses(
        (status = 200, description = "Found", body = crate::openapi::Balance),
        (status = 503, description = "A dependency is down, the read is not consistent yet, or the aggregate's read model is faulted (PROJECTION_FAULTED)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
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

#[utoipa::path(
    get,
    path = "/api/v1/points/users/{user_id}/history",
    tag = "points",
    summary = "A user's point transactions, newest first",
    params(("user_id" = i64, Path, description = "The user's id"), super::Page),
    responses(
        (status = 200, description = "Found", body = crate::openapi::History),
        (status = 503, description = "A dependency is down, the read is not consistent yet, or the aggregate's read model is faulted (PROJECTION_FAULTED)", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
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
