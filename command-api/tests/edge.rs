//! Hostile input at the command API's edge: every rejection is a 4xx problem+json naming the
//! field (or header, or path parameter) at fault, and writes nothing to the log. Issue 12's
//! table, and what a bot tries next.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{Duration, Utc};
use common::{spawn, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

/// Sends `method path` with a raw body and extra headers; (status, content type, body).
async fn raw(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> (StatusCode, String, Value) {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, content_type, body)
}

/// Asserts a problem+json answer of `status` naming `field`.
fn assert_problem(answer: &(StatusCode, String, Value), status: StatusCode, field: Option<&str>) {
    let (got, content_type, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(content_type, "application/problem+json", "{body}");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["type"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    assert_eq!(body["field"].as_str(), field, "{body}");
}

fn policy(start: &str, end: &str) -> Vec<u8> {
    json!({ "title": "T", "totalQuantity": 10, "startTime": start, "endTime": end,
            "discountType": "FIXED_AMOUNT", "discountValue": 100 })
    .to_string()
    .into_bytes()
}

#[sqlx::test(migrations = false)]
async fn the_issue_table_answers_400_problem_json_naming_the_field_and_appends_nothing(
    pool: PgPool,
) {
    let app = spawn(pool).await;
    let post = reqwest::Method::POST;
    let now = Utc::now();
    let (start, end) = (
        (now - Duration::hours(1)).to_rfc3339(),
        (now + Duration::hours(1)).to_rfc3339(),
    );

    let answer = raw(
        &app,
        post.clone(),
        "/api/v1/coupons/not-a-uuid/use",
        b"{}".to_vec(),
        &[],
    )
    .await;
    assert_problem(&answer, StatusCode::BAD_REQUEST, Some("id"));
    let answer = raw(
        &app,
        post.clone(),
        "/api/v1/orders/%FF%FE/cancel",
        b"{}".to_vec(),
        &[],
    )
    .await;
    assert_problem(&answer, StatusCode::BAD_REQUEST, Some("id"));

    let nul = br#"{"userId":1,"amount":10,"description":"a\u0000b"}"#.to_vec();
    let answer = raw(&app, post.clone(), "/api/v1/points/earn", nul, &[]).await;
    assert_problem(&answer, StatusCode::BAD_REQUEST, Some("description"));

    // A time chrono reads but this system does not keep: a rule no schema of one field can
    // state, so 422 UNACCEPTABLE_VALUE naming it.
    let answer = raw(
        &app,
        post.clone(),
        "/api/v1/coupon-policies",
        policy(&start, "+262142-12-31T23:59:59Z"),
        &[],
    )
    .await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY, Some("endTime"));
    let answer = raw(
        &app,
        post.clone(),
        "/api/v1/coupon-policies",
        policy("-5000-01-01T00:00:00Z", &end),
        &[],
    )
    .await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY, Some("startTime"));
    let answer = raw(
        &app,
        post.clone(),
        "/api/v1/coupon-policies",
        policy(&start, "9999-06-01T00:00:00Z"),
        &[],
    )
    .await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY, Some("endTime"));
    // A leap second: chrono reads it, the schemas' date-time does not (but at 23:59).
    let answer = raw(
        &app,
        post.clone(),
        "/api/v1/coupon-policies",
        policy(&start, "2030-06-30T12:00:60Z"),
        &[],
    )
    .await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY, Some("endTime"));
    // A title of U+FEFF alone: not blank to Rust's trim, blank to the schemas' \S.
    let bom = json!({ "title": "\u{feff}", "totalQuantity": 10, "startTime": start,
            "endTime": end, "discountType": "FIXED_AMOUNT", "discountValue": 100 });
    let answer = raw(
        &app,
        post.clone(),
        "/api/v1/coupon-policies",
        bom.to_string().into_bytes(),
        &[],
    )
    .await;
    assert_problem(&answer, StatusCode::BAD_REQUEST, Some("title"));

    let earn = json!({ "userId": 1, "amount": 10, "description": "d" })
        .to_string()
        .into_bytes();
    let long = "c".repeat(60_000);
    let answer = raw(
        &app,
        post.clone(),
        "/api/v1/points/earn",
        earn.clone(),
        &[("x-correlation-id", long)],
    )
    .await;
    assert_problem(&answer, StatusCode::BAD_REQUEST, Some("X-Correlation-Id"));
    let answer = raw(
        &app,
        post.clone(),
        "/api/v1/points/earn",
        earn.clone(),
        &[("idempotency-key", "k".repeat(256))],
    )
    .await;
    assert_problem(&answer, StatusCode::BAD_REQUEST, Some("Idempotency-Key"));

    assert!(app.events().await.is_empty(), "nothing was appended");
}

#[sqlx::test(migrations = false)]
async fn malformed_bodies_numbers_and_methods_get_problem_json(pool: PgPool) {
    let app = spawn(pool).await;
    let post = reqwest::Method::POST;
    let earn = "/api/v1/points/earn";
    let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
        (b"{\"userId\":1,\"amount\":".to_vec(), None),
        (vec![0xff, 0xfe, b'{', b'}'], None),
        (
            br#"{"userId":1.5,"amount":10,"description":"d"}"#.to_vec(),
            Some("userId"),
        ),
        (
            br#"{"userId":1,"amount":1e400,"description":"d"}"#.to_vec(),
            None,
        ),
        (
            br#"{"userId":1,"amount":99999999999999999999,"description":"d"}"#.to_vec(),
            None,
        ),
        (
            br#"{"userId":"1","amount":10,"description":"d"}"#.to_vec(),
            Some("userId"),
        ),
        (
            br#"{"userId":1,"amount":10,"description":"d","admin":true}"#.to_vec(),
            None,
        ),
        (
            br#"{"userId":-1,"amount":10,"description":"d"}"#.to_vec(),
            Some("userId"),
        ),
        (
            br#"{"userId":1,"amount":0,"description":"d"}"#.to_vec(),
            Some("amount"),
        ),
        (
            br#"{"userId":1,"amount":10,"description":"'; DROP TABLE events; --"}"#.to_vec(),
            None,
        ),
        (br#"[1,2,3]"#.to_vec(), None),
        (
            br#"{"userId":1,"amount":10,"description":"\u001b[2J"}"#.to_vec(),
            Some("description"),
        ),
    ];
    for (body, field) in cases {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let answer = raw(&app, post.clone(), earn, body, &[]).await;
        if shown.contains("DROP TABLE") {
            // Plain text to the domain: stored as text, harmless.
            assert_eq!(answer.0, StatusCode::CREATED, "{shown}: {}", answer.2);
            continue;
        }
        assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{shown}: {}", answer.2);
        assert_eq!(answer.1, "application/problem+json", "{shown}");
        if let Some(field) = field {
            assert_eq!(answer.2["field"], field, "{shown}: {}", answer.2);
        }
    }
    let huge = vec![b' '; 70 * 1024];
    let answer = raw(&app, post.clone(), earn, huge, &[]).await;
    assert_problem(&answer, StatusCode::PAYLOAD_TOO_LARGE, None);
    let answer = raw(&app, reqwest::Method::GET, earn, vec![], &[]).await;
    assert_problem(&answer, StatusCode::METHOD_NOT_ALLOWED, None);
    let answer = raw(&app, post.clone(), "/api/v1/../../etc/passwd", vec![], &[]).await;
    assert_eq!(answer.0, StatusCode::NOT_FOUND);
    assert_eq!(answer.1, "application/problem+json");
    assert_eq!(
        app.events().await.len(),
        1,
        "only the harmless text was appended"
    );
}

#[sqlx::test(migrations = false)]
async fn a_command_naming_an_aggregate_that_does_not_exist_is_404(pool: PgPool) {
    let app = spawn(pool).await;
    let nobody = uuid::Uuid::new_v4();
    let issue = app
        .post(
            "/api/v1/coupons/issue",
            json!({ "policyId": nobody, "userId": 1 }),
        )
        .await;
    assert_eq!(
        (issue.status, issue.body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("POLICY_NOT_FOUND"))
    );
    let order = app
        .post(
            "/api/v1/orders",
            json!({ "timeSaleId": nobody, "userId": 1, "quantity": 1 }),
        )
        .await;
    assert_eq!(order.status, StatusCode::NOT_FOUND, "{}", order.body);
    let now = Utc::now();
    let sale = app
        .post(
            "/api/v1/time-sales",
            json!({ "productId": nobody, "discountPrice": 1, "quantity": 1,
            "startAt": now, "endAt": now + Duration::hours(1) }),
        )
        .await;
    assert_eq!(sale.status, StatusCode::NOT_FOUND, "{}", sale.body);
    // A policy's id is not a sale's: categories are checked too.
    let policy = app.policy(5).await;
    let order = app
        .post(
            "/api/v1/orders",
            json!({ "timeSaleId": policy, "userId": 1, "quantity": 1 }),
        )
        .await;
    assert_eq!(order.status, StatusCode::NOT_FOUND, "{}", order.body);
}

/// What the OpenAPI document calls valid and JSON writes more than one way: an integer
/// written as a decimal (`10.0`, `1e1`) is that integer — JSON Schema calls it one — and the
/// same request as with `10` (one idempotency key, no conflict); a `null` body is no body.
/// A fractional number stays refused, however close to an integer (never rounded through a
/// double).
#[sqlx::test(migrations = false)]
async fn integers_written_as_decimals_and_null_bodies_are_what_the_document_says(pool: PgPool) {
    let app = spawn(pool).await;
    let post = reqwest::Method::POST;
    let earn = "/api/v1/points/earn";
    let key = |k: &str| [("idempotency-key", k.to_owned())];
    let whole = br#"{"userId":1,"amount":10.0,"description":"d"}"#.to_vec();
    let (status, _, body) = raw(&app, post.clone(), earn, whole, &key("decimal")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["amount"], 10, "{body}");
    let exponent = br#"{"userId":1,"amount":1e1,"description":"d"}"#.to_vec();
    let (status, _, again) = raw(&app, post.clone(), earn, exponent, &key("decimal")).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the same request again: {again}"
    );
    assert_eq!(again["transactionId"], body["transactionId"], "{again}");
    for (amount, field) in [("10.5", "amount"), ("1.0000000000000001", "amount")] {
        let text = format!(r#"{{"userId":1,"amount":{amount},"description":"d"}}"#);
        let answer = raw(&app, post.clone(), earn, text.into_bytes(), &[]).await;
        assert_problem(&answer, StatusCode::BAD_REQUEST, Some(field));
    }

    let policy = app.policy(5).await;
    let issued = app
        .post(
            "/api/v1/coupons/issue",
            json!({ "policyId": policy, "userId": 1 }),
        )
        .await;
    let coupon = issued.body["couponId"].as_str().unwrap().to_owned();
    let revoke = format!("/api/v1/coupons/{coupon}/revoke");
    let (status, _, body) = raw(&app, post.clone(), &revoke, b"null".to_vec(), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "CANCELED", "revoked: {body}");
    let answer = raw(&app, post, "/api/v1/points/earn", b"null".to_vec(), &[]).await;
    assert_eq!(
        answer.0,
        StatusCode::BAD_REQUEST,
        "a body with fields is required: {}",
        answer.2
    );
}

/// A body must be JSON by its media type: a form on another site can post `text/plain` or a
/// form's type without a preflight, and sign-up and sign-in take no token. 415 problem+json
/// naming `Content-Type`, nothing written; `application/json` with a charset, in any case, is
/// JSON; a command without a body needs no media type.
#[sqlx::test(migrations = false)]
async fn a_body_that_is_not_sent_as_json_is_415(pool: PgPool) {
    let app = spawn(pool).await;
    let body = br#"{"email":"form@example.com","password":"correct horse battery"}"#;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "",
    ] {
        let mut request = app
            .client
            .post(format!("{}/api/v1/auth/register", app.base))
            .body(body.to_vec());
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}: {answer}"
        );
        assert_eq!(answer["field"], "Content-Type", "{answer}");
    }
    let earned = app
        .client
        .post(format!("{}/api/v1/points/earn", app.base))
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(br#"{"userId":1,"amount":10,"description":"d"}"#.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(earned.status(), StatusCode::CREATED);

    let policy = app.policy(5).await;
    let issued = app
        .post(
            "/api/v1/coupons/issue",
            json!({ "policyId": policy, "userId": 1 }),
        )
        .await;
    let coupon = issued.body["couponId"].as_str().unwrap().to_owned();
    let revoked = app
        .client
        .post(format!("{}/api/v1/coupons/{coupon}/revoke", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        revoked.status(),
        StatusCode::OK,
        "no body, no media type needed"
    );
}
