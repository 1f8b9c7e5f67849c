//! OpenTelemetry traces (ADR 12): with `telemetry.otlp_endpoint` set, one command's spans —
//! its HTTP request, the writer, the append — share the trace id the client sent in
//! `traceparent`; the event's metadata and its Kafka headers carry it to outside consumers,
//! and the projector's batch span links to it. The collector is a local OTLP/HTTP receiver.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::System;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A span as OTLP/JSON gives it: (service, name, trace id, linked trace ids).
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    links: Vec<String>,
}

/// An OTLP/HTTP receiver on 127.0.0.1: every span posted to `/v1/traces`.
async fn collector() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let received = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let received = received.clone();
            async move {
                let export: Value = serde_json::from_slice(&body).unwrap();
                received.lock().unwrap().extend(spans_of(&export));
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

fn spans_of(export: &Value) -> Vec<Span> {
    let mut out = Vec::new();
    for resource in export["resourceSpans"].as_array().into_iter().flatten() {
        let service = resource["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or_default()
            .to_owned();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                out.push(Span {
                    service: service.clone(),
                    name: span["name"].as_str().unwrap_or_default().to_owned(),
                    trace_id: span["traceId"].as_str().unwrap_or_default().to_lowercase(),
                    links: span["links"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|l| l["traceId"].as_str().map(str::to_lowercase))
                        .collect(),
                });
            }
        }
    }
    out
}

#[tokio::test]
async fn one_command_is_one_trace_from_http_through_the_append_to_kafka_and_the_projector() {
    let (endpoint, spans) = collector().await;
    let system = System::start_with(
        None,
        &[
            ("APP_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
            // Export every 200 ms instead of every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )
    .await;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!(
        "00-{trace_id}-{}-01",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let answer = system
        .client
        .post(format!("{}/api/v1/points/earn", system.command))
        .header("traceparent", &traceparent)
        .json(&json!({ "userId": 3, "amount": 10, "description": "traced" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::CREATED);
    system.projected().await;

    // The event's metadata carries the trace...
    let stored: Value =
        sqlx::query_scalar("SELECT metadata FROM events ORDER BY position DESC LIMIT 1")
            .fetch_one(&system.pool)
            .await
            .unwrap();
    let stored = stored["traceparent"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        stored.starts_with(&format!("00-{trace_id}-")),
        "metadata: {stored}"
    );
    // ...and so do its Kafka headers, for an outside consumer.
    let consumed = system.consume_with_headers(1).await;
    let header = consumed[0]
        .headers
        .iter()
        .find(|(k, _)| k == "traceparent")
        .map(|(_, v)| v.clone());
    assert_eq!(header.as_deref(), Some(stored.as_str()));

    // A malformed traceparent is no trace: the request starts a trace of its own.
    for bad in [
        "garbage",
        "00-00000000000000000000000000000000-0000000000000000-01",
        &"f".repeat(4000),
    ] {
        let answer = system
            .client
            .post(format!("{}/api/v1/points/earn", system.command))
            .header("traceparent", bad)
            .json(&json!({ "userId": 4, "amount": 1, "description": "untraced" }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            StatusCode::CREATED,
            "traceparent {}",
            &bad[..bad.len().min(40)]
        );
        let stored: Value =
            sqlx::query_scalar("SELECT metadata FROM events ORDER BY position DESC LIMIT 1")
                .fetch_one(&system.pool)
                .await
                .unwrap();
        let own = stored["traceparent"].as_str().unwrap_or_default();
        assert!(
            own.starts_with("00-") && own.len() == 55 && !own.contains(&bad[..bad.len().min(40)]),
            "{own}"
        );
    }

    // The spans: HTTP request, writer and append in the client's trace; a projector batch
    // linked to it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let wanted = ["request", "writer.execute", "eventlog.append"];
    loop {
        let got = spans.lock().unwrap().clone();
        let in_trace: Vec<&Span> = got.iter().filter(|s| s.trace_id == trace_id).collect();
        let has = |name: &str| {
            in_trace
                .iter()
                .any(|s| s.name == name && s.service == "command-api")
        };
        let linked = got.iter().any(|s| {
            s.service == "projector" && s.name == "projector.batch" && s.links.contains(&trace_id)
        });
        if wanted.iter().all(|name| has(name)) && linked {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spans of trace {trace_id} missing; in the trace: {in_trace:?}; projector linked: {linked}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    system.stop().await;
}

/// A collector that takes connections and never answers: the services still stop within a
/// second of SIGTERM (the last spans are given 600 ms), and go on serving meanwhile.
#[tokio::test]
async fn a_silent_collector_neither_slows_commands_nor_holds_the_exit() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    // Accepted by the kernel's backlog, never read: every export waits for its timeout.
    let mut system = System::start_with(
        None,
        &[
            ("APP_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    for user in 1..=20 {
        let earned = system
            .post(
                "/api/v1/points/earn",
                json!({ "userId": user, "amount": 1, "description": "unheard" }),
            )
            .await;
        assert_eq!(earned.status, StatusCode::CREATED, "{}", earned.body);
    }
    system.projected().await;
    for name in [e2e::COMMAND_API, e2e::QUERY_API, e2e::PROJECTOR] {
        let took = system.terminate(name);
        eprintln!("{name} stopped in {took:?}");
        assert!(
            took < Duration::from_millis(1500),
            "{name} took {took:?} to stop"
        );
    }
    drop(silent);
    system.stop().await;
}
