//! Problem details (RFC 9457) as both APIs answer them: `type`, `title`, `status`, `detail`,
//! a machine-readable `code`, and `field` when one input is at fault. A 503 carries
//! `Retry-After`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: &str = "1";

/// The problem body for `code` (e.g. `SOLD_OUT`).
pub fn body(status: StatusCode, code: &str, detail: &str, field: Option<&str>) -> Value {
    let mut body = json!({
        "type": format!("urn:promo:problem:{}", code.to_ascii_lowercase().replace('_', "-")),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
    });
    if let Some(field) = field {
        body["field"] = Value::String(field.to_owned());
    }
    body
}

/// A problem response from a status and a body made by [`body`] (or stored earlier).
pub fn response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
    }
    response
}
