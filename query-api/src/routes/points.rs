//! A user's point balance and history.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use problem::{Path, Query};
use readmodel::hot::keys;
use serde_json::{json, Value};

use auth::http::Caller;

use crate::{AppState, QueryError};

use readmodel::queries::{self, Window};

use super::{paged, user, Page};

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
        None => queries::balance(&state.pool, &state.live().schema, user_id)
            .await?
            .unwrap_or(0),
    };
    Ok(Json(json!({ "userId": user_id, "balance": balance })))
}

#[utoipa::path(
    get,
    path = "/api/v1/points/users/{user_id}/history",
    tag = "points",
    summary = "A user's point transactions, newest first",
    params(("user_id" = i64, Path, description = "The user's id"), super::Page),
    responses(
        (status = 200, description = "Found", body = crate::openapi::History),
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
    let window = Window { limit, offset };
    let (rows, total) =
        queries::history(&state.pool, &state.live().schema, user_id, window).await?;
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
