//! Reads as of a log position or a time, for support and finance ("what was this user's
//! balance on 1 December?", "what did this sale's stock look like at 20:00:05?"): the
//! aggregate's stream up to then, read from the event log and folded by the projection's own
//! code (`readmodel::projection::as_of`), answered in the shape of today's read. Behind the
//! same roles as today's reads. One stream per read, at most [`MAX_EVENTS`] events.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use domain::points::{point_account_id, NextExpiry};
use eventlog::{AsOf, EventLog, RecordedEvent};
use problem::{Path, Query};
use readmodel::projection::as_of;
use readmodel::queries;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use auth::http::Caller;

use super::coupons::{coupon_view, CouponView};
use super::points::{history_entry, HistoryEntry};
use super::sales::{sale_at, TimeSale};
use super::user;
use crate::{AppState, QueryError};

/// The longest stream one read folds: a flash sale of 100,000 orders and their holds.
pub(crate) const MAX_EVENTS: i64 = 300_000;
/// The history entries an account as of a time answers with (the newest).
const HISTORY_ENTRIES: usize = 100;

/// When: a log position (a command's answer) or a time; exactly one (422 otherwise).
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct When {
    /// The log position to read as of (the events at or below it).
    #[param(minimum = 1)]
    position: Option<i64>,
    /// The time to read as of (the events recorded at or before it), RFC 3339.
    at: Option<DateTime<Utc>>,
}

impl When {
    /// The point asked for: a position of at least 1 (400 otherwise, as its schema says),
    /// or a time within 1970–9999; exactly one of them (422 otherwise: no one-field schema
    /// states it).
    fn as_of(&self) -> Result<AsOf, QueryError> {
        let unacceptable = |detail: &str, field| QueryError::Unacceptable {
            detail: detail.into(),
            field,
        };
        match (self.position, self.at) {
            (Some(p), None) if p >= 1 => Ok(AsOf::Position(p)),
            (Some(_), None) => Err(QueryError::BadRequest {
                detail: "position must be at least 1".into(),
                field: "position",
            }),
            (None, Some(t)) => domain::values::checked_time(t, "at")
                .map(AsOf::Time)
                .map_err(|_| unacceptable("at must be between 1970 and 9999", "at")),
            _ => Err(unacceptable(
                "give exactly one of position and at",
                "position",
            )),
        }
    }
}

/// What an as-of answer reflects: the last event folded, and the time its status is at.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Reflects {
    /// The position of the last event of this aggregate at or before the point asked for
    /// (0: none).
    position: i64,
    /// The time statuses are computed at: the time asked for, or the last event's (the Unix
    /// epoch when there is none).
    at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SaleAsOf {
    #[serde(flatten)]
    sale: TimeSale,
    as_of: Reflects,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AccountAsOf {
    user_id: i64,
    balance: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_expiry: Option<NextExpiry>,
    /// The newest 100 entries up to then, newest first.
    history: Vec<HistoryEntry>,
    /// How many entries the history had then.
    history_total: i64,
    as_of: Reflects,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CouponAsOf {
    #[serde(flatten)]
    coupon: CouponView,
    as_of: Reflects,
}

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/time-sales/{id}/as-of", get(time_sale_as_of))
        .route("/api/v1/points/users/{user_id}/as-of", get(account_as_of))
        .route("/api/v1/coupons/{id}/as-of", get(coupon_as_of))
}

/// How long one as-of read may take the database.
const LONG_READ: Duration = Duration::from_secs(8);

/// A read of the log for one as-of answer: a deadline of its own, and outside the breaker the
/// other reads share — one caller's long history must not turn everyone's reads into 503s.
async fn long_read<T>(
    read: impl std::future::Future<Output = Result<T, eventlog::StoreError>>,
) -> Result<T, QueryError> {
    match tokio::time::timeout(LONG_READ, read).await {
        Ok(answered) => answered.map_err(|e| QueryError::Unavailable(e.to_string())),
        Err(_) => Err(QueryError::Unavailable(format!(
            "the event log did not answer an as-of read within {LONG_READ:?}"
        ))),
    }
}

/// One stream as of `when`, bounded; with what the answer reflects.
async fn stream(
    state: &AppState,
    id: Uuid,
    when: &When,
) -> Result<(Vec<RecordedEvent>, Reflects), QueryError> {
    let as_of = when.as_of()?;
    let log = EventLog::from_pool(state.pool.clone());
    let events = long_read(log.read_stream_as_of(id, as_of, MAX_EVENTS + 1)).await?;
    if events.len() as i64 > MAX_EVENTS {
        return Err(QueryError::TooLong(MAX_EVENTS));
    }
    let last = as_of::last(&events);
    let reflects = Reflects {
        position: last.map_or(0, |(p, _)| p),
        at: match as_of {
            AsOf::Time(t) => t,
            AsOf::Position(_) => last.map_or(DateTime::<Utc>::UNIX_EPOCH, |(_, t)| t),
        },
    };
    Ok((events, reflects))
}

#[utoipa::path(
    get,
    path = "/api/v1/time-sales/{id}/as-of",
    tag = "sales",
    summary = "A flash sale's stock as of a log position or a time",
    params(("id" = Uuid, Path, description = "The sale's id"), When),
    responses(
        (status = 200, description = "Found (404 if it did not exist yet)", body = SaleAsOf),
    )
)]
async fn time_sale_as_of(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(when): Query<When>,
) -> Result<Json<SaleAsOf>, QueryError> {
    let (events, reflects) = stream(&state, id, &when).await?;
    if events.first().is_some_and(|e| e.category != "timesale") {
        return Err(QueryError::NotFound("time sale"));
    }
    let row = as_of::time_sale(id, &events)?.ok_or(QueryError::NotFound("time sale"))?;
    Ok(Json(SaleAsOf {
        sale: sale_at(&row, None, None, reflects.at),
        as_of: reflects,
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/points/users/{user_id}/as-of",
    tag = "points",
    summary = "A user's balance and history as of a log position or a time",
    params(("user_id" = i64, Path, minimum = 1, description = "The user's id"), When),
    responses(
        (status = 200, description = "Found", body = AccountAsOf),
    )
)]
async fn account_as_of(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(user_id): Path<i64>,
    Query(when): Query<When>,
) -> Result<Json<AccountAsOf>, QueryError> {
    let user_id = user(user_id)?;
    caller.require_user(user_id.get())?;
    let (events, reflects) = stream(&state, point_account_id(user_id), &when).await?;
    let account = as_of::point_account(&events)?;
    let history_total = account.history.len() as i64;
    Ok(Json(AccountAsOf {
        user_id: user_id.get(),
        balance: account.balance,
        next_expiry: account.next_expiry,
        history: account
            .history
            .into_iter()
            .take(HISTORY_ENTRIES)
            .map(history_entry)
            .collect::<Result<_, _>>()?,
        history_total,
        as_of: reflects,
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/coupons/{id}/as-of",
    tag = "coupons",
    summary = "A coupon as of a log position or a time (its holder, a service or an admin)",
    params(("id" = Uuid, Path, description = "The coupon's id"), When),
    responses(
        (status = 200, description = "Found (404 if not issued yet)", body = CouponAsOf),
    )
)]
async fn coupon_as_of(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<Uuid>,
    Query(when): Query<When>,
) -> Result<Json<CouponAsOf>, QueryError> {
    when.as_of()?;
    // Someone else's coupon is refused before its policy's history is read (the read model
    // knows its holder; one not projected yet is checked after the fold).
    if let Some(row) = state
        .db(queries::coupon(&state.pool, &state.live().schema, id))
        .await?
    {
        caller.require_user(row.user_id)?;
    }
    let log = EventLog::from_pool(state.pool.clone());
    let policy = long_read(log.entity_stream(id))
        .await?
        .filter(|(_, category)| category == "coupon")
        .ok_or(QueryError::NotFound("coupon"))?
        .0;
    let (events, reflects) = stream(&state, policy, &when).await?;
    let row = as_of::coupon(id, &events)?.ok_or(QueryError::NotFound("coupon"))?;
    caller.require_user(row.user_id)?;
    Ok(Json(CouponAsOf {
        coupon: coupon_view(&row, reflects.at),
        as_of: reflects,
    }))
}
