//! `/api/v1/auth/…`: register and login (no token needed), and who am I (behind the gate).

use auth::http::ClientAddress;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::extract::JsonBody;
use crate::commands::accounts::{Credentials, Me, Registered, SignInError, SignedIn};
use crate::commands::{CommandError, Commands};

/// Register and login: no token needed.
pub(super) fn open() -> Router<Commands> {
    Router::new()
        .route("/api/v1/auth/register", post(register))
        .route("/api/v1/auth/login", post(login))
}

/// Who am I: behind the gate.
pub(super) fn gated() -> Router<Commands> {
    Router::new().route("/api/v1/auth/me", get(me))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    tag = "accounts",
    summary = "Create a user account (role `user`; ids from 10^12 up)",
    request_body = Credentials,
    responses(
        (status = 201, description = "The account", body = Registered),
        (status = 409, description = "An account with this email exists", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many sign-ups from this address", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn register(
    State(commands): State<Commands>,
    ClientAddress(address): ClientAddress,
    body: JsonBody<Credentials>,
) -> Result<(StatusCode, Json<Registered>), SignInError> {
    let registered = commands.register(&address, body.value).await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "accounts",
    summary = "Sign in: a bearer token for both APIs",
    request_body = Credentials,
    responses(
        (status = 200, description = "A token", body = SignedIn),
        (status = 401, description = "Unknown email or wrong password", body = problem::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many sign-ins for this account or from this address", body = problem::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn login(
    State(commands): State<Commands>,
    ClientAddress(address): ClientAddress,
    body: JsonBody<Credentials>,
) -> Result<Json<SignedIn>, SignInError> {
    Ok(Json(commands.login(&address, body.value).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "accounts",
    summary = "The caller's identity",
    responses(
        (status = 200, description = "Who the token is", body = Me),
    )
)]
pub(super) async fn me(
    State(commands): State<Commands>,
    auth::http::Caller(caller): auth::http::Caller,
) -> Result<Json<Me>, CommandError> {
    Ok(Json(commands.me(&caller).await?))
}
