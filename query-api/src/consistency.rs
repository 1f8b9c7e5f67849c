//! Read-your-writes (`X-Min-Position`), in front of every read route.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{AppState, QueryError};

/// Read-your-writes: with `X-Min-Position: P`, wait until the watermark reaches P (polling
/// every few milliseconds, less often as the wait grows), at most `consistency_wait`; then
/// 503 with `Retry-After`. A P no command has answered yet (beyond the log's head) is a 422
/// at once, not a wait.
pub(crate) async fn consistency(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(raw) = request.headers().get("x-min-position") else {
        return next.run(request).await;
    };
    let Some(wanted) = raw
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|p| *p >= 0)
    else {
        return QueryError::BadRequest {
            detail: "X-Min-Position must be a non-negative integer".into(),
            field: "X-Min-Position",
        }
        .into_response();
    };
    let started = tokio::time::Instant::now();
    let deadline = started + state.consistency_wait;
    let mut checked_log = false;
    let mut waited = false;
    let reached = loop {
        match state.watermark().await {
            Ok(position) if position >= wanted => break position,
            Ok(_) if !checked_log && tokio::time::Instant::now() < deadline => {
                match state.in_log(wanted).await {
                    Ok(Some(true)) => checked_log = true,
                    Ok(None) => {
                        waited = true;
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                    Ok(Some(false)) => {
                        return QueryError::UnknownPosition(wanted).into_response();
                    }
                    Err(e) => return e.into_response(),
                }
            }
            Ok(_) if tokio::time::Instant::now() >= deadline => {
                metrics::counter!("read_your_writes_timeouts_total").increment(1);
                return QueryError::NotYetConsistent(wanted).into_response();
            }
            Ok(_) => {
                waited = true;
                // 3 ms while a fresh write is normally seen; 20 ms once the projector is late.
                let pause = if started.elapsed() < Duration::from_millis(100) {
                    3
                } else {
                    20
                };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(e) => return e.into_response(),
        }
    };
    if waited {
        metrics::counter!("read_your_writes_waits_total").increment(1);
        metrics::histogram!("read_your_writes_wait_seconds")
            .record(started.elapsed().as_secs_f64());
    }
    // The faults this read is checked against must include every event up to `wanted`.
    if let Err(e) = state.faults_up_to(wanted).await {
        return e.into_response();
    }
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&reached.to_string()) {
        response
            .headers_mut()
            .insert("x-projection-position", value);
    }
    response
}
