//! Load shedding and the deadline: past the in-flight limit 503 OVERLOADED at once, past the
//! deadline 503 TIMEOUT, both with Retry-After; /health and /ready answer regardless.
#![allow(clippy::unwrap_used)] // a test panics on what it did not expect, by design

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use tokio::sync::Notify;
use tower::ServiceExt;

fn app(release: std::sync::Arc<Notify>) -> Router {
    let limits = problem::Limits::new(1, Duration::from_millis(300));
    Router::new()
        .route(
            "/held",
            get(move || {
                let release = release.clone();
                async move {
                    release.notified().await;
                    "done"
                }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn_with_state(limits, problem::limit))
}

async fn call(app: &Router, path: &str) -> (StatusCode, Option<String>, serde_json::Value) {
    let answer = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = answer.status();
    let retry_after = answer
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(answer.into_body(), 1 << 16)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, retry_after, body)
}

#[tokio::test]
async fn past_the_in_flight_limit_a_request_is_shed_at_once_but_health_answers() {
    let release = std::sync::Arc::new(Notify::new());
    let app = app(release.clone());
    let held = tokio::spawn({
        let app = app.clone();
        async move { call(&app, "/held").await }
    });
    // Wait until the held request has its slot.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, retry_after, body) = call(&app, "/held").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["code"], "OVERLOADED");
    assert_eq!(call(&app, "/health").await.0, StatusCode::OK);
    release.notify_one();
    assert_eq!(held.await.unwrap().0, StatusCode::OK);
    // The slot is free again.
    let again = tokio::spawn({
        let app = app.clone();
        async move { call(&app, "/held").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.notify_one();
    assert_eq!(again.await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn a_request_past_the_deadline_answers_503_timeout() {
    let app = app(std::sync::Arc::new(Notify::new()));
    let (status, retry_after, body) = call(&app, "/slow").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["code"], "TIMEOUT");
}
