//! Why a command was not carried out, typed: the caller's input, the domain's rules, its role,
//! the idempotency key, or a dependency. Each has one canonical problem form — a status and an
//! RFC 9457 body — which is what an idempotency key stores for a refusal and what every door
//! answers (the HTTP door as is; another maps the status).

use axum::http::StatusCode;
use domain::DomainError;
use serde_json::Value;

use crate::writer::WriteError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// An input is not what the command takes (`field` names it).
    #[error("{detail}")]
    Invalid {
        detail: String,
        field: Option<String>,
    },
    /// The domain refused the command.
    #[error(transparent)]
    Refused(#[from] DomainError),
    /// A coupon, an order or a resource that nothing holds.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller's role may not do this, or the data is another user's.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The same idempotency key came with another request.
    #[error("the idempotency key was used with a different request")]
    IdempotencyKeyReused,
    /// Queues are full: back-pressure.
    #[error("the service is busy")]
    Overloaded,
    /// The body is larger than the server takes.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The answer stored under the request's idempotency key (a refusal), given again as it
    /// was first given.
    #[error("stored answer")]
    Stored { status: u16, body: Value },
    /// A refusal of its own kind (a taken email, wrong credentials): status, code, detail,
    /// field.
    #[error("{detail}")]
    Other {
        status: StatusCode,
        code: &'static str,
        detail: &'static str,
        field: Option<&'static str>,
    },
    /// A dependency (the database) failed; the cause is logged, never sent.
    #[error("a dependency is unavailable")]
    Unavailable(String),
}

impl CommandError {
    pub fn invalid(detail: impl Into<String>, field: Option<&str>) -> Self {
        CommandError::Invalid {
            detail: detail.into(),
            field: field.map(str::to_owned),
        }
    }

    /// The status and problem body.
    pub fn problem(&self) -> (StatusCode, Value) {
        let (status, code, field) = match self {
            CommandError::Invalid { field, .. } => {
                (StatusCode::BAD_REQUEST, "INVALID_REQUEST", field.clone())
            }
            CommandError::Refused(e) => return crate::refusal::problem(e),
            CommandError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND", None),
            CommandError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN", None),
            CommandError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", None),
            CommandError::Stored { status, body } => {
                let status =
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
                return (status, body.clone());
            }
            CommandError::IdempotencyKeyReused => (
                StatusCode::CONFLICT,
                "IDEMPOTENCY_KEY_REUSED",
                Some("Idempotency-Key".into()),
            ),
            CommandError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "OVERLOADED", None),
            CommandError::Other {
                status,
                code,
                field,
                ..
            } => (*status, *code, field.map(str::to_owned)),
            CommandError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", None),
        };
        let detail = match self {
            CommandError::Unavailable(_) => "a dependency is unavailable; retry later".to_owned(),
            other => other.to_string(),
        };
        (
            status,
            problem::body(status, code, &detail, field.as_deref()),
        )
    }
}

impl From<auth::Forbidden> for CommandError {
    fn from(e: auth::Forbidden) -> Self {
        CommandError::Forbidden(e.0)
    }
}

impl From<WriteError> for CommandError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Refused(e) => CommandError::Refused(e),
            WriteError::KeyReused => CommandError::IdempotencyKeyReused,
            WriteError::Overloaded => CommandError::Overloaded,
            WriteError::Unavailable(cause) => CommandError::Unavailable(cause),
            WriteError::StoredRefusal { status, body } => CommandError::Stored { status, body },
            WriteError::Moved => super::moving(),
        }
    }
}

impl From<sqlx::Error> for CommandError {
    fn from(e: sqlx::Error) -> Self {
        CommandError::Unavailable(e.to_string())
    }
}
