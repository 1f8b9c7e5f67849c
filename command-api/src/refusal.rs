//! A domain refusal's problem form — its status by kind, its code, its field — as the command
//! layer answers it and the writer stores it under an idempotency key.

use axum::http::StatusCode;
use domain::{DomainError, RefusalKind};
use serde_json::Value;

/// The status and problem body of `refusal`.
pub(crate) fn problem(refusal: &DomainError) -> (StatusCode, Value) {
    let status = match refusal.kind() {
        RefusalKind::InvalidInput => StatusCode::BAD_REQUEST,
        RefusalKind::NotFound => StatusCode::NOT_FOUND,
        RefusalKind::AlreadyExists => StatusCode::CONFLICT,
        RefusalKind::RuleViolated => StatusCode::UNPROCESSABLE_ENTITY,
        RefusalKind::NotOwner => StatusCode::FORBIDDEN,
    };
    (
        status,
        problem::body(
            status,
            refusal.code(),
            &refusal.to_string(),
            refusal.field(),
        ),
    )
}
