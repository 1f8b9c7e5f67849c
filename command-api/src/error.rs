//! The one place errors become HTTP answers: RFC 9457 problem details (`type`, `title`,
//! `status`, `detail`, `code`, and `field` when one input is at fault). 5xx causes are logged
//! here and never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::{DomainError, RefusalKind};
use serde_json::{json, Value};

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECONDS: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, or not the JSON this command takes.
    #[error("{detail}")]
    BadRequest {
        detail: String,
        field: Option<String>,
    },
    /// The domain refused the command.
    #[error(transparent)]
    Refused(#[from] DomainError),
    /// A coupon or order id that no aggregate holds.
    #[error("{0} not found")]
    UnknownEntity(&'static str),
    /// The same idempotency key came with another request.
    #[error("the idempotency key was used with a different request")]
    IdempotencyKeyReused,
    /// Queues are full: back-pressure.
    #[error("the service is busy")]
    Overloaded,
    /// A dependency (the database) failed; the cause is logged, not sent.
    #[error("a dependency is unavailable")]
    Unavailable(String),
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>, field: Option<String>) -> Self {
        ApiError::BadRequest {
            detail: detail.into(),
            field,
        }
    }

    /// The status and problem body; also what an idempotency key stores for a refusal.
    pub fn problem(&self) -> (StatusCode, Value) {
        let (status, code, field) = match self {
            ApiError::BadRequest { field, .. } => {
                (StatusCode::BAD_REQUEST, "INVALID_REQUEST", field.clone())
            }
            ApiError::Refused(e) => {
                let status = match e.kind() {
                    RefusalKind::InvalidInput => StatusCode::BAD_REQUEST,
                    RefusalKind::NotFound => StatusCode::NOT_FOUND,
                    RefusalKind::AlreadyExists => StatusCode::CONFLICT,
                    RefusalKind::RuleViolated => StatusCode::UNPROCESSABLE_ENTITY,
                };
                (status, e.code(), e.field().map(str::to_owned))
            }
            ApiError::UnknownEntity(_) => (StatusCode::NOT_FOUND, "NOT_FOUND", None),
            ApiError::IdempotencyKeyReused => (
                StatusCode::CONFLICT,
                "IDEMPOTENCY_KEY_REUSED",
                Some("Idempotency-Key".into()),
            ),
            ApiError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "OVERLOADED", None),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", None),
        };
        let detail = match self {
            ApiError::Unavailable(_) => "a dependency is unavailable; retry later".to_owned(),
            other => other.to_string(),
        };
        let mut body = json!({
            "type": format!("urn:promo:problem:{}", code.to_ascii_lowercase().replace('_', "-")),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
            "code": code,
        });
        if let Some(field) = field {
            body["field"] = Value::String(field);
        }
        (status, body)
    }
}

/// Builds a problem-details response from a status and body.
pub fn problem_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Unavailable(cause) = &self {
            tracing::error!(%cause, "command failed on a dependency");
        }
        let (status, body) = self.problem();
        problem_response(status, body)
    }
}
