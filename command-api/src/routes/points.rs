//! Point accounts: earn, use, cancel a transaction.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use domain::points::{point_account_id, PointAccount, PointCommand, PointEvent};
use domain::values::{Points, Text, UserId};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use auth::http::Caller;

use crate::error::ApiError;
use crate::extract::{IdempotencyKey, JsonBody};
use crate::{respond, AppState, CommandContext};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/points/earn", post(earn))
        .route("/api/v1/points/use", post(spend))
        .route("/api/v1/points/cancel", post(cancel))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Movement {
    user_id: i64,
    amount: i64,
    description: String,
    #[serde(default)]
    order_id: Option<String>,
}

/// The body of every point answer: the entry and the balance right after it.
fn entry(events: &[PointEvent]) -> Value {
    let Some(event) = events.first() else {
        return Value::Null;
    };
    let mut body = json!({
        "transactionId": event.transaction_id(), "userId": event.user_id(), "type": event.kind(),
        "amount": event.amount(), "balance": event.balance_after(),
    });
    if let PointEvent::Canceled {
        canceled_transaction_id,
        canceled_kind,
        ..
    } = event
    {
        body["canceledTransactionId"] = json!(canceled_transaction_id);
        body["canceledType"] = json!(canceled_kind);
    }
    body
}

#[utoipa::path(
    post,
    path = "/api/v1/points/earn",
    tag = "points",
    summary = "Grant points (service)",
    request_body = Movement,
    responses(
        (status = 201, description = "The transaction and the balance after it", body = crate::openapi::PointEntry),
        (status = 422, description = "A rule refused it", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn earn(
    State(app): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    key: IdempotencyKey,
    body: JsonBody<Movement>,
) -> Result<Response, ApiError> {
    let b = body.value;
    if b.order_id.is_some() {
        return Err(ApiError::bad_request(
            "earning takes no orderId",
            Some("orderId".into()),
        ));
    }
    let user_id = UserId::parse(b.user_id, "userId")?;
    // Points are the shop's to grant: a user earning for itself would mint money.
    caller.require_service()?;
    let command = PointCommand::Earn {
        user_id,
        transaction_id: Uuid::new_v4(),
        amount: Points::parse(b.amount, "amount")?,
        description: Text::parse(&b.description, "description")?,
        now: Utc::now(),
    };
    let request = CommandContext::new(&caller, &headers, key, body.hash, "EarnPoints")?.request(
        command,
        StatusCode::CREATED,
        |_: &PointAccount, events| entry(events),
    );
    Ok(respond(
        app.points.execute(point_account_id(user_id), request).await,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/points/use",
    tag = "points",
    summary = "Spend points",
    request_body = Movement,
    responses(
        (status = 201, description = "The transaction and the balance after it", body = crate::openapi::PointEntry),
        (status = 422, description = "Insufficient balance, or no account", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn spend(
    State(app): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    key: IdempotencyKey,
    body: JsonBody<Movement>,
) -> Result<Response, ApiError> {
    let b = body.value;
    let user_id = UserId::parse(b.user_id, "userId")?;
    caller.require_user(user_id.get())?;
    let command = PointCommand::Use {
        user_id,
        transaction_id: Uuid::new_v4(),
        amount: Points::parse(b.amount, "amount")?,
        description: Text::parse(&b.description, "description")?,
        order_id: b
            .order_id
            .as_deref()
            .map(|o| Text::parse_reference(o, "orderId"))
            .transpose()?,
        now: Utc::now(),
    };
    let request = CommandContext::new(&caller, &headers, key, body.hash, "UsePoints")?.request(
        command,
        StatusCode::CREATED,
        |_: &PointAccount, events| entry(events),
    );
    Ok(respond(
        app.points.execute(point_account_id(user_id), request).await,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Cancel {
    user_id: i64,
    transaction_id: Uuid,
}

#[utoipa::path(
    post,
    path = "/api/v1/points/cancel",
    tag = "points",
    summary = "Cancel a point transaction (service: a refund)",
    request_body = Cancel,
    responses(
        (status = 201, description = "The cancellation and the balance after it", body = crate::openapi::PointEntry),
        (status = 404, description = "No such transaction of this user", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Already canceled, or the balance would go negative", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn cancel(
    State(app): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    key: IdempotencyKey,
    body: JsonBody<Cancel>,
) -> Result<Response, ApiError> {
    let user_id = UserId::parse(body.value.user_id, "userId")?;
    // Cancelling a transaction is a refund or a correction — the shop's, as earning is: a user
    // could otherwise take back a spend its checkout already counted.
    caller.require_service()?;
    let command = PointCommand::Cancel {
        user_id,
        transaction_id: Uuid::new_v4(),
        canceled_transaction_id: body.value.transaction_id,
        now: Utc::now(),
    };
    let request = CommandContext::new(&caller, &headers, key, body.hash, "CancelPointTransaction")?
        .request(command, StatusCode::CREATED, |_: &PointAccount, events| {
            entry(events)
        });
    Ok(respond(
        app.points.execute(point_account_id(user_id), request).await,
    ))
}
