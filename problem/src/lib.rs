//! Problem details (RFC 9457) as both APIs answer them: `type`, `title`, `status`, `detail`,
//! a machine-readable `code`, and `field` when one input is at fault. A 503 carries
//! `Retry-After`. And the edge every server shares ([`edge`]).

pub mod client;
pub mod connections;
pub mod edge;
pub mod openapi;

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

/// A 400 problem naming `field`.
pub fn bad_request(detail: &str, field: Option<&str>) -> Response {
    let status = StatusCode::BAD_REQUEST;
    response(status, body(status, "INVALID_REQUEST", detail, field))
}

/// The answer to a known path with a method it does not take.
pub async fn method_not_allowed() -> Response {
    let status = StatusCode::METHOD_NOT_ALLOWED;
    response(
        status,
        body(
            status,
            "METHOD_NOT_ALLOWED",
            "this path does not take this method",
            None,
        ),
    )
}

/// `snake_case` → `camelCase`, the way the APIs name fields.
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Axum's `Path`, with a rejection in problem details naming the path parameter.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => {
                let named = match &rejection {
                    PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                        ErrorKind::ParseErrorAtKey { key, .. }
                        | ErrorKind::InvalidUtf8InPathParam { key }
                        | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
                        _ => None,
                    },
                    _ => None,
                };
                // A route with one parameter names it in its path (`{id}`).
                let field = match named {
                    Some(key) => Some(key),
                    None => axum::extract::RawPathParams::from_request_parts(parts, state)
                        .await
                        .ok()
                        .and_then(|params| {
                            let mut keys = params.iter().map(|(k, _)| k.to_owned());
                            let first = keys.next();
                            first.filter(|_| keys.next().is_none())
                        }),
                };
                let field = field.map(|f| camel(&f));
                let detail = match &field {
                    Some(field) => format!("the path parameter {field} is not valid"),
                    None => "the path is not valid".to_owned(),
                };
                Err(bad_request(&detail, field.as_deref()))
            }
        }
    }
}

/// A query string of type `T`, with a rejection in problem details naming the parameter at
/// fault (missing, unknown, or not of its type).
#[derive(Debug, Clone, Copy)]
pub struct Query<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Response> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(pairs)
            .map(Query)
            .map_err(|e| {
                let path = bounded(&e.path().to_string(), 64);
                let message = bounded(&e.inner().to_string(), 200);
                // serde names a missing or unknown field in backquotes, at the root.
                let field = if path != "." {
                    Some(path)
                } else {
                    message.split('`').nth(1).map(|f| bounded(f, 64))
                };
                let detail = match &field {
                    Some(field) => format!("the query parameter {field} is not valid: {message}"),
                    None => format!("the query string is not valid: {message}"),
                };
                bad_request(&detail, field.as_deref())
            })
    }
}

/// At most `max` characters of `text` (an echo of client input stays short).
pub fn bounded(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

/// Load shedding and a deadline for every request: past `max_in_flight` requests at once a
/// new one answers 503 `OVERLOADED` at once (it would only queue behind the others), and one
/// that takes longer than `timeout` answers 503 `TIMEOUT`; both with `Retry-After`. A command
/// cut off this way may still commit: the client retries with its `Idempotency-Key`.
#[derive(Debug, Clone)]
pub struct Limits {
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
    timeout: std::time::Duration,
}

impl Limits {
    pub fn new(max_in_flight: usize, timeout: std::time::Duration) -> Self {
        Self {
            in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1))),
            timeout,
        }
    }
}

/// The middleware of [`Limits`] (`axum::middleware::from_fn_with_state`).
pub async fn limit(
    axum::extract::State(limits): axum::extract::State<Limits>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // Liveness, readiness and metrics answer even when the service sheds load: an
    // orchestrator must not restart a process for being busy, and a busy process is when its
    // metrics matter most.
    if matches!(request.uri().path(), "/health" | "/ready" | "/metrics") {
        return next.run(request).await;
    }
    let large_body = large_body(request.headers());
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let mut answer = match limits.in_flight.clone().try_acquire_owned() {
        Err(_) => response(
            status,
            body(
                status,
                "OVERLOADED",
                "too many requests at once; retry shortly",
                None,
            ),
        ),
        Ok(_slot) => match tokio::time::timeout(limits.timeout, next.run(request)).await {
            Ok(answer) => answer,
            Err(_) => {
                tracing::warn!(
                    timeout_ms = limits.timeout.as_millis() as u64,
                    "request timed out"
                );
                response(
                    status,
                    body(
                        status,
                        "TIMEOUT",
                        "the request took too long; retry shortly",
                        None,
                    ),
                )
            }
        },
    };
    // A refusal may leave the body unread; the server then closes the connection after the
    // answer, and a client told nothing would send its next request down a closing
    // connection. Say so (RFC 9112 §9.6).
    let refused = answer.status().is_client_error() || answer.status().is_server_error();
    if answer.status() == StatusCode::PAYLOAD_TOO_LARGE || (refused && large_body) {
        answer
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    answer
}

/// The detail of a 404 for a path no route has.
pub const NO_SUCH_RESOURCE: &str = "no such resource";

/// Middleware (`axum::middleware::map_response`) making a client error that carries no body
/// (axum's own 404 for no route, Swagger UI's for an asset it does not have) the
/// problem+json every other refusal is.
pub async fn bodiless_refusals(answer: Response) -> Response {
    let status = answer.status();
    if !status.is_client_error() || answer.headers().contains_key(header::CONTENT_TYPE) {
        return answer;
    }
    let (code, detail) = if status == StatusCode::NOT_FOUND {
        ("NOT_FOUND", NO_SUCH_RESOURCE)
    } else {
        (
            "INVALID_REQUEST",
            status.canonical_reason().unwrap_or("refused"),
        )
    };
    response(status, body(status, code, detail, None))
}

/// More body than arrives with the head (over 8 KiB declared, or a chunked one): what a
/// refusal may leave unread.
fn large_body(headers: &axum::http::HeaderMap) -> bool {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) => length > 8 * 1024,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

/// The header carrying the server's id of a request: set on the request for the handlers
/// (whatever a client sent under it is replaced) and echoed on the answer.
pub const REQUEST_ID: &str = "x-request-id";

/// The header a client names its correlation id in (copied into events and log lines).
pub const CORRELATION_ID: &str = "x-correlation-id";

/// A correlation id as the APIs take it: 1 to 128 visible ASCII characters
/// ([`openapi::VISIBLE_ASCII`]); any other is refused at the edge (400).
pub fn valid_correlation_id(value: &str) -> bool {
    !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic())
}

/// Gives every request an id of the server's (a UUID v7), runs it inside a `request` span
/// holding that id, the `X-Correlation-Id` (absent: the request id; not 1 to 128 visible
/// ASCII characters: 400 at once), the method and
/// the path (its first 100 characters), so every log line of the request carries them; answers with `X-Request-Id`.
pub async fn request_ids(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use tracing::Instrument;
    let request_id = uuid::Uuid::now_v7().to_string();
    let correlation_id = match request.headers().get(CORRELATION_ID) {
        None => request_id.clone(),
        Some(value) => match value.to_str().ok().filter(|v| valid_correlation_id(v)) {
            Some(value) => value.to_owned(),
            None => {
                let mut answer = bad_request(
                    "X-Correlation-Id must be 1 to 128 visible ASCII characters",
                    Some("X-Correlation-Id"),
                );
                if let Ok(value) = HeaderValue::from_str(&request_id) {
                    answer.headers_mut().insert(REQUEST_ID, value);
                }
                return answer;
            }
        },
    };
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(
            || bounded(request.uri().path(), 100),
            |m| m.as_str().to_owned(),
        );
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        request_id = %request_id,
        correlation_id = %correlation_id,
    );
    // A client's W3C trace context makes this request a span of the client's trace.
    if let Some(traceparent) = request
        .headers()
        .get("traceparent")
        .filter(|_| service::telemetry::enabled())
        .and_then(|v| v.to_str().ok())
    {
        service::telemetry::set_parent(&span, traceparent);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(REQUEST_ID, value.clone());
        let mut answer = next.run(request).instrument(span.clone()).await;
        span.in_scope(|| {
            tracing::debug!(status = answer.status().as_u16(), "answered");
        });
        answer.headers_mut().insert(REQUEST_ID, value);
        answer
    } else {
        next.run(request).instrument(span).await
    }
}
