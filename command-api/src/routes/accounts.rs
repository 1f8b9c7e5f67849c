//! Sign-in (ADR 11): register an account, log in for a token, see who a token is. Accounts
//! live in a table of their own, not in the event log: credentials must not travel to Kafka.
//! Passwords are hashed with argon2id on a blocking thread; a login for an unknown email
//! verifies against a dummy hash, so it takes as long as a wrong password. Registrations are
//! limited per client address, logins per account and per address.

use std::sync::LazyLock;
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use auth::http::{Caller, ClientAddress};
use auth::Role;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::AppState;

/// Register and login: no token needed.
pub(crate) fn open_router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/register", post(register))
        .route("/api/v1/auth/login", post(login))
}

/// Who am I: behind the gate.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/auth/me", get(me))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

/// Invisible format characters (zero-width, bidirectional controls, soft hyphen, BOM): an
/// address holding one looks like another's.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}')
}

/// An email, lower-cased: one `@` between non-empty parts, no spaces, control or invisible
/// characters, at most 254 characters.
fn checked_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let valid = email.chars().count() <= 254
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if valid {
        Ok(email)
    } else {
        Err(ApiError::bad_request(
            "email must be an address like name@example.com",
            Some("email".into()),
        ))
    }
}

fn checked_password(password: &str) -> Result<(), ApiError> {
    let chars = password.chars().count();
    if (12..=128).contains(&chars) && !password.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "password must be 12 to 128 characters, without control characters",
            Some("password".into()),
        ))
    }
}

/// Hashes computed at once at most: one per core. Each takes ~19 MiB and tens of
/// milliseconds; unbounded, a burst of logins would take the memory and every core.
static HASHING: LazyLock<std::sync::Arc<tokio::sync::Semaphore>> = LazyLock::new(|| {
    std::sync::Arc::new(tokio::sync::Semaphore::new(
        std::thread::available_parallelism().map_or(2, |n| n.get()),
    ))
});

/// How long a login or registration waits for a hashing slot before 503 `OVERLOADED`.
const HASHING_WAIT: Duration = Duration::from_secs(2);

/// A hashing slot, to be moved into the blocking closure: it is held until the hash is done,
/// even when the request that asked for it was cut off meanwhile.
async fn hashing_slot() -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    match tokio::time::timeout(HASHING_WAIT, HASHING.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(ApiError::Overloaded),
    }
}

/// An argon2id hash of `password` (on a blocking thread: tens of milliseconds of CPU).
pub(crate) async fn hash(password: String) -> Result<String, ApiError> {
    let slot = hashing_slot().await?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        Argon2::default()
            .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| ApiError::Unavailable(e.to_string()))?
    .map_err(|e| ApiError::Unavailable(e.to_string()))
}

async fn verify(password: String, stored: String) -> Result<bool, ApiError> {
    let slot = hashing_slot().await?;
    Ok(tokio::task::spawn_blocking(move || {
        let _slot = slot;
        PasswordHash::new(&stored).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false))
}

/// 429 unless `key` is within `limit` a minute.
async fn within(app: &AppState, key: &str, limit: u64) -> Result<(), Response> {
    let limiter = &app.access.login_limiter;
    // Against guessing: held through a Redis outage too (this instance counts alone then).
    let verdict = limiter.count_strict(key, limit, 60).await;
    if verdict.allowed {
        Ok(())
    } else {
        Err(auth::http::rate_limited(&verdict, "anonymous"))
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    tag = "accounts",
    summary = "Create a user account (role `user`; ids from 10^12 up)",
    request_body = Credentials,
    responses(
        (status = 201, description = "The account", body = crate::openapi::Registered),
        (status = 409, description = "An account with this email exists", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many sign-ups from this address", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn register(
    State(app): State<AppState>,
    ClientAddress(address): ClientAddress,
    body: JsonBody<Credentials>,
) -> Result<Response, Response> {
    let per_address = app.access.logins_per_address;
    within(&app, &format!("register:{address}"), per_address).await?;
    let email = checked_email(&body.value.email).map_err(IntoResponse::into_response)?;
    checked_password(&body.value.password).map_err(IntoResponse::into_response)?;
    let hashed = hash(body.value.password)
        .await
        .map_err(IntoResponse::into_response)?;
    let created: Option<i64> = sqlx::query_scalar(
        "INSERT INTO accounts (email, password_hash) VALUES ($1, $2) \
         ON CONFLICT (email) DO NOTHING RETURNING user_id",
    )
    .bind(&email)
    .bind(&hashed)
    .fetch_optional(app.log.pool())
    .await
    .map_err(|e| ApiError::Unavailable(e.to_string()).into_response())?;
    match created {
        Some(user_id) => Ok((
            StatusCode::CREATED,
            Json(json!({ "userId": user_id, "email": email, "role": "user" })),
        )
            .into_response()),
        None => {
            let status = StatusCode::CONFLICT;
            Err(problem::response(
                status,
                problem::body(
                    status,
                    "EMAIL_TAKEN",
                    "an account has this email",
                    Some("email"),
                ),
            ))
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "accounts",
    summary = "Sign in: a bearer token for both APIs",
    request_body = Credentials,
    responses(
        (status = 200, description = "A token", body = crate::openapi::SignedIn),
        (status = 401, description = "Unknown email or wrong password", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many sign-ins for this account or from this address", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn login(
    State(app): State<AppState>,
    ClientAddress(address): ClientAddress,
    body: JsonBody<Credentials>,
) -> Result<Response, Response> {
    let access = &app.access;
    within(
        &app,
        &format!("login:address:{address}"),
        access.logins_per_address,
    )
    .await?;
    let email = checked_email(&body.value.email).map_err(IntoResponse::into_response)?;
    if body.value.password.chars().count() > 128 {
        // No password of an account is longer: refused before any hashing work.
        return Err(ApiError::bad_request(
            "password must be at most 128 characters",
            Some("password".into()),
        )
        .into_response());
    }
    within(
        &app,
        &format!("login:account:{email}"),
        access.logins_per_account,
    )
    .await?;
    let found: Option<(i64, String, String)> =
        sqlx::query_as("SELECT user_id, password_hash, role FROM accounts WHERE email = $1")
            .bind(&email)
            .fetch_optional(app.log.pool())
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()).into_response())?;
    // The same work whether or not the account exists: no timing tells which.
    let stored = found
        .as_ref()
        .map_or_else(|| access.dummy_hash.as_ref().clone(), |(_, h, _)| h.clone());
    let matches = verify(body.value.password, stored)
        .await
        .map_err(IntoResponse::into_response)?;
    let (Some((user_id, _, role)), true) = (found, matches) else {
        let status = StatusCode::UNAUTHORIZED;
        return Err(problem::response(
            status,
            problem::body(
                status,
                "INVALID_CREDENTIALS",
                "the email or the password is wrong",
                None,
            ),
        ));
    };
    let role = match role.as_str() {
        "admin" => Role::Admin,
        "service" => Role::Service,
        _ => Role::User,
    };
    let minter = access.minter.as_ref().ok_or_else(|| {
        ApiError::Unavailable("tokens cannot be signed with these settings".into()).into_response()
    })?;
    let ttl = Duration::from_secs(access.login_ttl_seconds);
    let token = minter
        .mint(&user_id.to_string(), role, ttl)
        .map_err(|e| ApiError::Unavailable(e.to_string()).into_response())?;
    Ok(Json(json!({
        "token": token, "tokenType": "Bearer", "expiresIn": ttl.as_secs(), "userId": user_id,
        "role": role.as_str(),
    }))
    .into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "accounts",
    summary = "The caller's identity",
    responses(
        (status = 200, description = "Who the token is", body = crate::openapi::Me),
    )
)]
async fn me(
    State(app): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let email: Option<String> = match caller.user_id() {
        Some(id) => sqlx::query_scalar("SELECT email FROM accounts WHERE user_id = $1")
            .bind(id)
            .fetch_optional(app.log.pool())
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?,
        None => None,
    };
    Ok(Json(json!({
        "subject": caller.subject, "role": caller.role.as_str(), "userId": caller.user_id(),
        "email": email,
    })))
}
