//! Faults: SIGKILL of the relay (it runs in the command API) and of the projector in the
//! middle of a stream, Redis stopped, Redis frozen, PostgreSQL frozen under the query API, and
//! thousands of silent sockets. Nothing is lost; read models end equal to an
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

/// One read of the frozen-Redis test: the phase it started in, how long it took, and whether it
/// answered 200 with the balance its user must have.
type Read = (u8, std::time::Duration, StatusCode, bool);

/// Issue 23's probe: a Redis that hangs (SIGSTOP: it accepts and never answers), not one that
/// is down. Under a load of writes and read-your-writes reads by signed-in users (so the rate
/// limiter asks Redis too), every read is answered, right, and without waiting on Redis:
/// before, every read with `X-Min-Position` took 1,005 ms while Redis was frozen. Once Redis
/// answers again and the projector has rewritten it, reads are served from it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_frozen_reads_stay_answered_and_right_and_redis_serves_again_once_resynced() {
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let redis = PrivateRedis::start();
    let system = System::start_with(Some(redis.url()), &[]).await;
    let phase = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let plain = reqwest::Client::new();
    // Four readers, each with 50 users of its own (a user may read 100 times a minute).
    let readers: Vec<_> = (0..4i64)
        .map(|reader| {
            let (admin, plain) = (system.client.clone(), plain.clone());
            let (command, query) = (system.command.clone(), system.query.clone());
            let (phase, stop) = (phase.clone(), stop.clone());
            tokio::spawn(async move {
                let users: Vec<i64> = (0..50).map(|u| 10_000 + reader * 100 + u).collect();
                let tokens: Vec<String> = users
                    .iter()
                    .map(|u| e2e::token(auth::Role::User, &u.to_string()))
                    .collect();
                let mut balances = vec![0i64; users.len()];
                let mut reads: Vec<Read> = Vec::new();
                let mut turn = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let i = turn % users.len();
                    turn += 1;
                    let earned = admin
                        .post(format!("{command}/api/v1/points/earn"))
                        .json(&json!({ "userId": users[i], "amount": 3, "description": "freeze" }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(earned.status(), StatusCode::CREATED);
                    let position = earned.json::<serde_json::Value>().await.unwrap()["position"]
                        .as_i64()
                        .unwrap();
                    balances[i] += 3;
                    let started_in = phase.load(Ordering::Relaxed);
                    let started = Instant::now();
                    let read = plain
                        .get(format!("{query}/api/v1/points/users/{}/balance", users[i]))
                        .bearer_auth(&tokens[i])
                        .header("X-Min-Position", position.to_string())
                        .send()
                        .await
                        .unwrap();
                    let status = read.status();
                    let body: serde_json::Value = read.json().await.unwrap_or_default();
                    reads.push((
                        started_in,
                        started.elapsed(),
                        status,
                        body["balance"].as_i64() == Some(balances[i]),
                    ));
                }
                reads
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = e2e::Scrape::of(&system.query).await;
    let frozen = redis.freeze();
    phase.store(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(8)).await;
    frozen.thaw();
    phase.store(2, Ordering::Relaxed);
    let thawed = Instant::now();
    // Back on Redis: the projector rewrote it (at most a second after it answers) and the
    // query API's probe (once a second) found it caught up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = e2e::Scrape::of(&system.query).await;
    while last.sum("breaker_open", &[("dependency", "redis")]) != 0.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        last = e2e::Scrape::of(&system.query).await;
    }
    let back_after = thawed.elapsed();
    let hits_back = last.sum("hot_reads_total", &[("result", "hit")]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut reads: Vec<Read> = Vec::new();
    for reader in readers {
        reads.extend(reader.await.unwrap());
    }
    let after = e2e::Scrape::of(&system.query).await;

    // p50, p99 and max of the reads that started in `phase`.
    let spread = |phase: u8| {
        let mut took: Vec<Duration> = reads
            .iter()
            .filter(|(p, ..)| *p == phase)
            .map(|(_, took, ..)| *took)
            .collect();
        took.sort();
        let at = |q: f64| {
            took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        (took.len(), at(0.5), at(0.99), at(1.0))
    };
    let (frozen, p50, p99, max) = spread(1);
    let wrong: Vec<_> = reads
        .iter()
        .filter(|(_, _, status, right)| *status != StatusCode::OK || !right)
        .take(5)
        .collect();
    eprintln!(
        "redis frozen 8 s under read-your-writes load: reads (count, p50, p99, max) before \
         {:?}, frozen {:?}, after {:?}; redis served again {back_after:?} after the thaw; \
         breaker opened {} time(s)",
        spread(0),
        (frozen, p50, p99, max),
        spread(2),
        after.sum("breaker_opened_total", &[("dependency", "redis")])
    );
    assert!(wrong.is_empty(), "reads not answered right: {wrong:?}");
    assert!(frozen > 100, "the load ran while Redis was frozen");
    // Not a speed target (the benchmark holds that, p99 included): each read used to wait on
    // Redis for 1,005 ms while it was frozen; reads that do not wait on it take a fraction of
    // that, even on a loaded machine.
    assert!(
        p50 < Duration::from_millis(500),
        "reads waited on a frozen Redis: p50 {p50:?}, p99 {p99:?}"
    );
    assert!(
        before.sum("hot_reads_total", &[("result", "hit")]) > 0.0,
        "Redis served reads before the freeze"
    );
    assert!(
        after.sum("breaker_opened_total", &[("dependency", "redis")]) >= 1.0,
        "the query API saw Redis hang"
    );
    assert_eq!(
        last.sum("breaker_open", &[("dependency", "redis")]),
        0.0,
        "Redis serves reads again once it answers and is caught up"
    );
    assert!(
        after.sum("hot_reads_total", &[("result", "hit")]) > hits_back,
        "reads hit Redis again after the thaw"
    );
    let differences = system.read_model_differences().await;
    assert!(differences.is_empty(), "{differences:?}");
    system.stop().await;
    drop(redis);
}

/// A PostgreSQL that hangs (SIGSTOP to the server and its backends) under the query API:
/// reads Redis can answer alone go on; the others answer 503 problem+json within the read
/// deadline, then at once while it stays frozen — never a hang — and answer again once it
/// is back.
#[tokio::test]
async fn with_the_database_frozen_reads_answer_from_redis_or_503_within_their_deadline() {
    use std::time::{Duration, Instant};

    let postgres = tokio::task::spawn_blocking(e2e::servers::PrivatePostgres::start)
        .await
        .unwrap();
    let system = System::start_over(
        Some(postgres.url()),
        None,
        None,
        &[("APP_DATABASE__TIMEOUT_MS", "500")],
    )
    .await;
    let earned = system
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 5, "amount": 40, "description": "before" }),
        )
        .await;
    assert_eq!(earned.status, StatusCode::CREATED, "{}", earned.body);
    let balance = system
        .get(
            "/api/v1/points/users/5/balance",
            earned.body["position"].as_i64(),
        )
        .await;
    assert_eq!(balance.body["balance"], 40);
    let history = system.get("/api/v1/points/users/5/history", None).await;
    assert_eq!(history.status, StatusCode::OK);

    let frozen = postgres.freeze();
    // Ten balance + history pairs, a few milliseconds apart: the first history read waits the
    // 500 ms deadline and opens the breaker; the rest answer at once (a probe a second may
    // wait its deadline again).
    let mut took = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let balance = system.get("/api/v1/points/users/5/balance", None).await;
        let history = system.get("/api/v1/points/users/5/history", None).await;
        took.push(started.elapsed());
        assert_eq!(
            (balance.status, balance.body["balance"].as_i64()),
            (StatusCode::OK, Some(40)),
            "the balance Redis holds answers without the database"
        );
        assert_eq!(
            history.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            history.body
        );
        assert_eq!(history.body["code"], "UNAVAILABLE", "{}", history.body);
    }
    let metrics = e2e::Scrape::of(&system.query).await;
    frozen.thaw();
    // A pair that waits on the database takes its 500 ms deadline at least.
    let at_once = took
        .iter()
        .filter(|t| **t < Duration::from_millis(400))
        .count();
    eprintln!("database frozen: balance + history pairs answered in {took:?}");
    // Not a speed target: the bound is the 500 ms deadline, then skipping the database.
    assert!(
        took.iter().all(|t| *t < Duration::from_secs(2)),
        "a read waited on the frozen database: {took:?}"
    );
    assert!(
        at_once >= 8,
        "reads went on waiting for the frozen database once it was found hung: {took:?}"
    );
    assert_eq!(
        metrics.sum("breaker_open", &[("dependency", "postgres")]),
        1.0,
        "the query API saw the database hang"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let history = system.get("/api/v1/points/users/5/history", None).await;
        if history.status == StatusCode::OK {
            assert_eq!(history.body["items"][0]["amount"], 40, "{}", history.body);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reads did not come back: {}",
            history.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    system.stop().await;
    drop(postgres);
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
    // 3,000, or fewer where this process (and so the server) may open fewer descriptors: the
    // server holds at most its limit less 128, and this test needs its own.
    let sockets = descriptor_limit()
        .map_or(3_000, |limit| limit.saturating_sub(400) / 2)
        .min(3_000);
    let silent = e2e::sockets::silent(&system.command, sockets).await;
    let answer = system
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 1, "amount": 10, "description": "while 3,000 sockets idle" }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);

    // Every one closed by the server (EOF or reset), none answered.
    let closed = e2e::sockets::closed_by_server(silent, std::time::Duration::from_secs(20)).await;
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
