//! The read side follows the event log, so nothing outside it can stop it: with the broker
//! down, commands succeed and reads see them; an event the projector cannot apply is parked
//! and the rest goes on; the projector stops within a second of SIGTERM even while it waits
//! or retries; a standby projector takes over within seconds of the leader's kill -9.
//! `replay-tools verify` passes after each.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use domain::points::point_account_id;
use domain::values::UserId;
use e2e::servers::PrivateBroker;
use e2e::{System, PROJECTOR};
use eventlog::{AppendBatch, EventLog, NewEvent, StreamAppend};
use reqwest::StatusCode;
use serde_json::json;

fn position(answer: &e2e::Answer) -> Option<i64> {
    Some(
        answer.body["position"]
            .as_i64()
            .expect("a command answers with its position"),
    )
}

async fn earn(system: &System, user: i64, amount: i64) -> e2e::Answer {
    let answer = system
        .post(
            "/api/v1/points/earn",
            json!({ "userId": user, "amount": amount, "description": "earned" }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    answer
}

async fn assert_verify_passes(system: &System) {
    let (code, out) = system.replay_tools(&["verify"]);
    assert_eq!(code, 0, "verify: {out}");
}

#[tokio::test]
async fn with_the_broker_down_commands_and_reads_go_on_and_kafka_gets_every_event_once_it_is_back()
{
    let mut broker = PrivateBroker::start();
    let system = System::start_on(None, Some(broker.brokers()), &[]).await;
    let mut balances: HashMap<i64, i64> = HashMap::new();
    for user in 1..=5 {
        earn(&system, user, 10).await;
        balances.insert(user, 10);
    }
    system.relayed().await;

    broker.kill();
    // 70 s without a broker: every command is accepted and read back with its position.
    let outage = Instant::now();
    let mut commands = 0;
    while outage.elapsed() < Duration::from_secs(70) {
        let user = commands % 5 + 1;
        let earned = earn(&system, user, 1).await;
        *balances.get_mut(&user).unwrap() += 1;
        commands += 1;
        let read = system
            .get(
                &format!("/api/v1/points/users/{user}/balance"),
                position(&earned),
            )
            .await;
        assert_eq!(
            (read.status, read.body["balance"].as_i64()),
            (StatusCode::OK, Some(balances[&user])),
            "{}",
            read.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let relayed_during = relay::checkpoint(&system.pool).await.unwrap();

    broker.restart();
    let back = Instant::now();
    let head = system.relayed().await;
    eprintln!(
        "{commands} commands during the outage; relay at {relayed_during} of {head} when the broker came back, \
         caught up {:.1} s after",
        back.elapsed().as_secs_f64()
    );
    assert!(relayed_during < head, "the outage held the relay back");

    // An outside consumer from offset 0 sees every event of the log.
    let published = system.published_event_ids(head as usize).await;
    let logged = system.logged_event_ids().await;
    assert_eq!(logged.len() as i64, head);
    let missing: Vec<_> = logged.difference(&published).collect();
    assert!(
        missing.is_empty(),
        "{} events never reached Kafka",
        missing.len()
    );
    assert_verify_passes(&system).await;
    system.stop().await;
}

/// Appends one event straight into the log, after the stream's last version.
async fn append(system: &System, stream: uuid::Uuid, category: &str, event: NewEvent) -> i64 {
    let log = EventLog::from_pool(system.pool.clone());
    let version = log
        .read_stream(stream, 0, None)
        .await
        .unwrap()
        .last()
        .map_or(0, |e| e.version);
    let appended = log
        .append(&AppendBatch {
            streams: vec![StreamAppend {
                stream_id: stream,
                category: category.into(),
                expected_version: version,
                events: vec![event],
            }],
            ..AppendBatch::default()
        })
        .await
        .unwrap();
    appended[0].first_position
}

fn earned_event(
    user: i64,
    description: &str,
    amount: i64,
    balance_after: i64,
    version: i16,
) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "point.earned".into(),
        schema_version: version,
        data: json!({ "userId": user, "transactionId": uuid::Uuid::new_v4(), "amount": amount,
                      "description": description, "balanceAfter": balance_after,
                      "occurredAt": chrono::Utc::now() }),
        metadata: json!({ "actor": "test" }),
    }
}

fn account(user: i64) -> uuid::Uuid {
    point_account_id(UserId::parse(user, "userId").unwrap())
}

/// Reads until the answer is not `status` any more (the query API re-reads the parked
/// events every 100 ms), at most 5 s.
async fn read_past(system: &System, path: &str, status: StatusCode) -> e2e::Answer {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let read = system.get(path, None).await;
        if read.status != status || Instant::now() > deadline {
            return read;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_event_the_projector_cannot_apply_is_parked_the_rest_goes_on_and_retry_applies_it() {
    let system = System::start().await;
    earn(&system, 1, 100).await;
    earn(&system, 2, 50).await;
    system.projected().await;

    // PostgreSQL will refuse one event's data (a constraint of the read model, as a schema
    // change gone wrong would), and another is of a version this projector cannot decode.
    sqlx::query(
        "ALTER TABLE rm.point_history ADD CONSTRAINT no_poison CHECK (description <> 'poison')",
    )
    .execute(&system.pool)
    .await
    .unwrap();
    let refused = append(
        &system,
        account(1),
        "point",
        earned_event(1, "poison", 10, 110, 1),
    )
    .await;
    let undecodable = append(
        &system,
        account(3),
        "point",
        earned_event(3, "future", 1, 1, 99),
    )
    .await;
    // A later event of the same account queues behind the refused one; other accounts go on.
    let behind = earn(&system, 1, 5).await;
    let fresh = earn(&system, 2, 7).await;

    let other = system
        .get("/api/v1/points/users/2/balance", position(&fresh))
        .await;
    assert_eq!(
        (other.status, other.body["balance"].as_i64()),
        (StatusCode::OK, Some(57))
    );
    let faulted = system
        .get("/api/v1/points/users/1/balance", position(&behind))
        .await;
    assert_eq!(faulted.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        (
            faulted.body["code"].as_str(),
            faulted.body["position"].as_i64()
        ),
        (Some("PROJECTION_FAULTED"), Some(refused)),
        "{}",
        faulted.body
    );
    assert_eq!(faulted.retry_after.as_deref(), Some("1"));
    let history = system.get("/api/v1/points/users/1/history", None).await;
    assert_eq!(history.body["code"], "PROJECTION_FAULTED");
    let unreadable = system.get("/api/v1/points/users/3/balance", None).await;
    assert_eq!(
        (
            unreadable.body["code"].as_str(),
            unreadable.body["position"].as_i64()
        ),
        (Some("PROJECTION_FAULTED"), Some(undecodable))
    );

    let (code, listed) = system.replay_tools(&["parked"]);
    assert_eq!(code, 0);
    assert!(
        listed.contains(&format!("#{refused} point.earned")),
        "{listed}"
    );
    assert!(listed.contains("no_poison"), "the error is shown: {listed}");
    assert!(
        listed.contains(&format!("#{undecodable} point.earned")),
        "{listed}"
    );
    assert!(listed.contains("3 parked event(s)"), "{listed}");
    let (code, verified) = system.replay_tools(&["verify"]);
    assert_eq!(code, 0, "parked events are not differences: {verified}");
    assert!(
        verified.contains(&format!("PARKED #{refused}")),
        "{verified}"
    );

    // The cause goes away; retry applies the refused event and the one behind it.
    sqlx::query("ALTER TABLE rm.point_history DROP CONSTRAINT no_poison")
        .execute(&system.pool)
        .await
        .unwrap();
    let refused_text = refused.to_string();
    let (code, retried) = system.replay_tools(&["retry", "--position", &refused_text]);
    assert_eq!(code, 0, "{retried}");
    assert!(
        retried.contains("retried 2 parked event(s): 2 applied, 0 still parked"),
        "{retried}"
    );
    let repaired = read_past(
        &system,
        "/api/v1/points/users/1/balance",
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(
        (repaired.status, repaired.body["balance"].as_i64()),
        (StatusCode::OK, Some(115))
    );
    let history = system.get("/api/v1/points/users/1/history", None).await;
    assert_eq!(history.body["total"], 3);
    // What still cannot be decoded stays parked.
    let (code, retried) = system.replay_tools(&["retry"]);
    assert_eq!(code, 1, "{retried}");
    assert!(retried.contains("0 applied, 1 still parked"), "{retried}");
    let (_, listed) = system.replay_tools(&["parked"]);
    assert!(listed.contains("1 parked event(s)"), "{listed}");
    assert_verify_passes(&system).await;
    system.stop().await;
}

#[tokio::test]
async fn the_projector_answers_health_ready_and_metrics_refuses_the_rest_and_is_not_ready_without_its_database(
) {
    let system = System::start().await;
    let client = reqwest::Client::new();
    for path in ["/health", "/ready"] {
        let answer = client
            .get(format!("{}{path}", system.projector))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), reqwest::StatusCode::OK, "{path}");
    }
    // Anything else is a problem+json, like the APIs answer it.
    for (method, path, status) in [
        (
            reqwest::Method::POST,
            "/metrics",
            reqwest::StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            reqwest::Method::DELETE,
            "/ready",
            reqwest::StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            reqwest::Method::GET,
            "/../../etc/passwd",
            reqwest::StatusCode::NOT_FOUND,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/orders",
            reqwest::StatusCode::NOT_FOUND,
        ),
    ] {
        let answer = client
            .request(method.clone(), format!("{}{path}", system.projector))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{method} {path}");
        assert_eq!(
            answer.headers()["content-type"],
            "application/problem+json",
            "{method} {path}"
        );
    }
    system.stop().await;

    // A projector whose database does not answer (nothing listens there): alive, not ready.
    let nothing = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = e2e::service_command(PROJECTOR)
        .env("APP_CONFIG", "/nonexistent")
        .env("APP_SERVER__PORT", "0")
        .env(
            "APP_DATABASE__URL",
            format!("postgres://promo:promo@127.0.0.1:{nothing}/promo"),
        )
        .env("APP_REDIS__URL", "redis://127.0.0.1:1/")
        .env("APP_LOG__FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let port = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) {
                if log["message"] == "projector listening" {
                    return log["port"].as_u64().unwrap();
                }
            }
        }
        panic!("the projector never listened");
    })
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    let ready = client.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn the_projector_stops_within_a_second_of_sigterm_while_it_waits_or_retries() {
    let mut system = System::start().await;
    earn(&system, 1, 10).await;
    system.projected().await;

    // Waiting: a switch holds the generation pointer, so the projector's batch waits for it.
    let mut switch = system.pool.begin().await.unwrap();
    sqlx::query("SELECT * FROM read_model_generations WHERE deployment = 'rm' FOR UPDATE")
        .execute(&mut *switch)
        .await
        .unwrap();
    earn(&system, 1, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let took = system.terminate(PROJECTOR);
    assert!(
        took < Duration::from_secs(1),
        "waiting on a lock, it took {took:?}"
    );
    switch.rollback().await.unwrap();

    // Retrying: a read-model column is gone, every batch fails and is retried with backoff.
    sqlx::query("ALTER TABLE rm.point_balances RENAME COLUMN balance TO balance_away")
        .execute(&system.pool)
        .await
        .unwrap();
    system.launch(PROJECTOR).await;
    earn(&system, 1, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let took = system.terminate(PROJECTOR);
    assert!(took < Duration::from_secs(1), "retrying, it took {took:?}");

    // Back in order, a new projector goes on from the watermark.
    sqlx::query("ALTER TABLE rm.point_balances RENAME COLUMN balance_away TO balance")
        .execute(&system.pool)
        .await
        .unwrap();
    system.launch(PROJECTOR).await;
    let last = earn(&system, 1, 1).await;
    let read = system
        .get("/api/v1/points/users/1/balance", position(&last))
        .await;
    assert_eq!(read.body["balance"].as_i64(), Some(13));
    assert_verify_passes(&system).await;
    system.stop().await;
}

/// The lists overlay each row's hot value from Redis (one pipelined round trip per page) and
/// fall back to the projected row for a key Redis does not have.
#[tokio::test]
async fn lists_read_the_hot_values_from_redis_and_the_rows_where_redis_has_none() {
    let system = System::start().await;
    let now = chrono::Utc::now();
    let mut sales = Vec::new();
    for _ in 0..3 {
        sales.push(uuid::Uuid::parse_str(&system.open_sale(10).await).unwrap());
    }
    let policy = system
        .post("/api/v1/coupon-policies", json!({ "title": "T", "totalQuantity": 5,
            "startTime": now - chrono::Duration::minutes(1), "endTime": now + chrono::Duration::days(1),
            "discountType": "PERCENTAGE", "discountValue": 10 }))
        .await;
    let policy_id = uuid::Uuid::parse_str(policy.body["policyId"].as_str().unwrap()).unwrap();
    system.projected().await;

    // Redis says otherwise than the rows for sale 0 and the policy; it has no key for sale 1.
    let live = readmodel::generation::current(&system.pool, "rm")
        .await
        .unwrap();
    let redis_url =
        std::env::var("APP_REDIS__URL").unwrap_or_else(|_| "redis://127.0.0.1:56379/".into());
    let mut redis = redis::Client::open(redis_url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stock = |id| readmodel::hot::keys::stock(&live.prefix, id);
    let _: () = redis::cmd("HSET")
        .arg(stock(sales[0]))
        .arg("remaining")
        .arg(7)
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(stock(sales[1]))
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(readmodel::hot::keys::policy(&live.prefix, policy_id))
        .arg("issued")
        .arg(3)
        .query_async(&mut redis)
        .await
        .unwrap();

    let list = system.get("/api/v1/time-sales?limit=100", None).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let remaining = |id: uuid::Uuid| {
        list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["timeSaleId"] == id.to_string())
            .map(|item| {
                (
                    item["remainingQuantity"].as_i64(),
                    item["soldQuantity"].as_i64(),
                )
            })
            .unwrap()
    };
    assert_eq!(remaining(sales[0]), (Some(7), Some(3)), "from Redis");
    assert_eq!(remaining(sales[1]), (Some(10), Some(0)), "from the row");
    assert_eq!(remaining(sales[2]), (Some(10), Some(0)));
    let policies = system.get("/api/v1/coupon-policies", None).await;
    let item = &policies.body["items"][0];
    assert_eq!(
        (
            item["issuedCount"].as_i64(),
            item["usedCount"].as_i64(),
            item["remainingQuantity"].as_i64()
        ),
        (Some(3), Some(0), Some(2)),
        "{item}"
    );
    let one = system
        .get(&format!("/api/v1/coupon-policies/{policy_id}"), None)
        .await;
    assert_eq!(one.body["issuedCount"], 3, "{}", one.body);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_projector_takes_over_within_seconds_of_the_leaders_kill() {
    let system = System::start().await;
    let first = earn(&system, 1, 10).await;
    let _ = system
        .get("/api/v1/points/users/1/balance", position(&first))
        .await;
    let leader = system.pid(PROJECTOR).expect("the projector runs");

    // A second projector (another instance of the deployment) waits on the leader's lock:
    // it must not follow the log beside it.
    let mut standby = Box::pin(system.spawn(PROJECTOR, &[]));
    assert!(
        tokio::time::timeout(Duration::from_secs(5), &mut standby)
            .await
            .is_err(),
        "a second projector followed the log beside the leader"
    );
    let during = earn(&system, 1, 20).await;
    let read = system
        .get("/api/v1/points/users/1/balance", position(&during))
        .await;
    assert_eq!(read.body["balance"].as_i64(), Some(30), "{}", read.body);

    // The leader dies without a word; its session's lock goes with its connection.
    assert!(std::process::Command::new("kill")
        .args(["-9", &leader.to_string()])
        .status()
        .unwrap()
        .success());
    let killed = Instant::now();
    let after = earn(&system, 1, 40).await;
    let (mut standby, _) = tokio::time::timeout(Duration::from_secs(30), standby)
        .await
        .expect("the standby did not take over within 30 s");
    let took = killed.elapsed();
    let read = system
        .get("/api/v1/points/users/1/balance", position(&after))
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["balance"].as_i64(), Some(70), "{}", read.body);
    eprintln!("the standby projector followed the log {took:?} after the leader's kill -9");
    assert_verify_passes(&system).await;
    let _ = standby.kill();
    let _ = standby.wait();
    system.stop().await;
}
