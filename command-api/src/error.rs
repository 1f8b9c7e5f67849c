//! The one place errors become HTTP answers: RFC 9457 problem details (`type`, `title`,
//! `status`, `detail`, `code`, and `field` when one input is at fault). 5xx causes are logged
//! here and never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::{DomainError, RefusalKind};
use serde_json::Value;

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
    /// The caller's role may not do this, or the data is another user's.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The body is larger than the server takes.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// An aggregate a command names (a policy, a time sale, a product) does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The answer stored under the request's idempotency key (a refusal), sent again as it
    /// was first sent.
    #[error("stored answer")]
    Stored { status: StatusCode, body: Value },
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
                    RefusalKind::NotOwner => StatusCode::FORBIDDEN,
                };
                (status, e.code(), e.field().map(str::to_owned))
            }
            ApiError::UnknownEntity(_) | ApiError::NotFound(_) => {
                (StatusCode::NOT_FOUND, "NOT_FOUND", None)
            }
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN", None),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", None),
            ApiError::Stored { status, body } => return (*status, body.clone()),
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
        (
            status,
            problem::body(status, code, &detail, field.as_deref()),
        )
    }
}

impl From<auth::Forbidden> for ApiError {
    fn from(e: auth::Forbidden) -> Self {
        ApiError::Forbidden(e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Unavailable(cause) = &self {
            tracing::error!(%cause, "command failed on a dependency");
        }
        let (status, body) = self.problem();
        problem::response(status, body)
    }
}
