//! replay-tools on the real stack: `verify` finds a corrupted read model and exits non-zero,
//! `rebuild` repairs it, `verify` then exits 0; readers querying in a loop through a rebuild
//! see no error and nothing older than before; a log holding v1 events rebuilds correctly;
//! `stream` and `republish` show and re-send what the log holds.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{Duration, Utc};
use e2e::{Answer, System, COMMAND_API};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn pos(body: &Value) -> Option<i64> {
    body["position"].as_i64()
}

async fn created(system: &System, path: &str, body: Value) -> Answer {
    let answer = system.post(path, body).await;
    assert!(answer.status.is_success(), "{path}: {}", answer.body);
    answer
}

/// Every kind of event but the system's expiries: a policy with issued, used, re-opened,
/// revoked and held coupons; earned (some expiring), spent and canceled points; a product, a
/// time sale, checkout holds, orders and a cancellation. Returns the
/// policy id, a coupon id and the last position.
async fn activity(system: &System) -> (String, String, i64) {
    let now = Utc::now();
    let policy = created(
        system,
        "/api/v1/coupon-policies",
        json!({ "title": "Winter", "totalQuantity": 50, "startTime": now - Duration::hours(1),
                "endTime": now + Duration::hours(1), "discountType": "PERCENTAGE", "discountValue": 10,
                "minimumOrderAmount": 1000, "maximumDiscountAmount": 500 }),
    )
    .await;
    let policy = policy.body["policyId"].as_str().unwrap().to_owned();
    let mut coupons = Vec::new();
    for user in 1..=12 {
        let issued = created(
            system,
            "/api/v1/coupons/issue",
            json!({ "policyId": policy, "userId": user }),
        )
        .await;
        coupons.push(issued.body["couponId"].as_str().unwrap().to_owned());
    }
    for coupon in &coupons[..3] {
        created(
            system,
            &format!("/api/v1/coupons/{coupon}/use"),
            json!({ "orderAmount": 8000, "orderId": "ORD-7" }),
        )
        .await;
    }
    created(
        system,
        &format!("/api/v1/coupons/{}/cancel", coupons[0]),
        json!({}),
    )
    .await;
    created(
        system,
        &format!("/api/v1/coupons/{}/revoke", coupons[5]),
        json!({}),
    )
    .await;
    for user in 1..=8 {
        created(
            system,
            "/api/v1/points/earn",
            json!({ "userId": user, "amount": 1000, "description": "signup" }),
        )
        .await;
    }
    let spent = created(
        system,
        "/api/v1/points/use",
        json!({ "userId": 3, "amount": 300, "description": "checkout", "orderId": "ORD-1" }),
    )
    .await;
    created(
        system,
        "/api/v1/points/cancel",
        json!({ "userId": 3, "transactionId": spent.body["transactionId"] }),
    )
    .await;
    let product = created(
        system,
        "/api/v1/products",
        json!({ "name": "Headphones", "price": 10000, "description": "ANC" }),
    )
    .await;
    let sale = created(
        system,
        "/api/v1/time-sales",
        json!({ "productId": product.body["productId"], "discountPrice": 7000, "quantity": 20,
                "startAt": now - Duration::minutes(1), "endAt": now + Duration::hours(1) }),
    )
    .await;
    // Checkout holds: one confirmed, one released, one still held; a coupon's hold released,
    // another still held.
    let sale_id = sale.body["timeSaleId"].as_str().unwrap().to_owned();
    for (user, end) in [(6, Some("confirm")), (7, Some("release")), (8, None)] {
        let hold = created(
            system,
            "/api/v1/reservations",
            json!({ "timeSaleId": sale_id, "orderId": format!("CHK-{user}"), "userId": user,
                    "quantity": 1, "ttlSeconds": 600 }),
        )
        .await;
        if let Some(end) = end {
            let id = hold.body["reservationId"].as_str().unwrap();
            created(
                system,
                &format!("/api/v1/reservations/{id}/{end}"),
                json!({}),
            )
            .await;
        }
    }
    for (coupon, end) in [(7, Some("release")), (8, None)] {
        let coupon = &coupons[coupon];
        created(
            system,
            &format!("/api/v1/coupons/{coupon}/reserve"),
            json!({ "orderId": "CHK-C", "orderAmount": 8000, "ttlSeconds": 600 }),
        )
        .await;
        if let Some(end) = end {
            created(
                system,
                &format!("/api/v1/coupons/{coupon}/{end}"),
                json!({}),
            )
            .await;
        }
    }
    // Points that expire later, partly spent.
    created(
        system,
        "/api/v1/points/earn",
        json!({ "userId": 9, "amount": 500, "description": "promo", "expiresAt": now + Duration::days(30) }),
    )
    .await;
    created(
        system,
        "/api/v1/points/use",
        json!({ "userId": 9, "amount": 200, "description": "checkout" }),
    )
    .await;
    let mut last = None;
    for user in 1..=5 {
        last = Some(
            created(
                system,
                "/api/v1/orders",
                json!({ "timeSaleId": sale.body["timeSaleId"], "userId": user, "quantity": 2 }),
            )
            .await,
        );
    }
    let order = last.unwrap().body["orderId"].as_str().unwrap().to_owned();
    let canceled = created(system, &format!("/api/v1/orders/{order}/cancel"), json!({})).await;
    (policy, coupons[1].clone(), pos(&canceled.body).unwrap())
}

#[tokio::test]
async fn verify_reports_a_corruption_rebuild_repairs_it_and_verify_then_passes() {
    let system = System::start().await;
    let (_, coupon, _) = activity(&system).await;
    system.projected().await;
    let (code, out) = system.replay_tools(&["verify"]);
    assert_eq!(code, 0, "a freshly projected system verifies clean: {out}");
    assert!(out.contains("0 difference(s)"), "{out}");

    // Corrupt: a wrong balance, a lost coupon row, a wrong hot stock value.
    sqlx::query("UPDATE rm.point_balances SET balance = balance + 1 WHERE user_id = 4")
        .execute(&system.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM rm.coupons WHERE coupon_id = $1::uuid")
        .bind(&coupon)
        .execute(&system.pool)
        .await
        .unwrap();
    let target = system.replay_target();
    let client = redis::Client::open(target.redis_url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let stock_keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}stock:*", target.prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(stock_keys.len(), 1);
    redis::cmd("HSET")
        .arg(&stock_keys[0])
        .arg("remaining")
        .arg(17)
        .query_async::<()>(&mut redis)
        .await
        .unwrap();

    let (code, out) = system.replay_tools(&["verify"]);
    assert_eq!(code, 1, "verify must fail on a corrupted read model: {out}");
    assert!(out.contains("DIFF point_balances"), "{out}");
    assert!(out.contains("DIFF coupons"), "{out}");
    assert!(
        out.contains(&format!("DIFF redis {}", stock_keys[0])),
        "{out}"
    );
    assert!(
        out.contains("3 difference(s)") || out.contains("4 difference(s)"),
        "{out}"
    );

    let (code, out) = system.replay_tools(&["rebuild", "--grace-ms", "300"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("switched rm → rm_g1"), "{out}");
    let (code, out) = system.replay_tools(&["verify"]);
    assert_eq!(code, 0, "verify passes after the rebuild: {out}");

    // The query API answers from the repaired generation; the old one is gone.
    let read = system.get(&format!("/api/v1/coupons/{coupon}"), None).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    let balance = system.get("/api/v1/points/users/4/balance", None).await;
    assert_eq!(balance.body["balance"].as_i64(), Some(1000));
    let old: Option<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname = 'rm'")
            .fetch_optional(&system.pool)
            .await
            .unwrap();
    assert_eq!(old, None, "the old generation is dropped");
    let old_keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}stock:*", target.prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(old_keys.is_empty(), "{old_keys:?}");

    // Rebuilding one projection carries the others over unchanged.
    sqlx::query("UPDATE rm_g1.point_balances SET balance = 0 WHERE user_id = 5")
        .execute(&system.pool)
        .await
        .unwrap();
    let (code, out) =
        system.replay_tools(&["rebuild", "--projection", "points", "--grace-ms", "300"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = system.replay_tools(&["verify"]);
    assert_eq!(code, 0, "{out}");
    let balance = system.get("/api/v1/points/users/5/balance", None).await;
    assert_eq!(balance.body["balance"].as_i64(), Some(1000));
    system.stop().await;
}

#[tokio::test]
async fn readers_see_no_error_and_nothing_older_while_a_rebuild_switches_generations() {
    let system = System::start().await;
    activity(&system).await;
    // Enough history that the rebuild takes a while.
    for round in 0..40 {
        let burst: Vec<_> = (0..25)
            .map(|n| {
                system.post(
                    "/api/v1/points/earn",
                    json!({ "userId": 100 + n, "amount": 1 + round, "description": "history" }),
                )
            })
            .collect();
        for answer in futures_join(burst).await {
            assert!(answer.status.is_success());
        }
    }
    let head = system.projected().await;
    let before = system
        .get("/api/v1/points/users/100/balance", Some(head))
        .await
        .body["balance"]
        .as_i64()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    // Writers keep earning for user 100 during the rebuild; readers check every answer.
    let writer = {
        let (client, base, stop) = (system.client.clone(), system.command.clone(), stop.clone());
        tokio::spawn(async move {
            let mut accepted = 0;
            while !stop.load(Ordering::Relaxed) {
                let sent = client
                    .post(format!("{base}/api/v1/points/earn"))
                    .json(&json!({ "userId": 100, "amount": 1, "description": "during" }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(sent.status(), StatusCode::CREATED);
                accepted += 1;
            }
            accepted
        })
    };
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (client, base, stop) = (system.client.clone(), system.query.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut reads, mut last) = (0, before);
                while !stop.load(Ordering::Relaxed) {
                    let answer = client
                        .get(format!("{base}/api/v1/points/users/100/balance"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(
                        answer.status(),
                        StatusCode::OK,
                        "a read failed during the rebuild"
                    );
                    let balance = answer.json::<Value>().await.unwrap()["balance"]
                        .as_i64()
                        .unwrap();
                    assert!(
                        balance >= last,
                        "read {balance} after {last}: older than a value already seen"
                    );
                    last = balance;
                    reads += 1;
                }
                reads
            })
        })
        .collect();

    let (code, out) = system.replay_tools(&["rebuild", "--grace-ms", "500"]);
    assert_eq!(code, 0, "{out}");
    // Keep reading past the old generation's drop.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    let accepted = writer.await.unwrap();
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    assert!(
        reads > 20 && accepted > 0,
        "reads {reads}, writes {accepted}"
    );

    // The projector follows the new generation: a new write reads back through it.
    let earned = created(
        &system,
        "/api/v1/points/earn",
        json!({ "userId": 100, "amount": 5, "description": "after" }),
    )
    .await;
    let balance = system
        .get("/api/v1/points/users/100/balance", pos(&earned.body))
        .await;
    assert_eq!(
        balance.body["balance"].as_i64(),
        Some(before + accepted + 5),
        "every write during and after the rebuild is in the new generation"
    );
    let live = readmodel::generation::current(&system.pool, "rm")
        .await
        .unwrap();
    assert_eq!(live.number, 1);
    assert!(system.read_model_differences().await.is_empty());
    system.stop().await;
}

async fn futures_join<F: std::future::Future<Output = Answer>>(all: Vec<F>) -> Vec<Answer> {
    let mut out = Vec::with_capacity(all.len());
    for f in all {
        out.push(f.await);
    }
    out
}

#[tokio::test]
async fn a_log_holding_v1_events_rebuilds_to_the_same_read_models_and_loads_the_same() {
    let mut system = System::start().await;
    let (policy, coupon, _) = activity(&system).await;
    system.projected().await;
    let before = system.get(&format!("/api/v1/coupons/{coupon}"), None).await;
    // Turn the log into one written before coupon.issued v2 existed.
    let rewritten = sqlx::query(
        "UPDATE events SET schema_version = 1, \
           data = (data - 'occurredAt') || jsonb_build_object('issuedAt', data->'occurredAt') \
         WHERE event_type = 'coupon.issued'",
    )
    .execute(&system.pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(rewritten, 12);

    let (code, out) = system.replay_tools(&["rebuild", "--grace-ms", "300"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = system.replay_tools(&["verify"]);
    assert_eq!(code, 0, "{out}");
    let after = system.get(&format!("/api/v1/coupons/{coupon}"), None).await;
    assert_eq!(
        after.body, before.body,
        "the coupon reads the same from the v1 log"
    );

    // `stream` shows the upcast; the command side loads the v1 events the same way.
    let (code, out) = system.replay_tools(&["stream", "coupon", &policy]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("coupon.issued v2 (stored v1, upcast)"),
        "{out}"
    );
    assert!(out.contains("\"issuedCount\":12"), "{out}");
    system.kill(COMMAND_API);
    system.launch(COMMAND_API).await;
    let again = system
        .post(
            "/api/v1/coupons/issue",
            json!({ "policyId": policy, "userId": 2 }),
        )
        .await;
    assert_eq!(
        again.body["code"], "COUPON_ALREADY_ISSUED",
        "{}",
        again.body
    );
    let next = created(
        &system,
        "/api/v1/coupons/issue",
        json!({ "policyId": policy, "userId": 99 }),
    )
    .await;
    // The restarted command API's relay first takes over the leader lock (a second or two).
    let path = format!("/api/v1/coupon-policies/{policy}");
    let mut read = system.get(&path, pos(&next.body)).await;
    for _ in 0..10 {
        if read.status != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        read = system.get(&path, pos(&next.body)).await;
    }
    assert_eq!(read.body["issuedCount"].as_i64(), Some(13), "{}", read.body);
    system.stop().await;
}

#[tokio::test]
async fn stream_prints_states_as_of_a_position_and_republish_resends_a_range() {
    let system = System::start().await;
    let first = created(
        &system,
        "/api/v1/points/earn",
        json!({ "userId": 7, "amount": 100, "description": "one" }),
    )
    .await;
    created(
        &system,
        "/api/v1/points/earn",
        json!({ "userId": 7, "amount": 50, "description": "two" }),
    )
    .await;
    let (code, out) = system.replay_tools(&["stream", "point", "7", "--json"]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["state"]["balance"], 150, "{}", lines[1]);
    let as_of = pos(&first.body).unwrap().to_string();
    let (code, out) = system.replay_tools(&["stream", "point", "7", "--as-of", &as_of, "--json"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 1);

    system.relayed().await;
    let topic = format!("{}replayed", system.topic_prefix);
    messaging::ensure_topics(
        &system.brokers,
        std::slice::from_ref(&topic),
        &System::topic_spec(&system.brokers),
    )
    .await
    .unwrap();
    let (code, out) =
        system.replay_tools(&["republish", "--from", "1", "--to", "2", "--topic", &topic]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("re-published 2 events"), "{out}");
    let resent = system.consume_topic(&topic, 2).await;
    let originals = system.consume(2).await;
    assert_eq!(resent, originals[..2].to_vec(), "same keys, same envelopes");
    system.stop().await;
}

/// Projects the whole log into `schema`, `per_batch` events per transaction.
async fn project_log(system: &System, schema: &str, per_batch: usize) {
    use readmodel::projection;
    projection::ensure_schema(&system.pool, schema)
        .await
        .unwrap();
    let events = eventlog::EventLog::from_pool(system.pool.clone())
        .read_all(0, 100_000)
        .await
        .unwrap();
    let decoded: Vec<_> = events
        .into_iter()
        .map(|e| {
            let event = projection::decode(&e).unwrap();
            (e, event)
        })
        .collect();
    for batch in decoded.chunks(per_batch) {
        let mut tx = system.pool.begin().await.unwrap();
        projection::apply_batch(&mut tx, schema, batch)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn a_batch_folded_in_memory_writes_what_one_event_per_batch_writes() {
    let system = System::start().await;
    activity(&system).await;
    // Changes of rows created in the same batch (used, re-opened, revoked coupons; canceled
    // orders; moving counts and stock) are folded into their inserts in one batch, and are
    // updates of existing rows one event at a time.
    project_log(&system, "one_at_a_time", 1).await;
    project_log(&system, "all_at_once", 100_000).await;
    for table in readmodel::projection::TABLES {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM all_at_once.{table}"))
            .fetch_one(&system.pool)
            .await
            .unwrap();
        let differing: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM ((SELECT * FROM one_at_a_time.{table} EXCEPT SELECT * FROM all_at_once.{table}) \
             UNION ALL (SELECT * FROM all_at_once.{table} EXCEPT SELECT * FROM one_at_a_time.{table})) d"
        ))
        .fetch_one(&system.pool)
        .await
        .unwrap();
        assert!(
            rows > 0,
            "{table} is empty: the activity must touch every table"
        );
        assert_eq!(differing, 0, "{table}: {differing} rows differ");
    }
    let used: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM all_at_once.coupons WHERE state = 'USED' AND order_id IS NOT NULL",
    )
    .fetch_one(&system.pool)
    .await
    .unwrap();
    assert_eq!(used, 2, "three used, one of them re-opened");
    system.stop().await;
}
