//! Request extractors that answer malformed input with the same problem details as any other
//! error: a JSON body that also yields its canonical hash (for idempotency keys), and the
//! `Idempotency-Key` header.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

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
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let path = req.uri().path().to_owned();
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(MAX_BODY_BYTES.load(std::sync::atomic::Ordering::Relaxed))
            } else {
                ApiError::bad_request(format!("unreadable body: {e}"), None)
            }
        })?;
        let raw: Value = if bytes.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::bad_request(problem::bounded(&format!("malformed JSON: {e}"), 200), None)
            })?
        };
        let value: T = serde_path_to_error::deserialize(&raw).map_err(|e| {
            // Both may echo the client's input (an unknown field's name): kept short.
            let field = problem::bounded(&e.path().to_string(), 64);
            let field = (field != ".").then_some(field);
            ApiError::bad_request(problem::bounded(&e.inner().to_string(), 200), field)
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

/// The optional `Idempotency-Key` header: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    Some("Idempotency-Key".into()),
                )
            })?;
        Ok(IdempotencyKey(Some(key.to_owned())))
    }
}
