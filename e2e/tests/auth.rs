//! Sign-in and limits across the whole system (ADR 11): the query API refuses a missing or
//! foreign token and another user's data; a token from the command API's login is good on the
//! query API; one user's rate limit is counted once across both APIs.
#![allow(clippy::unwrap_used)]

use auth::Role;
use e2e::{token, System};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn get(system: &System, authorization: Option<&str>, path: &str) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", system.query));
    if let Some(token) = authorization {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_query_api_answers_only_its_owner_a_service_or_an_admin() {
    let system = System::start().await;
    let service = token(Role::Service, "checkout");
    let (seven, eight) = (token(Role::User, "7"), token(Role::User, "8"));
    let now = chrono::Utc::now();
    let policy = system
        .post(
            "/api/v1/coupon-policies",
            json!({ "title": "T", "totalQuantity": 10, "startTime": now - chrono::Duration::hours(1),
                    "endTime": now + chrono::Duration::hours(1), "discountType": "FIXED_AMOUNT",
                    "discountValue": 100 }),
        )
        .await
        .body["policyId"]
        .as_str()
        .unwrap()
        .to_owned();
    system
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 7, "amount": 10, "description": "d" }),
        )
        .await;
    let issued = system
        .post(
            "/api/v1/coupons/issue",
            json!({ "policyId": policy, "userId": 7 }),
        )
        .await;
    let coupon = issued.body["couponId"].as_str().unwrap().to_owned();
    let position = issued.body["position"].as_i64().unwrap();
    // Wait until the projections hold the coupon.
    let waited = system
        .get(&format!("/api/v1/coupons/{coupon}"), Some(position))
        .await;
    assert_eq!(waited.status, StatusCode::OK, "{}", waited.body);

    let own = [
        "/api/v1/points/users/7/balance".to_owned(),
        "/api/v1/points/users/7/history".into(),
        "/api/v1/coupons/user/7".into(),
        "/api/v1/orders/user/7".into(),
        format!("/api/v1/coupons/{coupon}"),
    ];
    for path in &own {
        let (status, body) = get(&system, None, path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert_eq!(body["code"], "UNAUTHENTICATED", "{path}");
        let (status, _) = get(&system, Some("not.a.token"), path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let (status, body) = get(&system, Some(&seven), path).await;
        assert_eq!(status, StatusCode::OK, "the owner reads {path}: {body}");
        let (status, body) = get(&system, Some(&service), path).await;
        assert_eq!(status, StatusCode::OK, "a service reads {path}: {body}");
        let (status, body) = get(&system, Some(&eight), path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("FORBIDDEN")),
            "another user reads {path}: {body}"
        );
    }
    // The catalogue is every signed-in caller's.
    let (status, _) = get(
        &system,
        Some(&eight),
        &format!("/api/v1/coupon-policies/{policy}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // A user quotes as itself: another's coupon is not applicable to it (SPEC's NOT_OWNER),
    // and naming another user is refused.
    let quote = format!("/api/v1/coupons/{coupon}/quote?orderAmount=5000");
    let (status, _) = get(&system, None, &quote).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = get(&system, Some(&seven), &quote).await;
    assert_eq!(
        (status, body["applicable"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{body}"
    );
    let (status, body) = get(&system, Some(&eight), &quote).await;
    assert_eq!(
        (
            status,
            body["applicable"].as_bool(),
            body["reason"].as_str()
        ),
        (StatusCode::OK, Some(false), Some("NOT_OWNER")),
        "{body}"
    );
    let (status, _) = get(
        &system,
        Some(&seven),
        &format!("/api/v1/coupons/{coupon}/quote?orderAmount=5000&userId=8"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    system.stop().await;
}

#[tokio::test]
async fn a_login_on_the_command_api_is_good_on_the_query_api_and_one_limit_spans_both() {
    let system = System::start().await;
    let anonymous = reqwest::Client::new();
    let credentials = json!({ "email": "ana@example.com", "password": "correct horse battery" });
    let registered: Value = anonymous
        .post(format!("{}/api/v1/auth/register", system.command))
        .json(&credentials)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = registered["userId"].as_i64().unwrap();
    let login: Value = anonymous
        .post(format!("{}/api/v1/auth/login", system.command))
        .json(&credentials)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    let balance = format!("/api/v1/points/users/{user}/balance");

    // The default limit: 100 requests a minute per user, counted in Redis by both APIs, in
    // windows aligned to the minute: start early in one so that all of this falls in it.
    let into_window = auth::now() % 60;
    if into_window > 45 {
        tokio::time::sleep(std::time::Duration::from_secs(61 - into_window)).await;
    }
    let mut sent = 0;
    let mut last = StatusCode::OK;
    while sent < 100 {
        last = if sent % 2 == 0 {
            get(&system, Some(&token), &balance).await.0
        } else {
            anonymous
                .get(format!("{}/api/v1/auth/me", system.command))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status()
        };
        assert_eq!(last, StatusCode::OK, "request {sent}");
        sent += 1;
    }
    assert_eq!(last, StatusCode::OK);
    for (api, response) in [
        (
            "query",
            anonymous
                .get(format!("{}{balance}", system.query))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        ),
        (
            "command",
            anonymous
                .post(format!("{}/api/v1/points/use", system.command))
                .bearer_auth(&token)
                .json(&json!({ "userId": user, "amount": 1, "description": "d" }))
                .send()
                .await
                .unwrap(),
        ),
    ] {
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{api}");
        let retry: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{api}: {retry}");
        assert_eq!(response.headers()["ratelimit-remaining"], "0");
    }
    // A service is not held back by the user's limit.
    let (status, _) = get(
        &system,
        Some(&e2e::token(Role::Service, "checkout")),
        &balance,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    system.stop().await;
}
