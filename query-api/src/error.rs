//! The query API's refusals, as problem+json.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{detail}")]
    BadRequest { detail: String, field: &'static str },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the read models have not reached position {0} yet")]
    NotYetConsistent(i64),
    /// `X-Min-Position` beyond the end of the log: well formed, but no command answered it.
    #[error(
        "X-Min-Position {0} is beyond the end of the event log: send the position a command \
         answered"
    )]
    UnknownPosition(i64),
    #[error(
        "the read model of this {what} is faulted: the event at position {position} could not be \
         projected and waits for an operator (replay-tools parked / retry)"
    )]
    Faulted { what: &'static str, position: i64 },
    #[error("a dependency is unavailable")]
    Unavailable(String),
    /// A dependency that hangs, skipped while its breaker is open (logged once, when it
    /// opened, not per read).
    #[error("a dependency is unavailable")]
    Skipped(&'static str),
    /// The caller may not read this (another user's data).
    #[error("{0}")]
    Forbidden(&'static str),
    /// A well-formed value a rule refuses that no one-field schema can state (two parameters
    /// that exclude each other, a time outside the years this system keeps).
    #[error("{detail}")]
    Unacceptable { detail: String, field: &'static str },
    /// A read as of a time folds one stream from the log; this one is longer than a read
    /// may fold.
    #[error("this aggregate's history is longer than {0} events: too long to fold for one read")]
    TooLong(i64),
}

impl From<auth::Forbidden> for QueryError {
    fn from(e: auth::Forbidden) -> Self {
        QueryError::Forbidden(e.0)
    }
}

impl From<readmodel::ReadModelError> for QueryError {
    fn from(e: readmodel::ReadModelError) -> Self {
        QueryError::Unavailable(e.to_string())
    }
}

impl From<sqlx::Error> for QueryError {
    fn from(e: sqlx::Error) -> Self {
        QueryError::Unavailable(e.to_string())
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let (status, code, field) = match &self {
            QueryError::BadRequest { field, .. } => {
                (StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some(*field))
            }
            QueryError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND", None),
            QueryError::UnknownPosition(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "UNKNOWN_POSITION",
                Some("X-Min-Position"),
            ),
            QueryError::NotYetConsistent(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "NOT_YET_CONSISTENT", None)
            }
            QueryError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN", None),
            QueryError::Unacceptable { field, .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "UNACCEPTABLE_VALUE",
                Some(*field),
            ),
            QueryError::TooLong(_) => (StatusCode::UNPROCESSABLE_ENTITY, "AS_OF_TOO_LONG", None),
            QueryError::Faulted { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "PROJECTION_FAULTED", None)
            }
            QueryError::Unavailable(cause) => {
                tracing::error!(%cause, "query failed on a dependency");
                (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", None)
            }
            QueryError::Skipped(dependency) => {
                tracing::debug!(dependency, "read skipped: its dependency hangs");
                (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", None)
            }
        };
        let detail = match &self {
            QueryError::Unavailable(_) | QueryError::Skipped(_) => {
                "a dependency is unavailable; retry later".to_owned()
            }
            other => other.to_string(),
        };
        let mut body = problem::body(status, code, &detail, field);
        if let QueryError::Faulted { position, .. } = &self {
            body["position"] = json!(position);
        }
        problem::response(status, body)
    }
}
