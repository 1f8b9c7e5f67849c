//! Races through HTTP ("correct under any concurrency", docs/product.md): many concurrent requests on one
//! hot aggregate, each outcome checked against the answers and against the event log.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{spawn, Answer, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

/// Fires every body at `path` at once and returns the answers.
async fn storm(app: &Arc<TestApp>, path: &str, bodies: Vec<Value>) -> Vec<Answer> {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let app = app.clone();
            let path = path.to_owned();
            tokio::spawn(async move { app.post(&path, body).await })
        })
        .collect();
    let mut answers = vec![];
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

fn count(answers: &[Answer], status: StatusCode) -> usize {
    answers.iter().filter(|a| a.status == status).count()
}

#[sqlx::test(migrations = false)]
async fn two_thousand_concurrent_issues_for_a_policy_of_500_issue_exactly_500_once_per_user(
    pool: PgPool,
) {
    let app = Arc::new(spawn(pool).await);
    let policy = app.policy(500).await;
    let bodies = (1..=2000)
        .map(|user| json!({ "policyId": policy, "userId": user }))
        .collect();
    let answers = storm(&app, "/api/v1/coupons/issue", bodies).await;

    assert_eq!(count(&answers, StatusCode::CREATED), 500);
    assert_eq!(count(&answers, StatusCode::UNPROCESSABLE_ENTITY), 1500);
    assert!(answers
        .iter()
        .filter(|a| a.status == StatusCode::UNPROCESSABLE_ENTITY)
        .all(|a| a.body["code"] == "COUPONS_EXHAUSTED"));

    let issued: Vec<Value> = app
        .events()
        .await
        .into_iter()
        .filter(|(t, _)| t == "coupon.issued")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(issued.len(), 500, "the log holds exactly 500 issues");
    let users: HashSet<i64> = issued
        .iter()
        .map(|d| d["userId"].as_i64().unwrap())
        .collect();
    assert_eq!(users.len(), 500, "no user twice");
    let answered: HashSet<String> = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .map(|a| a.body["couponId"].as_str().unwrap().to_owned())
        .collect();
    let logged: HashSet<String> = issued
        .iter()
        .map(|d| d["couponId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        answered, logged,
        "every coupon answered 'created' is in the log, and only those"
    );
    let counts: HashSet<i64> = issued
        .iter()
        .map(|d| d["issuedCount"].as_i64().unwrap())
        .collect();
    assert_eq!(
        counts,
        (1..=500).collect(),
        "issued counts 1..=500, each once"
    );
}

#[sqlx::test(migrations = false)]
async fn a_thousand_concurrent_orders_for_300_units_create_exactly_300(pool: PgPool) {
    let app = Arc::new(spawn(pool).await);
    let sale = app.sale(300, None).await;
    let bodies = (1..=1000)
        .map(|user| json!({ "timeSaleId": sale, "userId": user, "quantity": 1 }))
        .collect();
    let answers = storm(&app, "/api/v1/orders", bodies).await;

    assert_eq!(count(&answers, StatusCode::CREATED), 300);
    let refused: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status != StatusCode::CREATED)
        .collect();
    assert_eq!(refused.len(), 700);
    assert!(refused
        .iter()
        .all(|a| a.status == StatusCode::UNPROCESSABLE_ENTITY && a.body["code"] == "SOLD_OUT"));

    let orders: Vec<Value> = app
        .events()
        .await
        .into_iter()
        .filter(|(t, _)| t == "order.created")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(orders.len(), 300);
    let sold: i64 = orders.iter().map(|d| d["quantity"].as_i64().unwrap()).sum();
    assert_eq!(sold, 300, "zero oversell");
    let answered: HashSet<String> = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .map(|a| a.body["orderId"].as_str().unwrap().to_owned())
        .collect();
    let logged: HashSet<String> = orders
        .iter()
        .map(|d| d["orderId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        answered, logged,
        "zero lost orders: every 'created' is in the log"
    );
    assert_eq!(
        orders
            .iter()
            .map(|d| d["remainingStock"].as_i64().unwrap())
            .min(),
        Some(0)
    );
}

#[sqlx::test(migrations = false)]
async fn two_hundred_concurrent_uses_of_10_points_on_1000_leave_exactly_zero(pool: PgPool) {
    let app = Arc::new(spawn(pool).await);
    let earned = app
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 42, "amount": 1000, "description": "gift" }),
        )
        .await;
    assert_eq!(earned.status, StatusCode::CREATED);
    let bodies = (0..200)
        .map(|_| json!({ "userId": 42, "amount": 10, "description": "checkout" }))
        .collect();
    let answers = storm(&app, "/api/v1/points/use", bodies).await;

    assert_eq!(count(&answers, StatusCode::CREATED), 100);
    assert_eq!(count(&answers, StatusCode::UNPROCESSABLE_ENTITY), 100);
    let balances: Vec<i64> = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .map(|a| a.body["balance"].as_i64().unwrap())
        .collect();
    assert_eq!(
        balances.iter().copied().collect::<HashSet<_>>(),
        (0..100).map(|n| n * 10).collect()
    );

    let events = app.events().await;
    let spent: Vec<&Value> = events
        .iter()
        .filter(|(t, _)| t == "point.spent")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(spent.len(), 100);
    let balance: i64 = 1000
        - spent
            .iter()
            .map(|d| d["amount"].as_i64().unwrap())
            .sum::<i64>();
    assert_eq!(balance, 0, "the log sums to a zero balance");
    assert_eq!(events.last().unwrap().1["balanceAfter"], 0);
}

#[sqlx::test(migrations = false)]
async fn two_instances_racing_on_one_policy_still_issue_exactly_the_total(pool: PgPool) {
    // Two command APIs over one database: each keeps its own in-memory writer for the policy,
    // so they really race; the log's optimistic concurrency makes the loser decide again.
    let first = Arc::new(spawn(pool.clone()).await);
    let second = Arc::new(spawn(pool).await);
    let policy = first.policy(150).await;
    let mut tasks = vec![];
    for user in 1..=600 {
        let app = if user % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let body = json!({ "policyId": policy, "userId": user });
        tasks.push(tokio::spawn(async move {
            app.post("/api/v1/coupons/issue", body).await
        }));
    }
    let mut answers = vec![];
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert_eq!(
        count(&answers, StatusCode::CREATED),
        150,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<HashSet<_>>()
    );
    assert_eq!(count(&answers, StatusCode::UNPROCESSABLE_ENTITY), 450);
    let issued = first
        .events()
        .await
        .into_iter()
        .filter(|(t, _)| t == "coupon.issued")
        .count();
    assert_eq!(issued, 150);
}

#[sqlx::test(migrations = false)]
async fn a_refusal_is_never_answered_from_state_another_instance_has_moved_on_from(pool: PgPool) {
    let first = spawn(pool.clone()).await;
    let second = spawn(pool).await;
    let earn = |amount: i64| json!({ "userId": 1, "amount": amount, "description": "earn" });
    let spend = json!({ "userId": 1, "amount": 150, "description": "spend" });

    // The first instance holds the account in memory at 100 points.
    assert_eq!(
        first.post("/api/v1/points/earn", earn(100)).await.status,
        StatusCode::CREATED
    );
    let refused = first.post("/api/v1/points/use", spend.clone()).await;
    assert_eq!(refused.body["code"], "INSUFFICIENT_BALANCE");
    // The second instance earns 100 more; the first must not refuse from its 100.
    assert_eq!(
        second.post("/api/v1/points/earn", earn(100)).await.status,
        StatusCode::CREATED
    );
    let spent = first.post("/api/v1/points/use", spend.clone()).await;
    assert_eq!(
        (spent.status, spent.body["balance"].as_i64()),
        (StatusCode::CREATED, Some(50)),
        "{}",
        spent.body
    );
    // With a key the refusal would be stored for good: the same, through the stored path.
    assert_eq!(
        second.post("/api/v1/points/earn", earn(200)).await.status,
        StatusCode::CREATED
    );
    let keyed = first
        .post_keyed("/api/v1/points/use", spend, "spend-once")
        .await;
    assert_eq!(
        (keyed.status, keyed.body["balance"].as_i64()),
        (StatusCode::CREATED, Some(100)),
        "{}",
        keyed.body
    );

    // A sale of one unit, sold out in the first instance's memory; the second cancels.
    let sale = first.sale(1, None).await;
    let order = |user: i64| json!({ "timeSaleId": sale, "userId": user, "quantity": 1 });
    let bought = first.post("/api/v1/orders", order(1)).await;
    assert_eq!(bought.status, StatusCode::CREATED);
    assert_eq!(
        first.post("/api/v1/orders", order(2)).await.body["code"],
        "SOLD_OUT"
    );
    let order_id = bought.body["orderId"].as_str().unwrap().to_owned();
    let canceled = second
        .post(&format!("/api/v1/orders/{order_id}/cancel"), json!({}))
        .await;
    assert_eq!(canceled.status, StatusCode::OK, "{}", canceled.body);
    let again = first
        .post_keyed("/api/v1/orders", order(2), "buy-after-cancel")
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
}

#[sqlx::test(migrations = false)]
async fn a_batch_the_database_refuses_fails_alone_and_the_rest_of_its_merged_commit_goes_through(
    pool: PgPool,
) {
    use command_api::writer::{CommitError, Committer};
    use eventlog::{AppendBatch, EventLog, NewEvent, StreamAppend};
    let log = EventLog::from_pool(pool);
    log.migrate().await.unwrap();
    let committer = Committer::start(log.clone(), 64, Default::default());
    let batch = |data: serde_json::Value| AppendBatch {
        streams: vec![StreamAppend {
            stream_id: uuid::Uuid::new_v4(),
            category: "test".into(),
            expected_version: 0,
            events: vec![NewEvent {
                event_id: uuid::Uuid::new_v4(),
                event_type: "test.happened".into(),
                schema_version: 1,
                data,
                metadata: json!({}),
            }],
        }],
        ..Default::default()
    };
    // PostgreSQL cannot store a NUL in jsonb: that batch is refused. To be sure the refused
    // batch is merged with a good one, the log head is held locked while the first batch
    // commits: the other two queue meanwhile and the committer takes them as one round.
    let mut holder = log.pool().begin().await.unwrap();
    sqlx::query("SELECT position FROM log_head FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let first = tokio::spawn({
        let committer = committer.clone();
        let batch = batch(json!({ "n": 0 }));
        async move { committer.commit(batch).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let queued = tokio::spawn({
        let committer = committer.clone();
        let (bad, good) = (
            batch(json!({ "text": "a\u{0}b" })),
            batch(json!({ "n": 3 })),
        );
        async move { tokio::join!(committer.commit(bad), committer.commit(good)) }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    holder.rollback().await.unwrap();
    assert!(first.await.unwrap().is_ok());
    let (bad, also_good) = queued.await.unwrap();
    assert!(also_good.is_ok(), "{also_good:?}");
    assert!(matches!(bad, Err(CommitError::Unavailable(_))), "{bad:?}");
    assert_eq!(log.head().await.unwrap(), 2);
}

#[sqlx::test(migrations = false)]
async fn two_thousand_concurrent_uses_on_a_budget_of_a_hundred_discounts_grant_exactly_the_budget(
    pool: PgPool,
) {
    let app = Arc::new(spawn(pool).await);
    let now = chrono::Utc::now();
    // 100 off each use; a budget of 100 uses' worth; two coupons a user.
    let policy = app
        .post(
            "/api/v1/coupon-policies",
            json!({
                "title": "Budgeted", "totalQuantity": 4000,
                "startTime": now - chrono::Duration::hours(1), "endTime": now + chrono::Duration::hours(1),
                "discountType": "FIXED_AMOUNT", "discountValue": 100,
                "discountBudget": 10_000, "couponsPerUser": 2,
            }),
        )
        .await;
    assert_eq!(policy.status, StatusCode::CREATED, "{}", policy.body);
    let policy = policy.body["policyId"].as_str().unwrap().to_owned();
    let bodies = (1..=1000)
        .flat_map(|user| {
            let body = json!({ "policyId": policy, "userId": user });
            [body.clone(), body]
        })
        .collect();
    let issued = storm(&app, "/api/v1/coupons/issue", bodies).await;
    assert_eq!(
        count(&issued, StatusCode::CREATED),
        2000,
        "two coupons each"
    );
    let third = app
        .post(
            "/api/v1/coupons/issue",
            json!({ "policyId": policy, "userId": 1 }),
        )
        .await;
    assert_eq!(
        third.body["code"], "COUPON_ALREADY_ISSUED",
        "{}",
        third.body
    );
    let coupons: Vec<String> = issued
        .iter()
        .map(|a| a.body["couponId"].as_str().unwrap().to_owned())
        .collect();

    // Every coupon used at once, each on its own order.
    let uses: Vec<_> = coupons
        .iter()
        .map(|coupon| {
            let app = app.clone();
            let path = format!("/api/v1/coupons/{coupon}/use");
            tokio::spawn(async move {
                app.post(&path, json!({ "orderId": path, "orderAmount": 5_000 }))
                    .await
            })
        })
        .collect();
    let mut answers = vec![];
    for task in uses {
        answers.push(task.await.unwrap());
    }
    assert_eq!(count(&answers, StatusCode::OK), 100, "exactly the budget");
    assert!(answers
        .iter()
        .filter(|a| a.status != StatusCode::OK)
        .all(|a| a.status == StatusCode::UNPROCESSABLE_ENTITY
            && a.body["code"] == "BUDGET_EXHAUSTED"));

    // Ten uses cancelled give ten uses' worth back: exactly ten more go through.
    let used: Vec<&String> = coupons
        .iter()
        .zip(&answers)
        .filter(|(_, a)| a.status == StatusCode::OK)
        .map(|(c, _)| c)
        .collect();
    for coupon in &used[..10] {
        let undone = app
            .post(&format!("/api/v1/coupons/{coupon}/cancel"), json!({}))
            .await;
        assert_eq!(undone.status, StatusCode::OK, "{}", undone.body);
    }
    let unused: Vec<&String> = coupons
        .iter()
        .zip(&answers)
        .filter(|(_, a)| a.status != StatusCode::OK)
        .map(|(c, _)| c)
        .take(50)
        .collect();
    let mut again = 0;
    for coupon in unused {
        let answer = app
            .post(
                &format!("/api/v1/coupons/{coupon}/use"),
                json!({ "orderId": format!("again-{coupon}"), "orderAmount": 5_000 }),
            )
            .await;
        again += usize::from(answer.status == StatusCode::OK);
    }
    assert_eq!(again, 10);

    // The log: the discounts of the uses not cancelled sum to the budget, never past it.
    let mut granted = 0;
    let mut peak = 0;
    let mut discounts = std::collections::HashMap::new();
    for (t, data) in app.events().await {
        let coupon = data["couponId"].as_str().unwrap_or_default().to_owned();
        match t.as_str() {
            "coupon.used" => {
                let discount = data["discountAmount"].as_i64().unwrap();
                granted += discount;
                discounts.insert(coupon, discount);
                assert_eq!(data["discountGranted"].as_i64(), Some(granted));
            }
            "coupon.canceled" => {
                granted -= discounts[&coupon];
                assert_eq!(data["discountGranted"].as_i64(), Some(granted));
            }
            _ => continue,
        }
        peak = peak.max(granted);
    }
    assert_eq!((granted, peak), (10_000, 10_000));
}
