//! The gate in front of both APIs' routes (`Router::route_layer`, so it sees the matched
//! route): the bearer token checked (401 problem+json otherwise, with `WWW-Authenticate`), the
//! [`Principal`] put into the request for the handlers ([`Caller`]), and the rate limit of its
//! role and route counted (429 with `Retry-After` and the `RateLimit-*` headers). Routes not
//! behind the gate — health, readiness, metrics, documents, register and login — stay open.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::limit::{RateLimiter, Verdict, Who};
use crate::{AuthError, Authenticator, Forbidden, Principal};

/// What the gate needs.
#[derive(Debug, Clone)]
pub struct Gate {
    /// `None`: authentication switched off (every caller trusted).
    pub authenticator: Option<Arc<Authenticator>>,
    pub limiter: Option<RateLimiter>,
}

/// 401 problem+json.
pub fn unauthenticated(detail: &str) -> Response {
    let status = StatusCode::UNAUTHORIZED;
    let mut response = problem::response(
        status,
        problem::body(status, "UNAUTHENTICATED", detail, Some("Authorization")),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"promo\""),
    );
    response
}

/// 403 problem+json.
pub fn forbidden(reason: &Forbidden) -> Response {
    let status = StatusCode::FORBIDDEN;
    problem::response(status, problem::body(status, "FORBIDDEN", reason.0, None))
}

impl IntoResponse for Forbidden {
    fn into_response(self) -> Response {
        forbidden(&self)
    }
}

/// 429 problem+json with `Retry-After` and the `RateLimit-*` headers, counted in
/// `rate_limit_rejections_total{role}` (`anonymous` for sign-up and sign-in).
pub fn rate_limited(verdict: &Verdict, role: &'static str) -> Response {
    metrics::counter!("rate_limit_rejections_total", "role" => role).increment(1);
    let status = StatusCode::TOO_MANY_REQUESTS;
    let mut response = problem::response(
        status,
        problem::body(
            status,
            "RATE_LIMITED",
            "too many requests; retry after the time Retry-After gives",
            None,
        ),
    );
    let headers = response.headers_mut();
    headers.insert(
        header::RETRY_AFTER,
        HeaderValue::from(verdict.reset_seconds),
    );
    rate_headers(headers, verdict);
    response
}

fn rate_headers(headers: &mut HeaderMap, verdict: &Verdict) {
    headers.insert("ratelimit-limit", HeaderValue::from(verdict.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(verdict.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(verdict.reset_seconds));
}

/// The principal of a request's bearer token.
pub fn principal(gate: &Gate, headers: &HeaderMap) -> Result<Principal, AuthError> {
    let Some(authenticator) = &gate.authenticator else {
        return Ok(Principal::unauthenticated());
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Invalid("not ASCII".into()))?;
    let token = token_of(value).ok_or_else(|| AuthError::Invalid("not a bearer token".into()))?;
    verify_bounded(authenticator, token)
}

/// The token of an `Authorization: Bearer …` header value.
fn token_of(value: &str) -> Option<&str> {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

/// The bearer token a request carries, unverified (`None` without one).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    token_of(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// The principal of `token`, refused unverified past 8 KiB.
pub fn verify_bounded(authenticator: &Authenticator, token: &str) -> Result<Principal, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Invalid("too long".into()));
    }
    authenticator.verify(token)
}

/// The longest bearer token verified.
pub const MAX_TOKEN_BYTES: usize = 8_192;

/// The middleware (`axum::middleware::from_fn_with_state(gate, auth::http::gate)`).
pub async fn gate(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let principal = match principal(&gate, request.headers()) {
        Ok(principal) => principal,
        Err(AuthError::Missing) => return unauthenticated("a bearer token is required"),
        Err(e) => {
            tracing::debug!(error = %e, "token refused");
            return unauthenticated("the bearer token is not valid");
        }
    };
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |m| m.as_str().to_owned(),
    );
    let verdict = match &gate.limiter {
        Some(limiter) if gate.authenticator.is_some() => {
            match limiter.rule(Who::from(principal.role), &route) {
                Some(rule) => {
                    let scope = rule.route.as_deref().unwrap_or("*");
                    let key = format!("{}:{scope}", principal.actor());
                    Some(limiter.check(&key, rule).await)
                }
                None => None,
            }
        }
        _ => None,
    };
    if let Some(verdict) = &verdict {
        if !verdict.allowed {
            return rate_limited(verdict, principal.role.as_str());
        }
    }
    request.extensions_mut().insert(principal);
    let mut response = next.run(request).await;
    if let Some(verdict) = &verdict {
        rate_headers(response.headers_mut(), verdict);
    }
    response
}

/// The authenticated caller, as the gate left it. A route not behind the gate has none: 401
/// (never a default principal).
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| unauthenticated("a bearer token is required"))
    }
}

/// The client's address as per-address limits key it ([`problem::client`]): the peer of the
/// connection — or the address a trusted proxy forwarded, never a header anyone else sent —
/// an IPv6 address by its /64; `unknown` when the server does not record it.
#[derive(Debug, Clone)]
pub struct ClientAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        use problem::client::ClientIp;
        let client = parts.extensions.get::<ClientIp>().copied().or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| ClientIp(c.0.ip().to_canonical()))
        });
        Ok(ClientAddress(
            client.map_or_else(|| "unknown".into(), ClientIp::limit_key),
        ))
    }
}
