//! Checkout features against the real processes. Holds: concurrent holds never take more than
//! the stock, released and confirmed ones leave the stock and the orders exact, and the system
//! expires every hold it should exactly once — under load, and across a kill -9 of the command
//! API (with a second instance firing the same deadlines), as the log and an outside Kafka
//! consumer reading from offset 0 both say. Budgets: the query API's quote and policy say
//! what the command side decides.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use e2e::{System, COMMAND_API, SHORT_HOLDS};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn reserve(
    system: &System,
    sale: &str,
    order: &str,
    user: i64,
    ttl: i64,
) -> (StatusCode, Value) {
    let answer = system
        .post(
            "/api/v1/reservations",
            json!({ "timeSaleId": sale, "orderId": order, "userId": user, "quantity": 1, "ttlSeconds": ttl }),
        )
        .await;
    (answer.status, answer.body)
}

/// reservationId → how many events of `event_type` carry it.
async fn per_reservation(system: &System, event_type: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for data in system.logged(event_type).await {
        *counts
            .entry(data["reservationId"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

/// The sale as the query API shows it once the read models reached the log's head.
async fn sale_view(system: &System, sale: &str) -> Value {
    let head = system.projected().await;
    let answer = system
        .get(&format!("/api/v1/time-sales/{sale}"), Some(head))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

/// Waits until no hold of the log is still open (every `timesale.reserved` ended by one
/// confirmation, release or expiry), at most `within`.
async fn until_every_hold_ended(system: &System, within: Duration) {
    let started = std::time::Instant::now();
    loop {
        let open = system.open_holds().await;
        if open == 0 {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{open} holds still open {within:?} after they came due"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every hold of the log ended exactly once, and each expiry came at or after its due time.
async fn each_hold_ended_once(system: &System) -> (usize, usize, usize) {
    let reserved: HashMap<String, Value> = system
        .logged("timesale.reserved")
        .await
        .into_iter()
        .map(|d| (d["reservationId"].as_str().unwrap().to_owned(), d))
        .collect();
    let confirmed = per_reservation(system, "timesale.reservation_confirmed").await;
    let released = per_reservation(system, "timesale.reservation_released").await;
    let expired = per_reservation(system, "timesale.reservation_expired").await;
    for id in reserved.keys() {
        let ends = confirmed.get(id).unwrap_or(&0)
            + released.get(id).unwrap_or(&0)
            + expired.get(id).unwrap_or(&0);
        assert_eq!(ends, 1, "hold {id} ended {ends} times");
    }
    for data in system.logged("timesale.reservation_expired").await {
        let id = data["reservationId"].as_str().unwrap();
        let due = reserved[id]["expiresAt"].as_str().unwrap();
        let due = chrono::DateTime::parse_from_rfc3339(due).unwrap();
        let at =
            chrono::DateTime::parse_from_rfc3339(data["occurredAt"].as_str().unwrap()).unwrap();
        assert!(
            at >= due,
            "hold {id} expired at {at}, before its due time {due}"
        );
    }
    (confirmed.len(), released.len(), expired.len())
}

/// How late each expiry was (its event's time past the hold's due time), p50 and max, in ms.
async fn lateness(system: &System) -> (i64, i64) {
    let due: HashMap<String, String> = system
        .logged("timesale.reserved")
        .await
        .into_iter()
        .map(|d| {
            (
                d["reservationId"].as_str().unwrap().to_owned(),
                d["expiresAt"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut late: Vec<i64> = system
        .logged("timesale.reservation_expired")
        .await
        .iter()
        .map(|d| {
            let at =
                chrono::DateTime::parse_from_rfc3339(d["occurredAt"].as_str().unwrap()).unwrap();
            let due =
                chrono::DateTime::parse_from_rfc3339(&due[d["reservationId"].as_str().unwrap()])
                    .unwrap();
            (at - due).num_milliseconds()
        })
        .collect();
    late.sort_unstable();
    if late.is_empty() {
        return (0, 0);
    }
    (late[late.len() / 2], late[late.len() - 1])
}

#[tokio::test]
async fn a_thousand_holds_on_a_hundred_units_hold_exactly_a_hundred_and_each_ends_once() {
    let system = System::start_with(None, SHORT_HOLDS).await;
    let sale = system.open_sale(100).await;

    // 1,000 concurrent holds of one unit each, held long enough for what follows.
    let holds = (1..=1_000).map(|user| {
        let (system, sale) = (&system, sale.clone());
        async move { reserve(system, &sale, &format!("checkout-{user}"), user, 120).await }
    });
    let answers = futures_util::future::join_all(holds).await;
    let held: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .map(|(_, body)| body)
        .collect();
    for (status, body) in &answers {
        assert!(
            *status == StatusCode::CREATED
                || (*status == StatusCode::UNPROCESSABLE_ENTITY
                    && ["SOLD_OUT", "INSUFFICIENT_STOCK"]
                        .contains(&body["code"].as_str().unwrap())),
            "{status}: {body}"
        );
    }
    assert_eq!(held.len(), 100, "exactly the stock is held");
    assert_eq!(system.logged("timesale.reserved").await.len(), 100);
    let view = sale_view(&system, &sale).await;
    assert_eq!(
        (
            view["remainingQuantity"].as_i64(),
            view["reservedQuantity"].as_i64()
        ),
        (Some(0), Some(100))
    );
    assert_eq!(view["status"], "SOLD_OUT");

    // The same checkout's hold again is the same hold; another request under its id is not.
    let first = held[0];
    let (user, order) = (
        first["userId"].as_i64().unwrap(),
        first["orderId"].as_str().unwrap(),
    );
    let (status, again) = reserve(&system, &sale, order, user, 120).await;
    assert_eq!(
        (status, &again["reservationId"]),
        (StatusCode::OK, &first["reservationId"])
    );
    let (status, other) = reserve(&system, &sale, order, user + 1, 120).await;
    assert_eq!(
        (status, other["code"].as_str()),
        (StatusCode::CONFLICT, Some("RESERVATION_EXISTS")),
        "{other}"
    );

    // Half released, half confirmed, all at once.
    let ends = held.iter().enumerate().map(|(i, hold)| {
        let system = &system;
        let id = hold["reservationId"].as_str().unwrap().to_owned();
        let end = if i % 2 == 0 { "confirm" } else { "release" };
        async move {
            let answer = system
                .post(&format!("/api/v1/reservations/{id}/{end}"), json!({}))
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{end}: {}", answer.body);
            answer.body
        }
    });
    let ended = futures_util::future::join_all(ends).await;
    let orders: HashSet<&str> = ended
        .iter()
        .filter_map(|b| b["createdOrderId"].as_str())
        .collect();
    assert_eq!(orders.len(), 50, "each confirmation made its own order");
    let view = sale_view(&system, &sale).await;
    assert_eq!(
        (
            view["remainingQuantity"].as_i64(),
            view["reservedQuantity"].as_i64(),
            view["soldQuantity"].as_i64()
        ),
        (Some(50), Some(0), Some(50)),
        "{view}"
    );
    // A confirmed hold's order is an order like any other.
    let order_id = orders.iter().next().unwrap();
    let order = system
        .get(&format!("/api/v1/orders/{order_id}"), None)
        .await;
    assert_eq!(
        (order.status, order.body["status"].as_str()),
        (StatusCode::OK, Some("CREATED"))
    );

    // Expiry under load: 50 holds of two seconds, while 100 more buyers keep asking for holds
    // of one second — taking units as the expiries give them back, and expiring in turn.
    for user in 2_001..=2_050 {
        let (status, body) = reserve(&system, &sale, &format!("late-{user}"), user, 2).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let load_until = std::time::Instant::now() + Duration::from_secs(5);
    let load = (3_001..=3_100).map(|user| {
        let (system, sale) = (&system, sale.clone());
        async move {
            let mut round = 0;
            while std::time::Instant::now() < load_until {
                round += 1;
                let (status, body) =
                    reserve(system, &sale, &format!("load-{user}-{round}"), user, 1).await;
                assert!(
                    status == StatusCode::CREATED || status == StatusCode::UNPROCESSABLE_ENTITY,
                    "{status}: {body}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    futures_util::future::join_all(load).await;
    until_every_hold_ended(&system, Duration::from_secs(20)).await;

    let (confirmed, released, expired) = each_hold_ended_once(&system).await;
    assert_eq!((confirmed, released), (50, 50));
    let reserved = system.logged("timesale.reserved").await.len();
    assert_eq!(
        expired,
        reserved - 100,
        "every hold not confirmed or released expired"
    );
    assert!(expired >= 50, "the 50 late holds expired ({expired})");
    let view = sale_view(&system, &sale).await;
    assert_eq!(
        (
            view["remainingQuantity"].as_i64(),
            view["reservedQuantity"].as_i64(),
            view["soldQuantity"].as_i64()
        ),
        (Some(50), Some(0), Some(50)),
        "every expired unit is back in stock: {view}"
    );
    let (p50, max) = lateness(&system).await;
    println!("{expired} expiries under load; late p50 {p50} ms, max {max} ms");
    system.stop().await;
}

#[tokio::test]
async fn holds_due_while_the_command_api_is_dead_expire_once_at_start_even_with_two_instances() {
    let mut system = System::start_with(None, SHORT_HOLDS).await;
    let sale = system.open_sale(50).await;
    let mut ids = HashSet::new();
    for user in 1..=20 {
        let (status, body) = reserve(&system, &sale, &format!("checkout-{user}"), user, 2).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.insert(body["reservationId"].as_str().unwrap().to_owned());
    }
    // Dead before any came due (and, likely, before its deadline follower read them all).
    system.kill(COMMAND_API);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(system
        .logged("timesale.reservation_expired")
        .await
        .is_empty());

    // Two instances come up over the same log; both look for due deadlines.
    system.launch(COMMAND_API).await;
    let (mut second, _) = system.spawn(COMMAND_API, &[]).await;
    until_every_hold_ended(&system, Duration::from_secs(20)).await;
    // Both keep looking a while longer: nothing fires twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let expired = per_reservation(&system, "timesale.reservation_expired").await;
    assert_eq!(expired.keys().cloned().collect::<HashSet<_>>(), ids);
    assert!(expired.values().all(|n| *n == 1), "{expired:?}");
    each_hold_ended_once(&system).await;

    // An outside consumer reading Kafka from offset 0 sees one expiry per hold.
    let total = system.relayed().await as usize;
    let events = system.consume(total).await;
    let mut seen: HashMap<String, HashSet<String>> = HashMap::new();
    for (_, event) in &events {
        if event["type"] == "timesale.reservation_expired" {
            seen.entry(event["data"]["reservationId"].as_str().unwrap().to_owned())
                .or_default()
                .insert(event["eventId"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), ids);
    assert!(seen.values().all(|events| events.len() == 1), "{seen:?}");
    let view = sale_view(&system, &sale).await;
    assert_eq!(
        (
            view["remainingQuantity"].as_i64(),
            view["reservedQuantity"].as_i64()
        ),
        (Some(50), Some(0))
    );

    let _ = second.kill();
    let _ = second.wait();
    system.stop().await;
}

#[tokio::test]
async fn a_spent_budget_shows_in_the_policy_and_the_quote_and_a_cancelled_use_gives_it_back() {
    let system = System::start().await;
    let now = chrono::Utc::now();
    let policy = system
        .post(
            "/api/v1/coupon-policies",
            json!({ "title": "Budgeted", "totalQuantity": 10,
                    "startTime": now - chrono::Duration::hours(1), "endTime": now + chrono::Duration::hours(1),
                    "discountType": "FIXED_AMOUNT", "discountValue": 300, "discountBudget": 500 }),
        )
        .await;
    assert_eq!(policy.status, StatusCode::CREATED, "{}", policy.body);
    let policy = policy.body["policyId"].as_str().unwrap().to_owned();
    let mut coupons = vec![];
    for user in [1, 2] {
        let issued = system
            .post(
                "/api/v1/coupons/issue",
                json!({ "policyId": policy, "userId": user }),
            )
            .await;
        coupons.push(issued.body["couponId"].as_str().unwrap().to_owned());
    }
    let used = system
        .post(
            &format!("/api/v1/coupons/{}/use", coupons[0]),
            json!({ "orderId": "o-1", "orderAmount": 1_000 }),
        )
        .await;
    assert_eq!(used.status, StatusCode::OK, "{}", used.body);
    let position = used.body["position"].as_i64();

    // 300 of 500 granted: a second use of 300 would pass it — the quote says so, and so
    // does the use.
    let quote = system
        .get(
            &format!("/api/v1/coupons/{}/quote?orderAmount=1000", coupons[1]),
            position,
        )
        .await;
    assert_eq!(
        (
            quote.body["applicable"].as_bool(),
            quote.body["reason"].as_str()
        ),
        (Some(false), Some("BUDGET_EXHAUSTED")),
        "{}",
        quote.body
    );
    let shown = system
        .get(&format!("/api/v1/coupon-policies/{policy}"), position)
        .await;
    assert_eq!(
        (
            shown.body["discountBudget"].as_i64(),
            shown.body["discountGranted"].as_i64()
        ),
        (Some(500), Some(300)),
        "{}",
        shown.body
    );
    let refused = system
        .post(
            &format!("/api/v1/coupons/{}/use", coupons[1]),
            json!({ "orderId": "o-2", "orderAmount": 1_000 }),
        )
        .await;
    assert_eq!(refused.body["code"], "BUDGET_EXHAUSTED", "{}", refused.body);

    // The first use cancelled: its 300 are back, and the second coupon applies.
    let undone = system
        .post(&format!("/api/v1/coupons/{}/cancel", coupons[0]), json!({}))
        .await;
    assert_eq!(undone.status, StatusCode::OK, "{}", undone.body);
    let quote = system
        .get(
            &format!("/api/v1/coupons/{}/quote?orderAmount=1000", coupons[1]),
            undone.body["position"].as_i64(),
        )
        .await;
    assert_eq!(
        quote.body["applicable"].as_bool(),
        Some(true),
        "{}",
        quote.body
    );
    system.stop().await;
}

#[tokio::test]
async fn points_expire_at_their_due_time_once_and_the_balance_says_what_expires_next() {
    let system = System::start_with(None, SHORT_HOLDS).await;
    let soon = chrono::Utc::now() + chrono::Duration::seconds(2);
    let later = chrono::Utc::now() + chrono::Duration::days(30);
    for (amount, expires) in [(100, Some(soon)), (40, Some(later)), (60, None)] {
        let earned = system
            .post(
                "/api/v1/points/earn",
                json!({ "userId": 5, "amount": amount, "description": "promo", "expiresAt": expires }),
            )
            .await;
        assert_eq!(earned.status, StatusCode::CREATED, "{}", earned.body);
    }
    // 120 spent: the 100 that expire first, then 20 of the month's.
    let spent = system
        .post(
            "/api/v1/points/use",
            json!({ "userId": 5, "amount": 120, "description": "checkout" }),
        )
        .await;
    assert_eq!(spent.status, StatusCode::CREATED, "{}", spent.body);
    let balance = system
        .get(
            "/api/v1/points/users/5/balance",
            spent.body["position"].as_i64(),
        )
        .await;
    assert_eq!(balance.body["balance"], 80, "{}", balance.body);
    assert_eq!(balance.body["nextExpiry"]["amount"], 20, "{}", balance.body);

    // The spend cancelled: the first lot is whole again, and expires in a moment.
    let cancel = system
        .post(
            "/api/v1/points/cancel",
            json!({ "userId": 5, "transactionId": spent.body["transactionId"] }),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::CREATED, "{}", cancel.body);
    system
        .until_logged("point.expired", "the points never expired")
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let expired = system.logged("point.expired").await;
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(
        (
            expired[0]["amount"].as_i64(),
            expired[0]["balanceAfter"].as_i64()
        ),
        (Some(100), Some(100))
    );
    let due =
        chrono::DateTime::parse_from_rfc3339(expired[0]["occurredAt"].as_str().unwrap()).unwrap();
    assert!(due >= soon, "expired before its time");

    let head = system.projected().await;
    let balance = system
        .get("/api/v1/points/users/5/balance", Some(head))
        .await;
    assert_eq!(balance.body["balance"], 100, "{}", balance.body);
    assert_eq!(balance.body["nextExpiry"]["amount"], 40, "{}", balance.body);
    let history = system
        .get("/api/v1/points/users/5/history", Some(head))
        .await;
    assert_eq!(
        history.body["items"][0]["type"], "EXPIRE",
        "{}",
        history.body
    );
    assert_eq!(history.body["items"][0]["amount"], 100, "{}", history.body);
    system.stop().await;
}

#[tokio::test]
async fn a_coupon_held_for_a_checkout_is_nobody_elses_until_it_is_confirmed_or_expires_once() {
    let system = System::start_with(None, SHORT_HOLDS).await;
    let now = chrono::Utc::now();
    let policy = system
        .post(
            "/api/v1/coupon-policies",
            json!({ "title": "Held", "totalQuantity": 10,
                    "startTime": now - chrono::Duration::hours(1), "endTime": now + chrono::Duration::hours(1),
                    "discountType": "FIXED_AMOUNT", "discountValue": 300, "discountBudget": 500 }),
        )
        .await;
    let policy = policy.body["policyId"].as_str().unwrap().to_owned();
    let mut coupons = vec![];
    for user in [1, 2] {
        let issued = system
            .post(
                "/api/v1/coupons/issue",
                json!({ "policyId": policy, "userId": user }),
            )
            .await;
        coupons.push(issued.body["couponId"].as_str().unwrap().to_owned());
    }
    let held = system
        .post(
            &format!("/api/v1/coupons/{}/reserve", coupons[0]),
            json!({ "orderId": "chk-1", "orderAmount": 1_000, "ttlSeconds": 2 }),
        )
        .await;
    assert_eq!(
        (held.status, held.body["status"].as_str()),
        (StatusCode::CREATED, Some("RESERVED")),
        "{}",
        held.body
    );
    // Held: not usable, and its 300 count against the budget of 500.
    let used = system
        .post(
            &format!("/api/v1/coupons/{}/use", coupons[0]),
            json!({ "orderId": "o", "orderAmount": 1_000 }),
        )
        .await;
    assert_eq!(used.body["code"], "RESERVED", "{}", used.body);
    let other = system
        .post(
            &format!("/api/v1/coupons/{}/use", coupons[1]),
            json!({ "orderId": "o", "orderAmount": 1_000 }),
        )
        .await;
    assert_eq!(other.body["code"], "BUDGET_EXHAUSTED", "{}", other.body);
    let view = system
        .get(
            &format!("/api/v1/coupons/{}", coupons[0]),
            held.body["position"].as_i64(),
        )
        .await;
    assert_eq!(view.body["status"], "RESERVED", "{}", view.body);

    // The hold expires by itself, once; the coupon and the budget are free again.
    system
        .until_logged("coupon.reservation_expired", "the hold never expired")
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(system.logged("coupon.reservation_expired").await.len(), 1);
    let view = system
        .get(
            &format!("/api/v1/coupons/{}", coupons[0]),
            Some(system.projected().await),
        )
        .await;
    assert_eq!(view.body["status"], "AVAILABLE", "{}", view.body);

    // Held again and confirmed: a use like any other.
    let held = system
        .post(
            &format!("/api/v1/coupons/{}/reserve", coupons[1]),
            json!({ "orderId": "chk-2", "orderAmount": 1_000, "ttlSeconds": 60 }),
        )
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    let confirmed = system
        .post(
            &format!("/api/v1/coupons/{}/confirm", coupons[1]),
            json!({}),
        )
        .await;
    assert_eq!(
        (confirmed.status, confirmed.body["status"].as_str()),
        (StatusCode::OK, Some("USED")),
        "{}",
        confirmed.body
    );
    let uses = system.logged("coupon.used").await;
    assert_eq!(uses.len(), 1);
    assert_eq!(
        (
            uses[0]["orderId"].as_str(),
            uses[0]["discountGranted"].as_i64()
        ),
        (Some("chk-2"), Some(300))
    );
    system.stop().await;
}
