//! What an operator sees (ADR 12): every process's `/metrics` before and after a short load —
//! the HTTP, writer, event-log, relay, projector, hot-read, read-your-writes and rate-limit
//! series move, the lags go back to 0 once the load ends, and a parked event shows.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::{Scrape, System, PROJECTOR};
use eventlog::{AppendBatch, EventLog, NewEvent, StreamAppend};
use reqwest::StatusCode;
use serde_json::json;

/// Scrapes `base` until `ready` holds for a scrape, at most 15 s; returns that scrape.
async fn scrape_until(base: &str, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let scrape = Scrape::of(base).await;
        if ready(&scrape) {
            return scrape;
        }
        assert!(Instant::now() < deadline, "{base}: {what} never held");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_process_exports_its_series_and_they_move_under_load() {
    // A wait long enough for a projector restart (the read-your-writes case below).
    let mut system = System::start_with(None, &[("APP_CONSISTENCY_WAIT_MS", "5000")]).await;
    let before = [
        Scrape::of(&system.command).await,
        Scrape::of(&system.query).await,
    ];

    // The load: a sale and 200 orders from 20 buyers at once, points earned, reads.
    let sale_id = system.open_sale(150).await;
    let mut orders = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (client, url) = (
            system.client.clone(),
            format!("{}/api/v1/orders", system.command),
        );
        let body = json!({ "timeSaleId": sale_id, "userId": i % 20 + 1, "quantity": 1 });
        orders.spawn(async move { client.post(url).json(&body).send().await.unwrap().status() });
    }
    let statuses = orders.join_all().await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        150
    );
    let earned = system
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 1, "amount": 10, "description": "welcome" }),
        )
        .await;
    let at = earned.body["position"].as_i64();
    let read = system
        .get(&format!("/api/v1/time-sales/{sale_id}"), at)
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["remainingQuantity"], 0, "{}", read.body);

    // Read-your-writes: with the projector stopped, a read of a fresh position times out; one
    // that the restarted projector reaches while it waits counts as a wait.
    system.kill(PROJECTOR);
    let fresh = system
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 2, "amount": 5, "description": "later" }),
        )
        .await
        .body["position"]
        .as_i64();
    let timed_out = system.get("/api/v1/points/users/2/balance", fresh).await;
    assert_eq!(timed_out.status, StatusCode::SERVICE_UNAVAILABLE);
    let waiting = {
        let client = system.client.clone();
        let url = format!("{}/api/v1/points/users/2/balance", system.query);
        tokio::spawn(async move {
            client
                .get(url)
                .header("X-Min-Position", fresh.unwrap().to_string())
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    system.launch(PROJECTOR).await;
    assert_eq!(waiting.await.unwrap(), StatusCode::OK);

    // One user past the default 100 requests a minute (201: a window boundary in between
    // still leaves one window over its limit).
    let user = reqwest::Client::new();
    let bearer = format!("Bearer {}", e2e::token(auth::Role::User, "5"));
    let mut limited = 0;
    for _ in 0..201 {
        let answer = user
            .get(format!("{}/api/v1/points/users/5/balance", system.query))
            .header("Authorization", &bearer)
            .send()
            .await
            .unwrap();
        limited += usize::from(answer.status() == StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(limited > 0, "the user was never limited");

    // One event the projector cannot decode: parked, and the gauge says so.
    let stream = uuid::Uuid::new_v4();
    EventLog::from_pool(system.pool.clone())
        .append(&AppendBatch {
            streams: vec![StreamAppend {
                stream_id: stream,
                category: "point".into(),
                expected_version: 0,
                events: vec![NewEvent {
                    event_id: uuid::Uuid::new_v4(),
                    event_type: "point.earned".into(),
                    schema_version: 99,
                    data: json!({ "from": "the future" }),
                    metadata: json!({ "actor": "test" }),
                }],
            }],
            ..AppendBatch::default()
        })
        .await
        .unwrap();
    system.projected().await;
    system.relayed().await;

    // A stalled relay and projector show their lag: hold the rows they move (the relay's
    // checkpoint, the watermark) locked, so their next batch waits; the gauges are sampled from
    // the database every second, whatever the followers' loops are doing.
    let live = readmodel::generation::current(&system.pool, "rm")
        .await
        .unwrap();
    let mut stall = system.pool.begin().await.unwrap();
    sqlx::query("SELECT position FROM relay_checkpoint WHERE name = 'kafka' FOR UPDATE")
        .execute(&mut *stall)
        .await
        .unwrap();
    sqlx::query(&format!(
        "SELECT position FROM {}.projection_watermark FOR UPDATE",
        live.schema
    ))
    .execute(&mut *stall)
    .await
    .unwrap();
    for user in 1..=3 {
        let earned = system
            .post(
                "/api/v1/points/earn",
                json!({ "userId": user, "amount": 1, "description": "while stalled" }),
            )
            .await;
        assert_eq!(earned.status, StatusCode::CREATED, "{}", earned.body);
    }
    scrape_until(&system.command, "relay lag above 0 while stalled", |s| {
        s.sum("relay_lag_events", &[]) >= 3.0
    })
    .await;
    scrape_until(
        &system.projector,
        "projector lag above 0 while stalled",
        |s| s.sum("projector_lag_events", &[]) >= 3.0,
    )
    .await;
    stall.rollback().await.unwrap();
    system.projected().await;
    system.relayed().await;

    // After the load: lags back to 0, and every series moved.
    let command = scrape_until(&system.command, "relay lag 0", |s| {
        s.has("relay_lag_events") && s.sum("relay_lag_events", &[]) == 0.0
    })
    .await;
    let projector = scrape_until(&system.projector, "projector lag 0, 1 parked", |s| {
        s.has("projector_lag_events")
            && s.sum("projector_lag_events", &[]) == 0.0
            && s.sum("projector_parked_events", &[]) == 1.0
    })
    .await;
    let query = Scrape::of(&system.query).await;
    let grew = |before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]| {
        let (was, is) = (before.sum(name, labels), after.sum(name, labels));
        assert!(is > was, "{name}{labels:?} did not move: {was} → {is}");
    };
    let orders = [("route", "/api/v1/orders"), ("status", "201")];
    grew(&before[0], &command, "http_requests_total", &orders);
    grew(
        &before[0],
        &command,
        "http_requests_total",
        &[("status", "422")],
    );
    grew(
        &before[0],
        &command,
        "http_request_duration_seconds_count",
        &[("route", "/api/v1/orders")],
    );
    grew(&before[0], &command, "writer_commit_batch_size_count", &[]);
    grew(
        &before[0],
        &command,
        "writer_commit_duration_seconds_count",
        &[],
    );
    grew(
        &before[0],
        &command,
        "eventlog_append_duration_seconds_count",
        &[],
    );
    assert_eq!(
        command.sum("events_appended_total", &[("type", "order.created")]),
        150.0
    );
    assert!(command.has("writer_queue_depth"));
    assert_eq!(
        command.sum("writer_queue_depth", &[]),
        0.0,
        "every queued command was taken"
    );
    grew(&before[0], &command, "relay_published_events_total", &[]);
    grew(
        &before[0],
        &command,
        "relay_publish_duration_seconds_count",
        &[],
    );

    // The projector restarted: its counters start again from 0.
    assert!(projector.sum("projector_events_total", &[("outcome", "applied")]) >= 1.0);
    assert_eq!(
        projector.sum("projector_events_total", &[("outcome", "parked")]),
        1.0
    );
    assert!(projector.sum("projector_batch_duration_seconds_count", &[]) >= 1.0);
    assert!(projector.sum("projector_batch_size_sum", &[]) >= 2.0);

    grew(
        &before[1],
        &query,
        "http_requests_total",
        &[("route", "/api/v1/time-sales/{id}")],
    );
    grew(&before[1], &query, "hot_reads_total", &[("result", "hit")]);
    grew(&before[1], &query, "read_your_writes_waits_total", &[]);
    grew(
        &before[1],
        &query,
        "read_your_writes_wait_seconds_count",
        &[],
    );
    grew(&before[1], &query, "read_your_writes_timeouts_total", &[]);
    grew(
        &before[1],
        &query,
        "rate_limit_rejections_total",
        &[("role", "user")],
    );
    assert_eq!(
        query.sum("http_requests_total", &[("status", "429")]),
        query.sum("rate_limit_rejections_total", &[]),
    );
    // Traces are off here: no event carries a trace context.
    let traced: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE metadata ? 'traceparent'")
            .fetch_one(&system.pool)
            .await
            .unwrap();
    assert_eq!(traced, 0);
    // Every series is labelled with its process.
    for (scrape, process) in [
        (&command, "command-api"),
        (&query, "query-api"),
        (&projector, "projector"),
    ] {
        assert_eq!(
            scrape.sum("http_requests_total", &[]),
            scrape.sum("http_requests_total", &[("process", process)]),
        );
    }
    system.stop().await;
}
