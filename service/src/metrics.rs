//! Prometheus metrics (ADR 12): every process installs one recorder at start and answers
//! `GET /metrics` in the text exposition format. Libraries record through the `metrics`
//! macros; without a recorder (unit tests, in-process test apps) those cost next to nothing.
//!
//! Names follow Prometheus: base units (`_seconds`, `_bytes`), `_total` for counters. Label
//! values come from a closed set (a route template, a method, a status, an event type), never
//! from what a client typed, so a hostile client cannot grow the series.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds, for every `_seconds` histogram: 0.5 ms to 10 s.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Size buckets, for every `_size` histogram (commands or events in a batch).
const SIZES: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];
/// Histograms keep their samples until drained; drained this often even when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same handle) and, inside a
/// tokio runtime, a task draining the histograms every few seconds so that memory stays flat
/// without a scraper. `process` becomes the `process` label of every series.
pub fn install(process: &'static str) -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .add_global_label("process", process)
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), SIZES))
                .and_then(|b| b.install_recorder());
            let handle = match built {
                Ok(handle) => handle,
                // Only a second recorder can fail here, and `HANDLE` prevents that; keep a
                // working handle regardless rather than stop the process over metrics.
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics stays empty");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            };
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let upkeep = handle.clone();
                runtime.spawn(async move {
                    let mut every = tokio::time::interval(UPKEEP_EVERY);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        every.tick().await;
                        upkeep.run_upkeep();
                    }
                });
            }
            describe();
            handle
        })
        .clone()
}

/// `GET /metrics`: the installed recorder's series (empty before [`install`]).
pub async fn scrape() -> Response {
    let body = HANDLE
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// Middleware counting every answer by method, route template and status, and timing it:
/// `http_requests_total` and `http_request_duration_seconds`. Paths that match no route count
/// under `route="unmatched"`; methods outside the standard ones under `method="OTHER"`.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    // Shared by both series: one allocation per request, not one per series.
    let route: metrics::SharedString = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(metrics::SharedString::const_str("unmatched"), |m| {
            std::sync::Arc::<str>::from(m.as_str()).into()
        });
    let answer = next.run(request).await;
    let status = answer.status().as_u16().to_string();
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    answer
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Help texts of the series every process may export, so `/metrics` explains itself.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "http_requests_total",
        "HTTP answers by method, route and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "time from request to answer, by method and route"
    );
    describe_gauge!(
        "writer_queue_depth",
        "commands queued at the aggregate writers, by aggregate"
    );
    describe_counter!(
        "writer_races_total",
        "writer batches decided again because their commit lost a race (another writer appended first, a taken key or id, a serialization failure), by aggregate"
    );
    describe_histogram!(
        "writer_commit_batch_size",
        "writer batches appended in one transaction by the group committer"
    );
    describe_histogram!(
        "writer_commit_duration_seconds",
        Unit::Seconds,
        "time of one group commit, merged batches and retries included"
    );
    describe_histogram!(
        "eventlog_append_duration_seconds",
        Unit::Seconds,
        "time of one append transaction to the event log"
    );
    describe_counter!(
        "events_appended_total",
        "events appended to the log, by event type"
    );
    describe_gauge!(
        "relay_lag_events",
        "log head minus the last position published to Kafka"
    );
    describe_histogram!(
        "relay_publish_duration_seconds",
        Unit::Seconds,
        "time to publish one batch and have every acknowledgement"
    );
    describe_counter!("relay_published_events_total", "events published to Kafka");
    describe_gauge!(
        "breaker_open",
        "1 while calls to the dependency are skipped (it failed or missed its deadline)"
    );
    describe_counter!(
        "breaker_opened_total",
        "times calls to the dependency started being skipped"
    );
    describe_gauge!(
        "projector_lag_events",
        "log head minus the last position projected"
    );
    describe_histogram!(
        "projector_batch_duration_seconds",
        Unit::Seconds,
        "time to project one batch of events"
    );
    describe_histogram!("projector_batch_size", "events in one projected batch");
    describe_counter!(
        "projector_events_total",
        "events projected, by outcome (applied, parked)"
    );
    describe_gauge!(
        "projector_parked_events",
        "events parked in the live read model, waiting for `replay-tools retry`"
    );
    describe_counter!(
        "hot_reads_total",
        "hot-value reads (stock, balance, remaining coupons) by result: hit, miss, fallback"
    );
    describe_counter!(
        "read_your_writes_waits_total",
        "reads that waited for the projector to reach their X-Min-Position"
    );
    describe_counter!(
        "read_your_writes_timeouts_total",
        "reads whose X-Min-Position was not reached in time"
    );
    describe_histogram!(
        "read_your_writes_wait_seconds",
        Unit::Seconds,
        "time a read waited for its X-Min-Position"
    );
    describe_counter!(
        "rate_limit_rejections_total",
        "requests refused with 429, by role"
    );
    describe_gauge!(
        "replay_progress_events",
        "replay-tools: how far the running command is (log positions or events)"
    );
    describe_gauge!(
        "replay_target_events",
        "replay-tools: where the running command ends"
    );
    describe_counter!(
        "background_failures_total",
        "failed rounds of a background loop, by loop"
    );
}
