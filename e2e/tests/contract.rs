//! An outside consumer's view: a fresh consumer group reads every topic from the start; every
//! message matches `schemas/` (envelope and event), is keyed by its aggregate id, sits on its
//! category's topic, and each aggregate's versions arrive in order without gaps. Every event of
//! the log is there exactly once.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};

use chrono::{Duration, Utc};
use e2e::{System, SHORT_HOLDS};
use schemas::ContractValidator;
use serde_json::{json, Value};

#[tokio::test]
async fn every_message_matches_the_contract_and_each_aggregate_arrives_in_order() {
    let system = System::start_with(None, SHORT_HOLDS).await;
    let now = Utc::now();
    // Every event type at least once.
    let policy = system
        .post("/api/v1/coupon-policies", json!({ "title": "C", "totalQuantity": 10, "startTime": now - Duration::hours(1),
            "endTime": now + Duration::hours(1), "discountType": "FIXED_AMOUNT", "discountValue": 100 }))
        .await
        .body["policyId"]
        .clone();
    let mut coupons = vec![];
    for user in 1..=3 {
        coupons.push(
            system
                .post(
                    "/api/v1/coupons/issue",
                    json!({ "policyId": policy, "userId": user }),
                )
                .await
                .body["couponId"]
                .clone(),
        );
    }
    let c0 = coupons[0].as_str().unwrap();
    system
        .post(
            &format!("/api/v1/coupons/{c0}/use"),
            json!({ "orderId": "O", "orderAmount": 500 }),
        )
        .await;
    system
        .post(&format!("/api/v1/coupons/{c0}/cancel"), json!({}))
        .await;
    system
        .post(
            &format!("/api/v1/coupons/{}/revoke", coupons[1].as_str().unwrap()),
            json!({}),
        )
        .await;
    for user in 1..=3 {
        system
            .post(
                "/api/v1/points/earn",
                json!({ "userId": user, "amount": 100, "description": "e" }),
            )
            .await;
    }
    let spent = system
        .post(
            "/api/v1/points/use",
            json!({ "userId": 1, "amount": 40, "description": "u" }),
        )
        .await;
    system
        .post(
            "/api/v1/points/cancel",
            json!({ "userId": 1, "transactionId": spent.body["transactionId"] }),
        )
        .await;
    let product = system
        .post("/api/v1/products", json!({ "name": "P", "price": 1000 }))
        .await
        .body["productId"]
        .clone();
    let sale = system
        .post(
            "/api/v1/time-sales",
            json!({ "productId": product, "discountPrice": 500, "quantity": 5,
            "startAt": now - Duration::minutes(1), "endAt": now + Duration::hours(1) }),
        )
        .await
        .body["timeSaleId"]
        .clone();
    let order = system
        .post(
            "/api/v1/orders",
            json!({ "timeSaleId": sale, "userId": 1, "quantity": 2 }),
        )
        .await;
    system
        .post(
            &format!(
                "/api/v1/orders/{}/cancel",
                order.body["orderId"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    // Checkout holds of the sale's units and of a coupon: confirmed, released, and left to
    // expire; points that expire in a moment.
    for (order, ttl, end) in [
        ("H1", 60, Some("confirm")),
        ("H2", 60, Some("release")),
        ("H3", 1, None),
    ] {
        let hold = json!({ "timeSaleId": sale, "orderId": order, "userId": 2, "quantity": 1, "ttlSeconds": ttl });
        hold_then(&system, "/api/v1/reservations", hold, |held| {
            end.map(|end| {
                format!(
                    "/api/v1/reservations/{}/{end}",
                    held["reservationId"].as_str().unwrap()
                )
            })
        })
        .await;
    }
    let c2 = coupons[2].as_str().unwrap();
    for (order, ttl, end) in [("CH1", 60, Some("release")), ("CH2", 1, None)] {
        let hold = json!({ "orderId": order, "orderAmount": 500, "ttlSeconds": ttl });
        hold_then(
            &system,
            &format!("/api/v1/coupons/{c2}/reserve"),
            hold,
            |_| end.map(|end| format!("/api/v1/coupons/{c2}/{end}")),
        )
        .await;
    }
    let earned = system
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 2, "amount": 10, "description": "promo", "expiresAt": Utc::now() + Duration::seconds(5) }),
        )
        .await;
    assert!(earned.status.is_success(), "{}", earned.body);
    for expiry in [
        "timesale.reservation_expired",
        "coupon.reservation_expired",
        "point.expired",
    ] {
        system
            .until_logged(expiry, &format!("no {expiry} in the log"))
            .await;
    }

    let head = system.relayed().await;
    let messages = system.consume(head as usize).await;
    let validator = ContractValidator::new().unwrap();
    let mut versions: HashMap<String, Vec<i64>> = HashMap::new();
    let mut types = BTreeSet::new();
    let mut event_ids = BTreeSet::new();
    for (key, message) in &messages {
        if let Err(e) = validator.validate_envelope(message) {
            panic!("{e}\n{message:#}");
        }
        assert_eq!(
            key,
            message["aggregateId"].as_str().unwrap(),
            "keyed by aggregate id"
        );
        assert!(message["type"].as_str().unwrap().len() > 3);
        types.insert(message["type"].as_str().unwrap().to_owned());
        assert!(
            event_ids.insert(message["eventId"].as_str().unwrap().to_owned()),
            "an event arrived twice"
        );
        versions
            .entry(key.clone())
            .or_default()
            .push(message["aggregateVersion"].as_i64().unwrap());
    }
    for (aggregate, seen) in &versions {
        let expected: Vec<i64> = (1..=seen.len() as i64).collect();
        assert_eq!(
            seen, &expected,
            "aggregate {aggregate}: versions out of order or with gaps"
        );
    }
    let all: BTreeSet<String> = domain_types();
    assert_eq!(types, all, "every event type was published");
    let logged: Vec<String> = sqlx::query_scalar("SELECT event_id::text FROM events")
        .fetch_all(&system.pool)
        .await
        .unwrap();
    assert_eq!(
        event_ids,
        logged.into_iter().collect(),
        "Kafka holds exactly the log's events"
    );
    system.stop().await;
}

/// Posts the hold `body` to `path`, then (when `end` names a path for the answer) ends it there.
async fn hold_then(
    system: &System,
    path: &str,
    body: Value,
    end: impl FnOnce(&Value) -> Option<String>,
) {
    let held = system.post(path, body).await;
    assert!(held.status.is_success(), "{}", held.body);
    if let Some(end) = end(&held.body) {
        let ended = system.post(&end, json!({})).await;
        assert!(ended.status.is_success(), "{}", ended.body);
    }
}

fn domain_types() -> BTreeSet<String> {
    schemas::SCHEMAS
        .iter()
        .map(|s| s.event_type.to_owned())
        .collect()
}
