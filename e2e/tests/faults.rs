//! Faults: SIGKILL of the relay (it runs in the command API) and of the projector in the
//! middle of a stream, Redis stopped, and thousands of silent sockets. Nothing is lost; read models end equal to an
//! uninterrupted projection; reads keep answering from PostgreSQL without Redis. (The broker
//! stopped, and events the projector cannot apply: `read_side.rs`.)
#![allow(clippy::unwrap_used)]

use e2e::servers::PrivateRedis;
use e2e::{System, COMMAND_API, PROJECTOR};
use reqwest::StatusCode;
use serde_json::json;

/// Earns for `users` users, `rounds` times, counting accepted commands (some may hit a
/// killed process; those are refused, not lost).
async fn earn_load(system: &System, users: std::ops::Range<i64>, rounds: usize) -> usize {
    let mut accepted = 0;
    for _ in 0..rounds {
        for user in users.clone() {
            let sent = system
                .client
                .post(format!("{}/api/v1/points/earn", system.command))
                .json(&json!({ "userId": user, "amount": 10, "description": "load" }))
                .send()
                .await;
            if sent.is_ok_and(|r| r.status() == StatusCode::CREATED) {
                accepted += 1;
            }
        }
    }
    accepted
}

#[tokio::test]
async fn killing_the_relay_mid_stream_loses_no_event() {
    let mut system = System::start().await;
    earn_load(&system, 1..20, 2).await;
    // SIGKILL the process running the relay in the middle of a concurrent burst of commands
    // (requests after the kill fail; what was committed must all reach Kafka), then restart.
    let burst: Vec<_> = (0..400)
        .map(|n| {
            let client = system.client.clone();
            let base = system.command.clone();
            tokio::spawn(async move {
                let body = json!({ "userId": 100 + n % 50, "amount": 1, "description": "burst" });
                client
                    .post(format!("{base}/api/v1/points/earn"))
                    .json(&body)
                    .send()
                    .await
                    .is_ok()
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    system.kill(COMMAND_API);
    for request in burst {
        let _ = request.await;
    }
    system.launch(COMMAND_API).await;
    earn_load(&system, 40..60, 5).await;
    let head = system.relayed().await;

    let published = system.published_event_ids(head as usize).await;
    let logged = system.logged_event_ids().await;
    assert_eq!(logged.len() as i64, head);
    let missing: Vec<_> = logged.difference(&published).collect();
    assert!(
        missing.is_empty(),
        "{} events never reached Kafka",
        missing.len()
    );
    system.stop().await;
}

#[tokio::test]
async fn killing_the_projector_mid_stream_ends_with_the_same_read_models() {
    let mut system = System::start().await;
    earn_load(&system, 1..30, 2).await;
    // SIGKILL the projector while a burst is being projected, keep writing, restart it.
    let load = {
        let client = system.client.clone();
        let base = system.command.clone();
        tokio::spawn(async move {
            for round in 0..2 {
                for user in 1..50 {
                    let body = json!({ "userId": user, "amount": 10, "description": format!("burst {round}") });
                    client
                        .post(format!("{base}/api/v1/points/earn"))
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                }
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    system.kill(PROJECTOR);
    load.await.unwrap();
    earn_load(&system, 50..70, 3).await;
    system.launch(PROJECTOR).await;
    system.projected().await;
    let differences = system.read_model_differences().await;
    assert!(differences.is_empty(), "{differences:?}");
    let balance = system.get("/api/v1/points/users/1/balance", None).await;
    assert_eq!(
        balance.body["balance"], 40,
        "2 loads of 10 and a burst of 2 × 10"
    );
    system.stop().await;
}

#[tokio::test]
async fn with_redis_stopped_balances_and_stock_still_answer_from_postgres() {
    let mut redis = PrivateRedis::start();
    let system = System::start_with(Some(redis.url()), &[]).await;
    let earned = system
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 3, "amount": 70, "description": "e" }),
        )
        .await;
    let sale_id = system.open_sale(9).await;
    let order = system
        .post(
            "/api/v1/orders",
            json!({ "timeSaleId": sale_id, "userId": 3, "quantity": 4 }),
        )
        .await;
    let position = order.body["position"].as_i64();
    assert_eq!(
        system
            .get("/api/v1/points/users/3/balance", position)
            .await
            .body["balance"],
        70
    );
    let _ = earned;

    redis.stop();
    let balance = system.get("/api/v1/points/users/3/balance", None).await;
    assert_eq!(
        (balance.status, balance.body["balance"].as_i64()),
        (StatusCode::OK, Some(70))
    );
    let stock = system
        .get(&format!("/api/v1/time-sales/{sale_id}"), None)
        .await;
    assert_eq!(
        (stock.status, stock.body["remainingQuantity"].as_i64()),
        (StatusCode::OK, Some(5))
    );

    // Writes go on and are read back (watermark and values from PostgreSQL).
    let more = system
        .post(
            "/api/v1/orders",
            json!({ "timeSaleId": sale_id, "userId": 4, "quantity": 2 }),
        )
        .await;
    assert_eq!(more.status, StatusCode::CREATED);
    let stock = system
        .get(
            &format!("/api/v1/time-sales/{sale_id}"),
            more.body["position"].as_i64(),
        )
        .await;
    assert_eq!(
        (stock.status, stock.body["remainingQuantity"].as_i64()),
        (StatusCode::OK, Some(3))
    );
    system.stop().await;
}

/// Thousands of sockets that connect and send nothing (issue 23's probe): command-api closes
/// every one after its header-read deadline, counts them in `/metrics`, and a valid caller gets
/// its answer while they are held and after.
#[tokio::test]
async fn thousands_of_silent_sockets_are_closed_and_valid_callers_keep_their_answers() {
    let system = System::start_with(
        None,
        &[
            ("APP_SERVER__HEADER_READ_TIMEOUT_MS", "2000"),
            ("APP_SERVER__IDLE_TIMEOUT_MS", "2000"),
        ],
    )
    .await;
    let address = system.command.trim_start_matches("http://").to_owned();
    // 3,000, or fewer where this process (and so the server) may open fewer descriptors: the
    // server holds at most its limit less 128, and this test needs its own.
    let sockets = descriptor_limit()
        .map_or(3_000, |limit| limit.saturating_sub(400) / 2)
        .min(3_000);
    let mut silent = Vec::new();
    for _ in 0..sockets {
        silent.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    let answer = system
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 1, "amount": 10, "description": "while 3,000 sockets idle" }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);

    // Every one closed by the server (EOF or reset), none answered.
    let mut reads = tokio::task::JoinSet::new();
    for mut socket in silent {
        reads.spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 64];
            matches!(
                tokio::time::timeout(std::time::Duration::from_secs(20), socket.read(&mut buf))
                    .await,
                Ok(Ok(0)) | Ok(Err(_))
            )
        });
    }
    let closed = reads.join_all().await.into_iter().filter(|c| *c).count();
    assert_eq!(closed, sockets, "silent sockets the server closed");

    let metrics = e2e::Scrape::of(&system.command).await;
    let silent_closed = metrics.sum("http_connections_closed_total", &[("reason", "silent")]);
    assert!(silent_closed >= sockets as f64, "{silent_closed} counted");
    let answer = system
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 1, "amount": 10, "description": "after" }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    system.stop().await;
}

/// This process's soft limit of open files, from `/proc/self/limits`.
fn descriptor_limit() -> Option<usize> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}
