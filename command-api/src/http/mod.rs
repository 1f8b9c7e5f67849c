//! The HTTP door onto the command layer: one handler per route that only extracts (the body,
//! path, [`extract::Caller`]), calls [`Commands`] and renders what comes back — an answer
//! with its version and position ([`Answered`]), or a problem+json refusal. The routes of
//! each resource are in a module of their own; [`openapi`] builds the document from them.

pub mod accounts;
pub mod coupons;
pub mod extract;
pub mod holds;
mod integers;
pub mod openapi;
pub mod points;
pub mod sales;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::commands::accounts::SignInError;
use crate::commands::{CommandError, Commands, Written};

/// The body of every command's success: what it made or changed, the aggregate's version
/// after it, and the log position of its last event — send it as `X-Min-Position` to the
/// query API to read your own write.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Answered<T> {
    #[serde(flatten)]
    pub answer: T,
    /// The aggregate's version after the command.
    pub version: i64,
    /// The log position of the command's last event.
    pub position: i64,
}

impl<T: Serialize> IntoResponse for Written<T> {
    fn into_response(self) -> Response {
        let status = if self.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let body = Answered {
            answer: self.answer,
            version: self.version,
            position: self.position,
        };
        let mut response = (status, Json(body)).into_response();
        if self.replayed {
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        response
    }
}

impl IntoResponse for CommandError {
    fn into_response(self) -> Response {
        if let CommandError::Unavailable(cause) = &self {
            tracing::error!(%cause, "command failed on a dependency");
        }
        let (status, body) = self.problem();
        problem::response(status, body)
    }
}

impl IntoResponse for SignInError {
    fn into_response(self) -> Response {
        match self {
            SignInError::Limited(verdict) => auth::http::rate_limited(&verdict, "anonymous"),
            SignInError::Refused(e) => e.into_response(),
        }
    }
}

/// The body of a command that takes none: nothing, or `{}`.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// The routes behind the gate (a bearer token, rate limits).
pub fn gated() -> Router<Commands> {
    Router::new()
        .merge(accounts::gated())
        .merge(coupons::router())
        .merge(points::router())
        .merge(sales::router())
        .merge(holds::router())
}

/// The routes that take no token: sign-up and sign-in.
pub fn open() -> Router<Commands> {
    accounts::open()
}
