//! Every command path of docs/product.md and every error class of docs/product.md, through HTTP against the
//! real command API and a fresh PostgreSQL database per test.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{Duration, Utc};
use common::spawn;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

// ---- coupons ----

#[sqlx::test(migrations = false)]
async fn a_coupon_is_issued_used_cancelled_and_revoked_through_http(pool: PgPool) {
    let app = spawn(pool).await;
    let policy = app.policy(10).await;

    let issued = app
        .post(
            "/api/v1/coupons/issue",
            json!({ "policyId": policy, "userId": 7 }),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED);
    assert_eq!(issued.body["status"], "AVAILABLE");
    assert_eq!(issued.body["version"], 2);
    assert!(issued.body["position"].as_i64().unwrap() >= 2);
    let coupon = issued.body["couponId"].as_str().unwrap().to_owned();

    let used = app
        .post(
            &format!("/api/v1/coupons/{coupon}/use"),
            json!({ "orderId": "ORD-1", "orderAmount": 3000 }),
        )
        .await;
    assert_eq!(used.status, StatusCode::OK, "{}", used.body);
    assert_eq!(
        (
            used.body["discountAmount"].as_i64(),
            used.body["status"].as_str()
        ),
        (Some(300), Some("USED"))
    );

    let again = app
        .post(
            &format!("/api/v1/coupons/{coupon}/use"),
            json!({ "orderId": "ORD-2", "orderAmount": 3000 }),
        )
        .await;
    assert_eq!(
        (again.status, again.body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("ALREADY_USED"))
    );

    let canceled = app
        .post(&format!("/api/v1/coupons/{coupon}/cancel"), json!({}))
        .await;
    assert_eq!(
        (canceled.status, canceled.body["status"].as_str()),
        (StatusCode::OK, Some("AVAILABLE"))
    );

    let revoked = app
        .post(&format!("/api/v1/coupons/{coupon}/revoke"), json!({}))
        .await;
    assert_eq!(
        (revoked.status, revoked.body["status"].as_str()),
        (StatusCode::OK, Some("CANCELED"))
    );
    let after = app
        .post(
            &format!("/api/v1/coupons/{coupon}/use"),
            json!({ "orderId": "ORD-3", "orderAmount": 3000 }),
        )
        .await;
    assert_eq!(after.body["code"], "REVOKED");

    let types: Vec<String> = app.events().await.into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        types,
        [
            "coupon.policy_created",
            "coupon.issued",
            "coupon.used",
            "coupon.canceled",
            "coupon.revoked"
        ]
    );
}

#[sqlx::test(migrations = false)]
async fn business_rules_refuse_with_422_and_a_machine_readable_code(pool: PgPool) {
    let app = spawn(pool).await;
    let policy = app.policy(1).await;
    app.post(
        "/api/v1/coupons/issue",
        json!({ "policyId": policy, "userId": 1 }),
    )
    .await;
    let twice = app
        .post(
            "/api/v1/coupons/issue",
            json!({ "policyId": policy, "userId": 1 }),
        )
        .await;
    assert_eq!(
        (twice.status, twice.body["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("COUPON_ALREADY_ISSUED")
        )
    );
    let exhausted = app
        .post(
            "/api/v1/coupons/issue",
            json!({ "policyId": policy, "userId": 2 }),
        )
        .await;
    assert_eq!(exhausted.body["code"], "COUPONS_EXHAUSTED");
    assert_eq!(exhausted.content_type, "application/problem+json");
    assert_eq!(exhausted.body["status"], 422);
    assert!(exhausted.body["type"]
        .as_str()
        .unwrap()
        .starts_with("urn:promo:problem:"));
    assert!(exhausted.body["title"].is_string() && exhausted.body["detail"].is_string());
}

#[sqlx::test(migrations = false)]
async fn a_coupon_below_the_minimum_order_is_refused(pool: PgPool) {
    let app = spawn(pool).await;
    let policy = app.policy(5).await;
    let issued = app
        .post(
            "/api/v1/coupons/issue",
            json!({ "policyId": policy, "userId": 3 }),
        )
        .await;
    let coupon = issued.body["couponId"].as_str().unwrap();
    let small = app
        .post(
            &format!("/api/v1/coupons/{coupon}/use"),
            json!({ "orderId": "o", "orderAmount": 999 }),
        )
        .await;
    assert_eq!(small.body["code"], "BELOW_MINIMUM_ORDER");
}

// ---- points ----

#[sqlx::test(migrations = false)]
async fn points_are_earned_used_and_cancelled_with_the_balance_after_each(pool: PgPool) {
    let app = spawn(pool).await;
    let earned = app
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 9, "amount": 1000, "description": "signup" }),
        )
        .await;
    assert_eq!(
        (earned.status, earned.body["balance"].as_i64()),
        (StatusCode::CREATED, Some(1000))
    );
    let used = app
        .post(
            "/api/v1/points/use",
            json!({ "userId": 9, "amount": 300, "description": "checkout", "orderId": "ORD-9" }),
        )
        .await;
    assert_eq!(used.body["balance"], 700);
    let too_much = app
        .post(
            "/api/v1/points/use",
            json!({ "userId": 9, "amount": 701, "description": "x" }),
        )
        .await;
    assert_eq!(
        (too_much.status, too_much.body["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("INSUFFICIENT_BALANCE")
        )
    );

    let refund = app
        .post(
            "/api/v1/points/cancel",
            json!({ "userId": 9, "transactionId": used.body["transactionId"] }),
        )
        .await;
    assert_eq!(
        (
            refund.body["balance"].as_i64(),
            refund.body["canceledType"].as_str()
        ),
        (Some(1000), Some("USE"))
    );
    let twice = app
        .post(
            "/api/v1/points/cancel",
            json!({ "userId": 9, "transactionId": used.body["transactionId"] }),
        )
        .await;
    assert_eq!(twice.body["code"], "TRANSACTION_ALREADY_CANCELED");
    let unknown = app
        .post(
            "/api/v1/points/cancel",
            json!({ "userId": 9, "transactionId": uuid::Uuid::new_v4() }),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("TRANSACTION_NOT_FOUND"))
    );
}

// ---- products, time sales, orders ----

#[sqlx::test(migrations = false)]
async fn an_order_is_placed_and_cancelled_and_its_stock_returns(pool: PgPool) {
    let app = spawn(pool).await;
    let sale = app.sale(2, Some(2)).await;
    let order = app
        .post(
            "/api/v1/orders",
            json!({ "timeSaleId": sale, "userId": 5, "quantity": 2 }),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    assert_eq!(
        (
            order.body["totalPrice"].as_i64(),
            order.body["status"].as_str()
        ),
        (Some(14_000), Some("CREATED"))
    );
    let sold_out = app
        .post(
            "/api/v1/orders",
            json!({ "timeSaleId": sale, "userId": 6, "quantity": 1 }),
        )
        .await;
    assert_eq!(sold_out.body["code"], "SOLD_OUT");

    let order_id = order.body["orderId"].as_str().unwrap();
    let canceled = app
        .post(&format!("/api/v1/orders/{order_id}/cancel"), json!({}))
        .await;
    assert_eq!(
        (canceled.status, canceled.body["status"].as_str()),
        (StatusCode::OK, Some("CANCELED"))
    );
    let again = app
        .post(
            "/api/v1/orders",
            json!({ "timeSaleId": sale, "userId": 6, "quantity": 1 }),
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::CREATED,
        "stock returned by the cancellation"
    );
    let limit = app
        .post(
            "/api/v1/orders",
            json!({ "timeSaleId": sale, "userId": 6, "quantity": 2 }),
        )
        .await;
    assert_eq!(limit.body["code"], "INSUFFICIENT_STOCK");

    let events = app.events().await;
    let remaining: Vec<i64> = events
        .iter()
        .filter(|(t, _)| t.starts_with("order."))
        .map(|(_, d)| d["remainingStock"].as_i64().unwrap())
        .collect();
    assert_eq!(remaining, [0, 2, 1]);
}

#[sqlx::test(migrations = false)]
async fn a_time_sale_must_be_cheaper_than_its_product_and_name_a_real_one(pool: PgPool) {
    let app = spawn(pool).await;
    let product = app.product(5_000).await;
    let now = Utc::now();
    let sale = |product: serde_json::Value, price: i64| {
        json!({ "productId": product, "discountPrice": price, "quantity": 10,
                "startAt": now, "endAt": now + Duration::hours(1) })
    };
    let dearer = app
        .post("/api/v1/time-sales", sale(json!(product), 5_000))
        .await;
    assert_eq!(
        (dearer.status, dearer.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("discountPrice"))
    );
    let unknown = app
        .post("/api/v1/time-sales", sale(json!(uuid::Uuid::new_v4()), 100))
        .await;
    assert_eq!(
        (unknown.status, unknown.body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("PRODUCT_NOT_FOUND"))
    );
}

#[sqlx::test(migrations = false)]
async fn ordering_outside_the_sale_window_is_refused(pool: PgPool) {
    let app = spawn(pool).await;
    let product = app.product(10_000).await;
    let later = Utc::now() + Duration::hours(2);
    let created = app
        .post("/api/v1/time-sales", json!({ "productId": product, "discountPrice": 1, "quantity": 1, "startAt": later, "endAt": later + Duration::hours(1) }))
        .await;
    let sale = created.body["timeSaleId"].as_str().unwrap();
    let early = app
        .post(
            "/api/v1/orders",
            json!({ "timeSaleId": sale, "userId": 1, "quantity": 1 }),
        )
        .await;
    assert_eq!(early.body["code"], "TIME_SALE_NOT_STARTED");
}

// ---- the error classes (docs/product.md, "Errors") ----

#[sqlx::test(migrations = false)]
async fn malformed_json_is_a_400_problem(pool: PgPool) {
    let app = spawn(pool).await;
    let answer = app
        .send("/api/v1/points/earn", "{\"userId\": 1,".into(), None)
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.content_type, "application/problem+json");
    assert_eq!(answer.body["code"], "INVALID_REQUEST");
    assert!(app.events().await.is_empty(), "nothing written");
}

#[sqlx::test(migrations = false)]
async fn a_bad_field_is_a_400_naming_the_field(pool: PgPool) {
    let app = spawn(pool).await;
    let wrong_type = app
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 1, "amount": "ten", "description": "x" }),
        )
        .await;
    assert_eq!(
        (wrong_type.status, wrong_type.body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("amount"))
    );
    let negative = app
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 1, "amount": -5, "description": "x" }),
        )
        .await;
    assert_eq!(
        (negative.status, negative.body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("amount"))
    );
    let user = app
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 0, "amount": 5, "description": "x" }),
        )
        .await;
    assert_eq!(user.body["field"], "userId");
    let missing = app
        .post("/api/v1/orders", json!({ "userId": 1, "quantity": 1 }))
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(missing.body["detail"]
        .as_str()
        .unwrap()
        .contains("timeSaleId"));
    let unknown_field = app
        .post(
            "/api/v1/products",
            json!({ "name": "x", "price": 1, "colour": "red" }),
        )
        .await;
    assert_eq!(unknown_field.status, StatusCode::BAD_REQUEST);
    let window = app
        .post("/api/v1/coupon-policies", json!({ "title": "t", "totalQuantity": 1, "startTime": "2026-01-02T00:00:00Z", "endTime": "2026-01-01T00:00:00Z", "discountType": "FIXED_AMOUNT", "discountValue": 100 }))
        .await;
    assert_eq!(
        (window.status, window.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("endTime"))
    );
    let bad_time = app
        .post("/api/v1/coupon-policies", json!({ "title": "t", "totalQuantity": 1, "startTime": "soon", "endTime": "2026-01-01T00:00:00Z", "discountType": "FIXED_AMOUNT", "discountValue": 100 }))
        .await;
    assert_eq!(
        (bad_time.status, bad_time.body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("startTime"))
    );
    assert!(app.events().await.is_empty(), "nothing written");
}

#[sqlx::test(migrations = false)]
async fn an_unknown_id_is_a_404(pool: PgPool) {
    let app = spawn(pool).await;
    let id = uuid::Uuid::new_v4();
    let coupon = app
        .post(
            &format!("/api/v1/coupons/{id}/use"),
            json!({ "orderId": "o", "orderAmount": 1 }),
        )
        .await;
    assert_eq!(coupon.status, StatusCode::NOT_FOUND);
    let order = app
        .post(&format!("/api/v1/orders/{id}/cancel"), json!({}))
        .await;
    assert_eq!(order.status, StatusCode::NOT_FOUND);
    let policy = app
        .post(
            "/api/v1/coupons/issue",
            json!({ "policyId": id, "userId": 1 }),
        )
        .await;
    assert_eq!(
        (policy.status, policy.body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("POLICY_NOT_FOUND"))
    );
    let sale = app
        .post(
            "/api/v1/orders",
            json!({ "timeSaleId": id, "userId": 1, "quantity": 1 }),
        )
        .await;
    assert_eq!(sale.body["code"], "TIME_SALE_NOT_FOUND");
    let path = app.send("/api/v1/nowhere", "{}".into(), None).await;
    assert_eq!(path.status, StatusCode::NOT_FOUND);
    let not_uuid = app
        .post(
            "/api/v1/coupons/not-a-uuid/use",
            json!({ "orderId": "o", "orderAmount": 1 }),
        )
        .await;
    assert_eq!(not_uuid.status, StatusCode::BAD_REQUEST);
}

#[sqlx::test(migrations = false)]
async fn a_retry_with_the_same_key_and_body_gets_the_original_answer_and_changes_nothing(
    pool: PgPool,
) {
    let app = spawn(pool).await;
    let body = json!({ "userId": 4, "amount": 250, "description": "welcome" });
    let first = app
        .post_keyed("/api/v1/points/earn", body.clone(), "earn-4-1")
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(!first.replayed);
    // The same content, formatted differently, is the same request.
    let reordered = r#"{ "description": "welcome", "amount": 250, "userId": 4 }"#.to_owned();
    let retry = app
        .send("/api/v1/points/earn", reordered, Some("earn-4-1"))
        .await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert!(retry.replayed);
    assert_eq!(retry.body, first.body, "same ids, version and position");
    assert_eq!(app.events().await.len(), 1, "nothing appended by the retry");

    // A refusal is replayed too, even once the rule would let it through.
    let refused = app
        .post_keyed(
            "/api/v1/points/use",
            json!({ "userId": 4, "amount": 999, "description": "x" }),
            "use-4",
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    app.post(
        "/api/v1/points/earn",
        json!({ "userId": 4, "amount": 5000, "description": "top up" }),
    )
    .await;
    let replayed = app
        .post_keyed(
            "/api/v1/points/use",
            json!({ "userId": 4, "amount": 999, "description": "x" }),
            "use-4",
        )
        .await;
    assert_eq!(
        (replayed.status, replayed.body.clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, refused.body)
    );
}

#[sqlx::test(migrations = false)]
async fn the_same_key_with_another_body_is_a_409_and_changes_nothing(pool: PgPool) {
    let app = spawn(pool).await;
    app.post_keyed(
        "/api/v1/points/earn",
        json!({ "userId": 4, "amount": 250, "description": "a" }),
        "k",
    )
    .await;
    let misuse = app
        .post_keyed(
            "/api/v1/points/earn",
            json!({ "userId": 4, "amount": 251, "description": "a" }),
            "k",
        )
        .await;
    assert_eq!(
        (misuse.status, misuse.body["code"].as_str()),
        (StatusCode::CONFLICT, Some("IDEMPOTENCY_KEY_REUSED"))
    );
    let other_path = app
        .post_keyed(
            "/api/v1/points/use",
            json!({ "userId": 4, "amount": 250, "description": "a" }),
            "k",
        )
        .await;
    assert_eq!(other_path.status, StatusCode::CONFLICT);
    assert_eq!(app.events().await.len(), 1);
    let bad_key = app
        .post_keyed(
            "/api/v1/points/earn",
            json!({ "userId": 4, "amount": 1, "description": "a" }),
            "",
        )
        .await;
    assert_eq!(bad_key.status, StatusCode::BAD_REQUEST);
}

#[sqlx::test(migrations = false)]
async fn concurrent_retries_with_one_key_append_once(pool: PgPool) {
    let app = std::sync::Arc::new(spawn(pool).await);
    let policy = app.policy(100).await;
    let mut tasks = vec![];
    for _ in 0..20 {
        let app = app.clone();
        let policy = policy.clone();
        tasks.push(tokio::spawn(async move {
            app.post_keyed(
                "/api/v1/coupons/issue",
                json!({ "policyId": policy, "userId": 77 }),
                "issue-77",
            )
            .await
        }));
    }
    let mut bodies = vec![];
    for task in tasks {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        bodies.push(answer.body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every retry got the original answer"
    );
    let issued = app
        .events()
        .await
        .into_iter()
        .filter(|(t, _)| t == "coupon.issued")
        .count();
    assert_eq!(issued, 1);
}

#[sqlx::test(migrations = false)]
async fn health_and_readiness_answer(pool: PgPool) {
    let app = spawn(pool).await;
    let health = app
        .client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app
        .client
        .get(format!("{}/ready", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}
