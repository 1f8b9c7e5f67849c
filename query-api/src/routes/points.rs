//! A user's point balance and history.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use domain::points::TransactionKind;
use problem::{Path, Query};
use readmodel::hot::keys;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use auth::http::Caller;

use domain::points::NextExpiry;

use crate::{AppState, QueryError};

use readmodel::queries::{self, Window};

use super::{recorded, user, Page};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Balance {
    user_id: i64,
    balance: i64,
    /// The points that expire soonest, and when; absent when none expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_expiry: Option<NextExpiry>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HistoryEntry {
    transaction_id: Uuid,
    #[serde(rename = "type")]
    kind: TransactionKind,
    amount: i64,
    description: String,
    order_id: Option<String>,
    canceled_transaction_id: Option<Uuid>,
    balance_after: i64,
    occurred_at: DateTime<Utc>,
}

/// A page of a user's point history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct History {
    items: Vec<HistoryEntry>,
    page: i64,
    limit: i64,
    total: i64,
    user_id: i64,
}

/// A history row as the API answers it.
pub(super) fn history_entry(r: readmodel::queries::HistoryRow) -> Result<HistoryEntry, QueryError> {
    Ok(HistoryEntry {
        transaction_id: r.transaction_id,
        kind: recorded(&r.r#type)?,
        amount: r.amount,
        description: r.description,
        order_id: r.order_id,
        canceled_transaction_id: r.canceled_transaction_id,
        balance_after: r.balance_after,
        occurred_at: r.occurred_at,
    })
}

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
    params(("user_id" = i64, Path, minimum = 1, description = "The user's id")),
    responses(
        (status = 200, description = "Found", body = Balance),
    )
)]
async fn balance(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(user_id): Path<i64>,
) -> Result<Json<Balance>, QueryError> {
    let user_id = user(user_id)?.get();
    caller.require_user(user_id)?;
    state.check_account(user_id)?;
    let key = keys::balance(&state.live().prefix, user_id);
    let hot = state
        .hot
        .hashes(&[key], &["balance", "expiring", "expiring_at"])
        .await;
    let (balance, amount, at) = match hot.first().map(Vec::as_slice) {
        Some(&[Some(balance), amount, at]) => (
            balance,
            amount.filter(|a| *a > 0),
            at.and_then(chrono::DateTime::from_timestamp_micros),
        ),
        _ => state
            .db(queries::balance(&state.pool, &state.live().schema, user_id))
            .await?
            .unwrap_or((0, None, None)),
    };
    let next_expiry = amount
        .zip(at)
        .map(|(amount, expires_at)| NextExpiry { amount, expires_at });
    Ok(Json(Balance {
        user_id,
        balance,
        next_expiry,
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/points/users/{user_id}/history",
    tag = "points",
    summary = "A user's point transactions, newest first",
    params(("user_id" = i64, Path, minimum = 1, description = "The user's id"), super::Page),
    responses(
        (status = 200, description = "Found", body = History),
    )
)]
async fn history(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(user_id): Path<i64>,
    Query(q): Query<Page>,
) -> Result<Json<History>, QueryError> {
    let user_id = user(user_id)?.get();
    caller.require_user(user_id)?;
    state.check_account(user_id)?;
    let (page, limit, offset) = q.bounds()?;
    let window = Window { limit, offset };
    let (rows, total) = state
        .db(queries::history(
            &state.pool,
            &state.live().schema,
            user_id,
            window,
        ))
        .await?;
    let items = rows
        .into_iter()
        .map(history_entry)
        .collect::<Result<_, QueryError>>()?;
    Ok(Json(History {
        items,
        page,
        limit,
        total,
        user_id,
    }))
}
