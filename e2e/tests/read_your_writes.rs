//! Each docs/product.md command through the real command API, then the queries that should reflect
//! it through the real query API, passing the command's position as `X-Min-Position`: no
//! sleeps, the token alone makes the read see the write.
#![allow(clippy::unwrap_used)]

use chrono::{Duration, Utc};
use e2e::System;
use reqwest::StatusCode;
use serde_json::json;

fn pos(body: &serde_json::Value) -> Option<i64> {
    Some(
        body["position"]
            .as_i64()
            .expect("a command answers with its position"),
    )
}

#[tokio::test]
async fn coupons_policies_and_quotes_read_back_after_each_command() {
    let system = System::start().await;
    let now = Utc::now();
    let created = system
        .post(
            "/api/v1/coupon-policies",
            json!({ "title": "Winter", "totalQuantity": 3, "startTime": now - Duration::hours(1),
                    "endTime": now + Duration::hours(1), "discountType": "PERCENTAGE", "discountValue": 10,
                    "minimumOrderAmount": 1000, "maximumDiscountAmount": 500 }),
        )
        .await;
    let policy = created.body["policyId"].as_str().unwrap().to_owned();
    let read = system
        .get(
            &format!("/api/v1/coupon-policies/{policy}"),
            pos(&created.body),
        )
        .await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(
        (
            read.body["issuedCount"].as_i64(),
            read.body["remainingQuantity"].as_i64()
        ),
        (Some(0), Some(3))
    );

    let issued = system
        .post(
            "/api/v1/coupons/issue",
            json!({ "policyId": policy, "userId": 11 }),
        )
        .await;
    let coupon = issued.body["couponId"].as_str().unwrap().to_owned();
    let read = system
        .get(&format!("/api/v1/coupons/{coupon}"), pos(&issued.body))
        .await;
    assert_eq!(
        (read.body["status"].as_str(), read.body["userId"].as_i64()),
        (Some("AVAILABLE"), Some(11))
    );
    let policy_now = system
        .get(
            &format!("/api/v1/coupon-policies/{policy}"),
            pos(&issued.body),
        )
        .await;
    assert_eq!(policy_now.body["issuedCount"], 1);
    let listed = system
        .get("/api/v1/coupon-policies?page=1&limit=10", pos(&issued.body))
        .await;
    assert_eq!(listed.body["total"], 1);

    let quote = system
        .get(
            &format!("/api/v1/coupons/{coupon}/quote?orderAmount=8000"),
            None,
        )
        .await;
    assert_eq!(
        (
            quote.body["applicable"].as_bool(),
            quote.body["discountAmount"].as_i64()
        ),
        (Some(true), Some(500))
    );
    let below = system
        .get(
            &format!("/api/v1/coupons/{coupon}/quote?orderAmount=999"),
            None,
        )
        .await;
    assert_eq!(below.body["reason"], "BELOW_MINIMUM_ORDER");
    let other = system
        .get(
            &format!("/api/v1/coupons/{coupon}/quote?orderAmount=8000&userId=12"),
            None,
        )
        .await;
    assert_eq!(other.body["reason"], "NOT_OWNER");
    let unknown = system
        .get(
            &format!(
                "/api/v1/coupons/{}/quote?orderAmount=8000",
                uuid::Uuid::new_v4()
            ),
            None,
        )
        .await;
    assert_eq!(unknown.body["reason"], "NOT_FOUND");

    let used = system
        .post(
            &format!("/api/v1/coupons/{coupon}/use"),
            json!({ "orderId": "ORD-7", "orderAmount": 8000 }),
        )
        .await;
    let read = system
        .get(&format!("/api/v1/coupons/{coupon}"), pos(&used.body))
        .await;
    assert_eq!(
        (
            read.body["status"].as_str(),
            read.body["discountAmount"].as_i64()
        ),
        (Some("USED"), Some(500))
    );
    let quote = system
        .get(
            &format!("/api/v1/coupons/{coupon}/quote?orderAmount=8000"),
            pos(&used.body),
        )
        .await;
    assert_eq!(quote.body["reason"], "ALREADY_USED");
    let policy_now = system
        .get(
            &format!("/api/v1/coupon-policies/{policy}"),
            pos(&used.body),
        )
        .await;
    assert_eq!(policy_now.body["usedCount"], 1);
    let by_status = system
        .get("/api/v1/coupons/user/11?status=USED", pos(&used.body))
        .await;
    assert_eq!(by_status.body["total"], 1);

    let canceled = system
        .post(&format!("/api/v1/coupons/{coupon}/cancel"), json!({}))
        .await;
    let read = system
        .get(&format!("/api/v1/coupons/{coupon}"), pos(&canceled.body))
        .await;
    assert_eq!(read.body["status"], "AVAILABLE");
    let revoked = system
        .post(&format!("/api/v1/coupons/{coupon}/revoke"), json!({}))
        .await;
    let read = system
        .get(&format!("/api/v1/coupons/{coupon}"), pos(&revoked.body))
        .await;
    assert_eq!(read.body["status"], "CANCELED");
    let quote = system
        .get(
            &format!("/api/v1/coupons/{coupon}/quote?orderAmount=8000"),
            pos(&revoked.body),
        )
        .await;
    assert_eq!(quote.body["reason"], "REVOKED");
    let mine = system
        .get("/api/v1/coupons/user/11", pos(&revoked.body))
        .await;
    assert_eq!(
        (
            mine.body["total"].as_i64(),
            mine.body["items"][0]["status"].as_str()
        ),
        (Some(1), Some("CANCELED"))
    );
    system.stop().await;
}

#[tokio::test]
async fn point_balances_and_history_pages_carry_the_balance_after_each_entry() {
    let system = System::start().await;
    let earned = system
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 5, "amount": 1000, "description": "signup" }),
        )
        .await;
    let spent = system
        .post(
            "/api/v1/points/use",
            json!({ "userId": 5, "amount": 300, "description": "checkout", "orderId": "ORD-1" }),
        )
        .await;
    let more = system
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 5, "amount": 50, "description": "review" }),
        )
        .await;
    let refund = system
        .post(
            "/api/v1/points/cancel",
            json!({ "userId": 5, "transactionId": spent.body["transactionId"] }),
        )
        .await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.body);
    let last = pos(&refund.body);

    let balance = system.get("/api/v1/points/users/5/balance", last).await;
    assert_eq!(balance.body["balance"], 1050);
    let first_page = system
        .get("/api/v1/points/users/5/history?page=1&limit=3", last)
        .await;
    assert_eq!(first_page.body["total"], 4);
    let items = first_page.body["items"].as_array().unwrap();
    let seen: Vec<(&str, i64, i64)> = items
        .iter()
        .map(|i| {
            (
                i["type"].as_str().unwrap(),
                i["amount"].as_i64().unwrap(),
                i["balanceAfter"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("CANCEL", 300, 1050), ("EARN", 50, 750), ("USE", 300, 700)],
        "newest first"
    );
    assert_eq!(items[2]["orderId"], "ORD-1");
    assert_eq!(
        items[0]["canceledTransactionId"],
        spent.body["transactionId"]
    );
    let second_page = system
        .get("/api/v1/points/users/5/history?page=2&limit=3", last)
        .await;
    assert_eq!(second_page.body["items"][0]["balanceAfter"], 1000);
    assert_eq!(second_page.body["items"].as_array().unwrap().len(), 1);
    let _ = (earned, more);

    let nobody = system.get("/api/v1/points/users/6/balance", last).await;
    assert_eq!(nobody.body["balance"], 0);
    let bad = system
        .get("/api/v1/points/users/5/history?limit=1000", None)
        .await;
    assert_eq!(
        (bad.status, bad.body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("limit"))
    );
    system.stop().await;
}

#[tokio::test]
async fn live_stock_follows_orders_and_cancellations() {
    let system = System::start().await;
    let product = system
        .post(
            "/api/v1/products",
            json!({ "name": "Headphones", "price": 10000, "description": "ANC" }),
        )
        .await;
    let product_id = product.body["productId"].as_str().unwrap().to_owned();
    let read = system
        .get(
            &format!("/api/v1/products/{product_id}"),
            pos(&product.body),
        )
        .await;
    assert_eq!(
        (read.body["name"].as_str(), read.body["price"].as_i64()),
        (Some("Headphones"), Some(10000))
    );

    let now = Utc::now();
    let sale = system
        .post(
            "/api/v1/time-sales",
            json!({ "productId": product_id, "discountPrice": 7000, "quantity": 5,
                    "startAt": now - Duration::minutes(1), "endAt": now + Duration::hours(1), "perUserLimit": 3 }),
        )
        .await;
    let sale_id = sale.body["timeSaleId"].as_str().unwrap().to_owned();
    let read = system
        .get(&format!("/api/v1/time-sales/{sale_id}"), pos(&sale.body))
        .await;
    assert_eq!(
        (
            read.body["remainingQuantity"].as_i64(),
            read.body["status"].as_str()
        ),
        (Some(5), Some("ACTIVE"))
    );

    let first = system
        .post(
            "/api/v1/orders",
            json!({ "timeSaleId": sale_id, "userId": 21, "quantity": 3 }),
        )
        .await;
    let second = system
        .post(
            "/api/v1/orders",
            json!({ "timeSaleId": sale_id, "userId": 22, "quantity": 2 }),
        )
        .await;
    let read = system
        .get(&format!("/api/v1/time-sales/{sale_id}"), pos(&second.body))
        .await;
    assert_eq!(
        (
            read.body["remainingQuantity"].as_i64(),
            read.body["status"].as_str()
        ),
        (Some(0), Some("SOLD_OUT"))
    );

    let order_id = first.body["orderId"].as_str().unwrap().to_owned();
    let canceled = system
        .post(&format!("/api/v1/orders/{order_id}/cancel"), json!({}))
        .await;
    let read = system
        .get(
            &format!("/api/v1/time-sales/{sale_id}"),
            pos(&canceled.body),
        )
        .await;
    assert_eq!(
        (
            read.body["remainingQuantity"].as_i64(),
            read.body["soldQuantity"].as_i64()
        ),
        (Some(3), Some(2))
    );
    let order = system
        .get(&format!("/api/v1/orders/{order_id}"), pos(&canceled.body))
        .await;
    assert_eq!(
        (
            order.body["status"].as_str(),
            order.body["totalPrice"].as_i64()
        ),
        (Some("CANCELED"), Some(21000))
    );
    let mine = system
        .get("/api/v1/orders/user/22", pos(&canceled.body))
        .await;
    assert_eq!(
        (
            mine.body["total"].as_i64(),
            mine.body["items"][0]["status"].as_str()
        ),
        (Some(1), Some("CREATED"))
    );
    let listed = system.get("/api/v1/time-sales", pos(&canceled.body)).await;
    assert_eq!(listed.body["total"], 1);
    let missing = system
        .get(&format!("/api/v1/orders/{}", uuid::Uuid::new_v4()), None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    system.stop().await;
}

#[tokio::test]
async fn a_position_the_projections_cannot_reach_in_time_is_a_503_and_one_beyond_the_log_a_422() {
    let mut system = System::start_with(None, &[("APP_CONSISTENCY_WAIT_MS", "300")]).await;
    // The projector stopped: a position in the log is not reached in time.
    system.kill("projector");
    let earned = system
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 1, "amount": 10, "description": "d" }),
        )
        .await;
    assert_eq!(earned.status, StatusCode::CREATED, "{}", earned.body);
    let position = earned.body["position"].as_i64().expect("a position");
    let late = system
        .get("/api/v1/points/users/1/balance", Some(position))
        .await;
    assert_eq!(late.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(late.body["code"], "NOT_YET_CONSISTENT");
    assert_eq!(late.retry_after.as_deref(), Some("1"));
    // A position no command has answered: the client's mistake, said at once.
    let beyond = system
        .get("/api/v1/points/users/1/balance", Some(position + 1_000_000))
        .await;
    assert_eq!(
        beyond.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        beyond.body
    );
    assert_eq!(beyond.body["field"], "X-Min-Position");
    assert_eq!(beyond.body["code"], "UNKNOWN_POSITION");
    let plain = system.get("/api/v1/points/users/1/balance", None).await;
    assert_eq!(plain.status, StatusCode::OK);
    system.stop().await;
}

/// A read as of position P (or of a time between two commands) equals the read model as it
/// was at P: each live read is taken with `X-Min-Position: P` before anything later happens,
/// then compared with the as-of read once much more has.
#[tokio::test]
async fn reads_as_of_a_position_or_a_time_equal_the_read_models_as_they_were_then() {
    let system = System::start().await;
    let sale = system.open_sale(10).await;
    for user in [1, 2] {
        let order = system
            .post(
                "/api/v1/orders",
                json!({ "timeSaleId": sale, "userId": user, "quantity": 2 }),
            )
            .await;
        assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    }
    let hold = system
        .post(
            "/api/v1/reservations",
            json!({ "timeSaleId": sale, "orderId": "c-1", "userId": 3, "quantity": 3, "ttlSeconds": 600 }),
        )
        .await;
    assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.body);
    let p1 = pos(&hold.body);
    let sale_then = system
        .get(&format!("/api/v1/time-sales/{sale}"), p1)
        .await
        .body;

    let later = Utc::now() + Duration::days(30);
    system
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 9, "amount": 100, "description": "a", "expiresAt": later }),
        )
        .await;
    let spent = system
        .post(
            "/api/v1/points/use",
            json!({ "userId": 9, "amount": 30, "description": "b" }),
        )
        .await;
    let p2 = pos(&spent.body);
    let balance_then = system.get("/api/v1/points/users/9/balance", p2).await.body;
    let history_then = system.get("/api/v1/points/users/9/history", p2).await.body;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let between = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    // Much later: the hold released, more orders, the spend cancelled, more points.
    let released = system
        .post(
            &format!(
                "/api/v1/reservations/{}/release",
                hold.body["reservationId"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.body);
    system
        .post(
            "/api/v1/orders",
            json!({ "timeSaleId": sale, "userId": 4, "quantity": 5 }),
        )
        .await;
    system
        .post(
            "/api/v1/points/cancel",
            json!({ "userId": 9, "transactionId": spent.body["transactionId"] }),
        )
        .await;
    let last = system
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 9, "amount": 7, "description": "c" }),
        )
        .await;
    system
        .get("/api/v1/points/users/9/balance", pos(&last.body))
        .await;

    let sale_as_of = system
        .get(
            &format!("/api/v1/time-sales/{sale}/as-of?position={}", p1.unwrap()),
            None,
        )
        .await;
    assert_eq!(sale_as_of.status, StatusCode::OK, "{}", sale_as_of.body);
    for field in [
        "remainingQuantity",
        "reservedQuantity",
        "soldQuantity",
        "status",
        "quantity",
    ] {
        assert_eq!(
            sale_as_of.body[field], sale_then[field],
            "{field}: {} vs {}",
            sale_as_of.body, sale_then
        );
    }
    assert_eq!(
        (
            sale_then["remainingQuantity"].as_i64(),
            sale_then["reservedQuantity"].as_i64()
        ),
        (Some(3), Some(3))
    );
    let now_sale = system
        .get(&format!("/api/v1/time-sales/{sale}"), None)
        .await
        .body;
    assert_ne!(
        now_sale["remainingQuantity"], sale_then["remainingQuantity"],
        "the sale moved on since"
    );

    for query in [
        format!("position={}", p2.unwrap()),
        format!(
            "at={}",
            between
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .replace('+', "%2B")
        ),
    ] {
        let account = system
            .get(&format!("/api/v1/points/users/9/as-of?{query}"), None)
            .await;
        assert_eq!(account.status, StatusCode::OK, "{}", account.body);
        assert_eq!(
            account.body["balance"], balance_then["balance"],
            "{query}: {}",
            account.body
        );
        assert_eq!(
            account.body["nextExpiry"], balance_then["nextExpiry"],
            "{query}: {}",
            account.body
        );
        assert_eq!(account.body["history"], history_then["items"], "{query}");
        assert_eq!(
            account.body["historyTotal"], history_then["total"],
            "{query}"
        );
    }
    assert_eq!(balance_then["balance"], 70);

    // Malformed: 400; neither or both: 422 — each naming the parameter.
    for (query, status, field) in [
        ("?position=0", StatusCode::BAD_REQUEST, "position"),
        ("?at=yesterday", StatusCode::BAD_REQUEST, "at"),
        ("?position=abc", StatusCode::BAD_REQUEST, "position"),
        ("", StatusCode::UNPROCESSABLE_ENTITY, "position"),
        (
            "?position=1&at=2026-01-01T00:00:00Z",
            StatusCode::UNPROCESSABLE_ENTITY,
            "position",
        ),
    ] {
        let answer = system
            .get(&format!("/api/v1/time-sales/{sale}/as-of{query}"), None)
            .await;
        assert_eq!(answer.status, status, "{query}: {}", answer.body);
        assert_eq!(answer.body["field"], field, "{query}: {}", answer.body);
    }
    // Before the sale existed: 404.
    let before = system
        .get(
            &format!("/api/v1/time-sales/{sale}/as-of?at=2020-01-01T00:00:00Z"),
            None,
        )
        .await;
    assert_eq!(before.status, StatusCode::NOT_FOUND, "{}", before.body);
    system.stop().await;
}
