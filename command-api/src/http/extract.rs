//! Request extractors that answer malformed input with the same problem details as any other
//! error: a JSON body that also yields its canonical hash (for idempotency keys), the
//! `Idempotency-Key` header, and [`Caller`] — who calls and how, the command layer's
//! [`Call`] but for the body's hash.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::commands::{Call, CommandError};

/// The body limit in force (for the 413's detail), set by [`crate::app`].
pub(crate) static MAX_BODY_BYTES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// A JSON body of type `T`, and the SHA-256 of its canonical form (keys sorted, no white
/// space), so a retry with the same content but other formatting counts as the same request.
#[derive(Debug)]
pub struct JsonBody<T> {
    pub value: T,
    pub hash: Vec<u8>,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = CommandError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let path = req.uri().path().to_owned();
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(is_json);
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                CommandError::TooLarge(MAX_BODY_BYTES.load(std::sync::atomic::Ordering::Relaxed))
            } else {
                CommandError::invalid(format!("unreadable body: {e}"), None)
            }
        })?;
        // A body in any other media type is refused, not read as JSON: a form on another
        // site can post `text/plain` or a form's type without asking (a "simple" request).
        if !bytes.is_empty() && !json {
            return Err(CommandError::Other {
                status: axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "UNSUPPORTED_MEDIA_TYPE",
                detail: "a body must be JSON, sent as Content-Type: application/json",
                field: Some("Content-Type"),
            });
        }
        let mut raw: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&super::integers::integral_literals(&bytes)).map_err(|e| {
                CommandError::invalid(problem::bounded(&format!("malformed JSON: {e}"), 200), None)
            })?
        };
        // No body and a `null` body are `{}`: a command without fields may be sent any of them.
        if raw.is_null() {
            raw = Value::Object(Default::default());
        }
        let value: T = serde_path_to_error::deserialize(&raw).map_err(|e| {
            // Both may echo the client's input (an unknown field's name): kept short.
            let field = problem::bounded(&e.path().to_string(), 64);
            let field = (field != ".").then_some(field);
            CommandError::Invalid {
                detail: problem::bounded(&e.inner().to_string(), 200),
                field,
            }
        })?;
        let mut hasher = Sha256::new();
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(serde_json::to_vec(&raw).unwrap_or_default());
        Ok(JsonBody {
            value,
            hash: hasher.finalize().to_vec(),
        })
    }
}

/// `application/json`, with parameters (`; charset=utf-8`) or without, in any case.
fn is_json(value: &axum::http::HeaderValue) -> bool {
    value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The optional `Idempotency-Key` header: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = CommandError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                CommandError::invalid(
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    Some("Idempotency-Key"),
                )
            })?;
        Ok(IdempotencyKey(Some(key.to_owned())))
    }
}

/// Who calls and how, as the command layer takes it ([`Call`]) but for the hash of the body,
/// which the body's extractor gives: the authenticated caller, the `Idempotency-Key`, the
/// request's id (`problem::request_ids` put it there), the `X-Correlation-Id` it carries on
/// (1 to 128 visible ASCII characters: it is copied into every event and Kafka header), and
/// the trace the request runs in.
#[derive(Debug)]
pub struct Caller {
    call: Call,
}

impl Caller {
    /// The call, with the hash of the request it came with.
    pub fn with(mut self, request_hash: Vec<u8>) -> Call {
        self.call.request_hash = request_hash;
        self.call
    }

    pub fn principal(&self) -> &auth::Principal {
        &self.call.caller
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = axum::response::Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        let auth::http::Caller(caller) =
            auth::http::Caller::from_request_parts(parts, state).await?;
        let IdempotencyKey(key) = IdempotencyKey::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let header = |name: &str| parts.headers.get(name);
        let request_id = header(problem::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
        // The edge refused a correlation id that is not 1 to 128 visible ASCII characters.
        let correlation_id = header(problem::CORRELATION_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| problem::valid_correlation_id(v))
            .map(str::to_owned);
        Ok(Caller {
            call: Call {
                caller,
                key,
                request_hash: Vec::new(),
                request_id,
                correlation_id,
                traceparent: service::telemetry::current_traceparent(),
                forwarded: false,
                // The gate verified it (when authentication is on); the owner of a forwarded
                // command verifies it again.
                credential: auth::http::bearer(&parts.headers)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            },
        })
    }
}
