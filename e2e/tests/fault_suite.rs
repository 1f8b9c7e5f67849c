//! The fault-and-load suite (issue 12). Concurrent clients place orders, issue coupons and earn
//! and spend points against the real system — on a PostgreSQL, a Redis, a broker and an etcd of
//! the suite's own, with three command-api instances as one cluster behind the nginx gateway
//! (ADR 15) — while it kills and restarts the processes (a command-api instance with the
//! relay's leader, the projector) and the servers (PostgreSQL crashed, Redis, the broker), then
//! sends a catalogue
//! of hostile requests to every endpoint. Clients retry with the same `Idempotency-Key` until
//! they get a definitive answer. Then it checks, against the event log: every success is there
//! exactly once and no refusal left an event; nothing oversold or over-issued, no balance below
//! zero; the read models equal a fresh projection (`replay-tools verify`); an outside consumer
//! reading Kafka from offset 0 sees every event; every hostile request got a 4xx problem+json
//! and none left an event.
//!
//! Short form by default (CI, ~1 min). The long form: `FAULT_SUITE_SECONDS=600` (faults
//! repeat every `FAULT_SUITE_EVERY` seconds, 40 by default), with the memory and file
//! descriptors of every process sampled and printed.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use e2e::cluster::{member_env, wait_for_members, Gateway, Instance, PrivateEtcd};
use e2e::servers::{PrivateBroker, PrivatePostgres, PrivateRedis};
use e2e::{System, COMMAND_API, PROJECTOR, QUERY_API};
use rand::Rng;
use serde_json::{json, Value};

const STOCK: i64 = 8_000;
const COUPONS: i64 = 4_000;
const USERS: i64 = 40;
const CLIENTS: usize = 24;
/// Sockets held silent on each API during the calm phase.
const SILENT_SOCKETS: usize = 300;

fn seconds(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Order,
    Issue,
    Earn,
    Use,
    /// A checkout hold of one unit (then confirmed, released, or left to expire).
    Hold,
    Confirm,
    Release,
}

/// A command's definitive answer, after however many tries.
#[derive(Debug, Clone)]
struct Outcome {
    kind: Kind,
    status: u16,
    body: Value,
    tries: u32,
}

/// What the valid clients saw.
#[derive(Default)]
struct Load {
    outcomes: Mutex<Vec<Outcome>>,
    /// Requests sent, tries included.
    sent: AtomicU64,
    /// Answers that were not definitive (5xx, no connection) and were retried.
    retried: AtomicU64,
    /// Commands given up on: no definitive answer within the deadline.
    undetermined: AtomicU64,
    /// 5xx answers while no fault was being injected (the hostile phase).
    errors_when_calm: AtomicU64,
}

/// One valid client: commands until `stop`, each retried with its key until definitive.
async fn client(
    base: Arc<RwLock<String>>,
    sale: String,
    policy: String,
    load: Arc<Load>,
    calm: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    // The shop's checkout, acting for its users (services are not rate limited).
    let mut service = reqwest::header::HeaderMap::new();
    service.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", e2e::token(auth::Role::Service, "checkout"))
            .parse()
            .unwrap(),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .default_headers(service)
        .build()
        .unwrap();
    while !stop.load(Ordering::Relaxed) {
        let (kind, path, body) = {
            let mut rng = rand::rng();
            let user = rng.random_range(1..=USERS);
            match rng.random_range(0..12) {
                0..=3 => (
                    Kind::Order,
                    "/api/v1/orders".to_owned(),
                    json!({ "timeSaleId": sale, "userId": rng.random_range(1..=1_000_000), "quantity": 1 }),
                ),
                4..=5 => (
                    Kind::Issue,
                    "/api/v1/coupons/issue".to_owned(),
                    json!({ "policyId": policy, "userId": rng.random_range(1..=3_000) }),
                ),
                // Half the points granted expire within seconds (the system expires them).
                6..=7 => (
                    Kind::Earn,
                    "/api/v1/points/earn".to_owned(),
                    json!({ "userId": user, "amount": rng.random_range(1..=100), "description": "load",
                            "expiresAt": rng.random_bool(0.5).then(|| chrono::Utc::now()
                                + chrono::Duration::seconds(rng.random_range(2..=20))) }),
                ),
                8..=9 => (
                    Kind::Use,
                    "/api/v1/points/use".to_owned(),
                    json!({ "userId": user, "amount": rng.random_range(1..=150), "description": "load" }),
                ),
                _ => (
                    Kind::Hold,
                    "/api/v1/reservations".to_owned(),
                    json!({ "timeSaleId": sale, "orderId": uuid::Uuid::new_v4().to_string(),
                            "userId": rng.random_range(1..=1_000_000), "quantity": 1, "ttlSeconds": 5 }),
                ),
            }
        };
        let Some(outcome) = definitive(&http, &base, kind, &path, &body, &load, &calm).await else {
            continue;
        };
        let hold = (kind == Kind::Hold && outcome.status == 201)
            .then(|| outcome.body["reservationId"].as_str().map(str::to_owned))
            .flatten();
        load.outcomes.lock().unwrap().push(outcome);
        // A hold: confirmed (half), released (three in ten), or left to expire.
        if let Some(hold) = hold {
            let end = match rand::rng().random_range(0..10) {
                0..=4 => Some((Kind::Confirm, "confirm")),
                5..=7 => Some((Kind::Release, "release")),
                _ => None,
            };
            if let Some((kind, end)) = end {
                let path = format!("/api/v1/reservations/{hold}/{end}");
                if let Some(outcome) =
                    definitive(&http, &base, kind, &path, &json!({}), &load, &calm).await
                {
                    load.outcomes.lock().unwrap().push(outcome);
                }
            }
        }
    }
}

/// Sends a command with a key of its own until a definitive answer (below 500), for at most
/// two minutes; `None` (counted as undetermined) if none came.
async fn definitive(
    http: &reqwest::Client,
    base: &RwLock<String>,
    kind: Kind,
    path: &str,
    body: &Value,
    load: &Load,
    calm: &AtomicBool,
) -> Option<Outcome> {
    let key = uuid::Uuid::new_v4().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tries = 0;
    loop {
        tries += 1;
        load.sent.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}{path}", base.read().unwrap());
        let sent = http
            .post(url)
            .header("idempotency-key", &key)
            .header("x-correlation-id", "load")
            .json(body)
            .send()
            .await;
        let answer = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                Some((status, body))
            }
            Err(_) => None,
        };
        match answer {
            Some((status, body)) if status < 500 => {
                return Some(Outcome {
                    kind,
                    status,
                    body,
                    tries,
                })
            }
            Some(_) if calm.load(Ordering::Relaxed) => {
                load.errors_when_calm.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        load.retried.fetch_add(1, Ordering::Relaxed);
        if Instant::now() > deadline {
            load.undetermined.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let pause = rand::rng().random_range(50..=300);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// A hostile request: method, path (on the command or the query API), body, headers.
struct Hostile {
    query: bool,
    method: reqwest::Method,
    path: String,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

fn hostile_catalogue(policy: &str, sale: &str, coupon: &str, order: &str) -> Vec<Hostile> {
    use reqwest::Method;
    let mut all = Vec::new();
    let command = |path: &str, body: &[u8]| Hostile {
        query: false,
        method: Method::POST,
        path: path.to_owned(),
        body: body.to_vec(),
        headers: vec![],
    };
    let huge_text = format!(r#""{}""#, "x".repeat(1_001));
    let texts: Vec<String> = vec![
        r#""a\u0000b""#.into(),
        r#""\u001b[2J""#.into(),
        huge_text,
        "12".into(),
        "null".into(),
        "[]".into(),
    ];
    let numbers = [
        "1.5",
        "-1",
        "0",
        "1e400",
        "99999999999999999999",
        "\"7\"",
        "null",
        "{}",
    ];
    let ids = [
        r#""not-a-uuid""#,
        r#""1' OR '1'='1""#,
        r#""../../etc/passwd""#,
        "42",
        "null",
    ];
    let times = [
        r#""-5000-01-01T00:00:00Z""#,
        r#""+262142-12-31T23:59:59Z""#,
        r#""9999-06-01T00:00:00Z""#,
        r#""1969-12-31T23:59:59Z""#,
        r#""yesterday""#,
        "1700000000",
    ];
    // Bodies that are not the JSON any command takes.
    for path in [
        "/api/v1/coupon-policies".to_owned(),
        "/api/v1/coupons/issue".into(),
        format!("/api/v1/coupons/{coupon}/use"),
        "/api/v1/points/earn".into(),
        "/api/v1/points/use".into(),
        "/api/v1/points/cancel".into(),
        "/api/v1/products".into(),
        "/api/v1/time-sales".into(),
        "/api/v1/orders".into(),
        "/api/v1/reservations".into(),
    ] {
        for body in [
            &b"{"[..],
            b"[1,2]",
            &[0xff, 0xfe, 0x7b, 0x7d],
            br#"{"unknown":1}"#,
            br#""just a string""#,
        ] {
            all.push(command(&path, body));
        }
        let mut big = b"{\"pad\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'x', 100 * 1024));
        big.extend(b"\"}");
        all.push(command(&path, &big));
        let mut loud = command(&path, b"{}");
        loud.headers.push(("x-correlation-id", "c".repeat(10_000)));
        all.push(loud);
        let mut keyed = command(&path, b"{}");
        keyed.headers.push(("idempotency-key", "k k".into()));
        all.push(keyed);
    }
    let now = chrono::Utc::now();
    let (start, end) = (
        format!("\"{}\"", (now - chrono::Duration::hours(1)).to_rfc3339()),
        format!("\"{}\"", (now + chrono::Duration::hours(1)).to_rfc3339()),
    );
    let policy_body = |title: &str, quantity: &str, s: &str, e: &str, value: &str| {
        format!(
            r#"{{"title":{title},"totalQuantity":{quantity},"startTime":{s},"endTime":{e},"discountType":"PERCENTAGE","discountValue":{value}}}"#
        )
    };
    for text in &texts {
        all.push(command(
            "/api/v1/coupon-policies",
            policy_body(text, "10", &start, &end, "10").as_bytes(),
        ));
        all.push(command(
            "/api/v1/products",
            format!(r#"{{"name":{text},"price":100}}"#).as_bytes(),
        ));
        all.push(command(
            "/api/v1/points/earn",
            format!(r#"{{"userId":1,"amount":5,"description":{text}}}"#).as_bytes(),
        ));
        all.push(command(
            &format!("/api/v1/coupons/{coupon}/use"),
            format!(r#"{{"orderId":{text},"orderAmount":100}}"#).as_bytes(),
        ));
        all.push(command(
            "/api/v1/reservations",
            format!(r#"{{"timeSaleId":"{sale}","orderId":{text},"userId":1,"quantity":1,"ttlSeconds":60}}"#).as_bytes(),
        ));
        all.push(command(
            &format!("/api/v1/coupons/{coupon}/reserve"),
            format!(r#"{{"orderId":{text},"orderAmount":100,"ttlSeconds":60}}"#).as_bytes(),
        ));
    }
    for n in numbers {
        all.push(command(
            "/api/v1/coupon-policies",
            policy_body("\"t\"", n, &start, &end, "10").as_bytes(),
        ));
        all.push(command(
            "/api/v1/coupon-policies",
            policy_body("\"t\"", "10", &start, &end, n).as_bytes(),
        ));
        all.push(command(
            "/api/v1/coupons/issue",
            format!(r#"{{"policyId":"{policy}","userId":{n}}}"#).as_bytes(),
        ));
        all.push(command(
            "/api/v1/points/earn",
            format!(r#"{{"userId":1,"amount":{n},"description":"d"}}"#).as_bytes(),
        ));
        all.push(command(
            "/api/v1/points/use",
            format!(r#"{{"userId":{n},"amount":1,"description":"d"}}"#).as_bytes(),
        ));
        all.push(command(
            "/api/v1/products",
            format!(r#"{{"name":"p","price":{n}}}"#).as_bytes(),
        ));
        all.push(command(
            "/api/v1/orders",
            format!(r#"{{"timeSaleId":"{sale}","userId":1,"quantity":{n}}}"#).as_bytes(),
        ));
        for field in ["userId", "quantity", "ttlSeconds"] {
            let mut hold = json!({ "timeSaleId": sale, "orderId": "h", "userId": 1, "quantity": 1, "ttlSeconds": 60 })
                .to_string();
            hold = hold.replace(
                &format!(
                    r#""{field}":{}"#,
                    if field == "ttlSeconds" { "60" } else { "1" }
                ),
                &format!(r#""{field}":{n}"#),
            );
            all.push(command("/api/v1/reservations", hold.as_bytes()));
        }
        // An order of 0 is a valid use of a coupon without a minimum: not hostile.
        if n != "0" {
            all.push(command(
                &format!("/api/v1/coupons/{coupon}/use"),
                format!(r#"{{"orderId":"o","orderAmount":{n}}}"#).as_bytes(),
            ));
        }
    }
    for t in times {
        all.push(command(
            "/api/v1/points/earn",
            format!(r#"{{"userId":1,"amount":5,"description":"d","expiresAt":{t}}}"#).as_bytes(),
        ));
        all.push(command(
            "/api/v1/coupon-policies",
            policy_body("\"t\"", "10", t, &end, "10").as_bytes(),
        ));
        all.push(command(
            "/api/v1/coupon-policies",
            policy_body("\"t\"", "10", &start, t, "10").as_bytes(),
        ));
    }
    for id in ids {
        all.push(command(
            "/api/v1/coupons/issue",
            format!(r#"{{"policyId":{id},"userId":1}}"#).as_bytes(),
        ));
        all.push(command(
            "/api/v1/orders",
            format!(r#"{{"timeSaleId":{id},"userId":1,"quantity":1}}"#).as_bytes(),
        ));
        all.push(command(
            "/api/v1/points/cancel",
            format!(r#"{{"userId":1,"transactionId":{id}}}"#).as_bytes(),
        ));
        all.push(command("/api/v1/time-sales", format!(r#"{{"productId":{id},"discountPrice":1,"quantity":1,"startAt":{start},"endAt":{end}}}"#).as_bytes()));
        all.push(command(
            "/api/v1/reservations",
            format!(
                r#"{{"timeSaleId":{id},"orderId":"h","userId":1,"quantity":1,"ttlSeconds":60}}"#
            )
            .as_bytes(),
        ));
    }
    // A hold's lifetime outside the API's bound (400) or this deployment's (422), or absent.
    for ttl in ["86401", "2", "99999999999"] {
        all.push(command(
            &format!("/api/v1/coupons/{coupon}/reserve"),
            format!(r#"{{"orderId":"h","orderAmount":100,"ttlSeconds":{ttl}}}"#).as_bytes(),
        ));
        all.push(command(
            "/api/v1/reservations",
            format!(r#"{{"timeSaleId":"{sale}","orderId":"h","userId":1,"quantity":1,"ttlSeconds":{ttl}}}"#).as_bytes(),
        ));
    }
    all.push(command(
        "/api/v1/reservations",
        format!(r#"{{"timeSaleId":"{sale}","orderId":"h","userId":1,"quantity":1}}"#).as_bytes(),
    ));
    for path in [
        "/api/v1/coupons/not-a-uuid/use",
        "/api/v1/coupons/..%2F..%2Fetc%2Fpasswd/cancel",
        "/api/v1/coupons/%FF%FE/revoke",
        "/api/v1/orders/1%20OR%201=1/cancel",
        "/api/v1/orders/00000000-0000-0000-0000-000000000000/cancel",
        "/api/v1/coupons/not-a-uuid/reserve",
        "/api/v1/coupons/%FF%FE/confirm",
        "/api/v1/coupons/00000000-0000-0000-0000-000000000000/release",
        "/api/v1/reservations/not-a-uuid/confirm",
        "/api/v1/reservations/%FF%FE/release",
        "/api/v1/reservations/00000000-0000-0000-0000-000000000000/confirm",
        "/api/v1/reservations/00000000-0000-0000-0000-000000000000/release",
    ] {
        all.push(command(path, b"{}"));
    }
    let query = |path: String, headers: Vec<(&'static str, String)>| Hostile {
        query: true,
        method: Method::GET,
        path,
        body: vec![],
        headers,
    };
    for path in [
        "/api/v1/coupon-policies/not-a-uuid".to_owned(),
        "/api/v1/coupons/not-a-uuid".into(),
        "/api/v1/coupons/%FF/quote?orderAmount=1".into(),
        "/api/v1/coupons/user/0".into(),
        "/api/v1/coupons/user/-1".into(),
        "/api/v1/coupons/user/abc".into(),
        "/api/v1/coupons/user/99999999999999999999".into(),
        "/api/v1/coupons/user/1?status=WHATEVER".into(),
        format!("/api/v1/coupons/{coupon}/quote"),
        format!("/api/v1/coupons/{coupon}/quote?orderAmount=-1"),
        format!("/api/v1/coupons/{coupon}/quote?orderAmount=1.5"),
        format!("/api/v1/coupons/{coupon}/quote?orderAmount=1e99"),
        format!("/api/v1/coupons/{coupon}/quote?orderAmount=1&userId=0"),
        format!("/api/v1/coupons/{coupon}/quote?orderAmount=1&admin=true"),
        "/api/v1/points/users/0/balance".into(),
        "/api/v1/points/users/1%27%20OR%20%271%27=%271/balance".into(),
        "/api/v1/points/users/1/history?page=9223372036854775807".into(),
        "/api/v1/points/users/1/history?page=0".into(),
        "/api/v1/points/users/1/history?page=1.5".into(),
        "/api/v1/points/users/1/history?limit=101".into(),
        "/api/v1/points/users/1/history?limit=0".into(),
        "/api/v1/points/users/1/history?page=1&page=2".into(),
        "/api/v1/products/../../etc/passwd".into(),
        "/api/v1/products/not-a-uuid".into(),
        "/api/v1/time-sales?page=-3".into(),
        "/api/v1/time-sales/not-a-uuid".into(),
        "/api/v1/orders/not-a-uuid".into(),
        "/api/v1/reservations/not-a-uuid".into(),
        format!("/api/v1/time-sales/{sale}/as-of"),
        format!("/api/v1/time-sales/{sale}/as-of?position=-1"),
        format!("/api/v1/time-sales/{sale}/as-of?position=1&at=2026-01-01T00:00:00Z"),
        format!("/api/v1/time-sales/{sale}/as-of?at=-5000-01-01T00:00:00Z"),
        format!("/api/v1/time-sales/{sale}/as-of?at=1700000000"),
        "/api/v1/time-sales/not-a-uuid/as-of?position=1".into(),
        "/api/v1/points/users/0/as-of?position=1".into(),
        "/api/v1/points/users/1/as-of?position=99999999999999999999".into(),
        format!("/api/v1/coupons/{coupon}/as-of?when=now"),
        "/api/v1/coupons/00000000-0000-0000-0000-000000000000/as-of?position=1".into(),
        "/api/v1/reservations/00000000-0000-0000-0000-000000000000".into(),
        "/api/v1/orders/user/-5".into(),
        "/api/v1/coupon-policies?limit=1000000".into(),
        // Only a user's coupons filter by status; elsewhere it is an unknown parameter.
        "/api/v1/time-sales?status=ACTIVE".into(),
        "/api/v1/coupon-policies?status=ACTIVE".into(),
    ] {
        all.push(query(path, vec![]));
    }
    // Malformed, or beyond the end of the log (no command answered it): 400 or 422 at once,
    // not a 2 s wait.
    for position in [
        "-1",
        "abc",
        "99999999999999999999",
        "1.5",
        "",
        "9223372036854775807",
    ] {
        all.push(query(
            format!("/api/v1/time-sales/{sale}"),
            vec![("x-min-position", position.to_owned())],
        ));
    }
    all.push(query(
        format!("/api/v1/orders/{order}"),
        vec![("x-min-position", "9".repeat(5_000))],
    ));
    // Credentials: missing, malformed, forged, oversized; on both APIs.
    let forged = {
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        format!("Bearer {header}.eyJzdWIiOiIxIiwicm9sZSI6ImFkbWluIn0.")
    };
    for authorization in [
        String::new(),
        "Bearer".into(),
        "Bearer ".into(),
        "Basic dXNlcjpwYXNz".into(),
        "Bearer not.a.jwt".into(),
        forged,
        format!("Bearer {}", "a".repeat(9_000)),
        format!("Bearer {}x", e2e::token(auth::Role::Admin, "e2e")),
    ] {
        let mut case = command(
            "/api/v1/points/earn",
            br#"{"userId":1,"amount":1,"description":"d"}"#,
        );
        case.headers.push(("authorization", authorization.clone()));
        all.push(case);
        all.push(query(
            "/api/v1/points/users/1/balance".into(),
            vec![("authorization", authorization)],
        ));
    }
    // Another user's data and an admin's command, as user 2.
    let user = format!("Bearer {}", e2e::token(auth::Role::User, "2"));
    let mut admins = command("/api/v1/products", br#"{"name":"P","price":1}"#);
    admins.headers.push(("authorization", user.clone()));
    all.push(admins);
    all.push(query(
        "/api/v1/points/users/1/balance".into(),
        vec![("authorization", user.clone())],
    ));
    all.push(query(
        format!("/api/v1/orders/{order}"),
        vec![("authorization", user.clone())],
    ));
    // A refund is a service's, even of the user's own transaction; a user id not written
    // canonically is no user.
    let mut refund = command(
        "/api/v1/points/cancel",
        br#"{"userId":2,"transactionId":"00000000-0000-0000-0000-000000000001"}"#,
    );
    refund.headers.push(("authorization", user));
    all.push(refund);
    let mut padded = command(
        "/api/v1/points/use",
        br#"{"userId":7,"amount":1,"description":"d"}"#,
    );
    padded.headers.push((
        "authorization",
        format!("Bearer {}", e2e::token(auth::Role::User, "007")),
    ));
    all.push(padded);
    for (path, body) in [
        (
            "/api/v1/auth/login",
            &br#"{"email":"x","password":"y"}"#[..],
        ),
        ("/api/v1/auth/login", b"{}"),
        (
            "/api/v1/auth/register",
            br#"{"email":"a@b.c","password":""}"#,
        ),
        (
            "/api/v1/auth/register",
            br#"{"email":"not an email","password":"long enough pass"}"#,
        ),
        // A look-alike address (a zero-width space).
        (
            "/api/v1/auth/register",
            "{\"email\":\"ana\u{200b}@example.com\",\"password\":\"long enough pass\"}".as_bytes(),
        ),
    ] {
        all.push(command(path, body));
    }
    // A JSON body under another content type (a form on another site posting cross-site as a
    // "simple" request): 415 naming Content-Type, on commands and on sign-up and sign-in.
    for (path, body, content_type) in [
        (
            "/api/v1/points/earn",
            &br#"{"userId":7,"amount":1,"description":"d"}"#[..],
            "text/plain",
        ),
        (
            "/api/v1/auth/register",
            br#"{"email":"form@example.com","password":"long enough pass"}"#,
            "application/x-www-form-urlencoded",
        ),
        (
            "/api/v1/auth/login",
            br#"{"email":"form@example.com","password":"long enough pass"}"#,
            "multipart/form-data; boundary=x",
        ),
        ("/api/v1/orders", b"{}", ""),
    ] {
        let mut case = command(path, body);
        case.headers.push(("content-type", content_type.to_owned()));
        all.push(case);
    }
    // A forged X-Forwarded-For from a peer that is no trusted proxy: ignored (the limits key
    // on the peer), whatever it holds — a sign-in with it is refused as any other.
    for forged in [
        "203.0.113.7".to_owned(),
        "not-an-address, 198.51.100.1".to_owned(),
        format!("{}1.2.3.4", "9.9.9.9, ".repeat(1_000)),
    ] {
        let mut case = command(
            "/api/v1/auth/login",
            br#"{"email":"nobody@example.com","password":"wrong password"}"#,
        );
        case.headers.push(("x-forwarded-for", forged));
        all.push(case);
    }
    // A password no account has (over 128 characters): refused before any hashing.
    let overlong = format!(r#"{{"email":"a@b.c","password":"{}"}}"#, "p".repeat(10_000));
    all.push(command("/api/v1/auth/login", overlong.as_bytes()));
    let delete = |query: bool, path: String| Hostile {
        query,
        method: Method::DELETE,
        path,
        body: vec![],
        headers: vec![],
    };
    all.push(delete(false, "/api/v1/orders".into()));
    all.push(delete(true, format!("/api/v1/time-sales/{sale}")));
    // The API documents: no such asset, no such method, a path walking out.
    for (query, path) in [
        (false, "/api/docs/command/nope.js"),
        (true, "/api/docs/query/..%2f..%2fCargo.toml"),
        (true, "/api/docs/query/openapi.json/x"),
    ] {
        all.push(Hostile {
            method: Method::GET,
            ..delete(query, path.into())
        });
    }
    all.push(Hostile {
        method: Method::POST,
        ..delete(false, "/api/docs/command/openapi.json".into())
    });
    // `/metrics` answers GET only, on both APIs.
    all.push(delete(false, "/metrics".into()));
    all.push(Hostile {
        method: Method::POST,
        ..delete(true, "/metrics".into())
    });
    all
}

/// Sends every hostile request (with a marker the log would carry if one got through);
/// returns how many answered other than a 4xx problem+json, with what.
async fn send_hostile(system: &System, command: &str, catalogue: &[Hostile]) -> Vec<String> {
    // An admin's token unless the case sends its own Authorization.
    let http = e2e::admin_client();
    let mut wrong = Vec::new();
    for (n, case) in catalogue.iter().enumerate() {
        let base = if case.query {
            system.query.as_str()
        } else {
            command
        };
        let mut request = http
            .request(case.method.clone(), format!("{base}{}", case.path))
            .body(case.body.clone());
        if !case.headers.iter().any(|(h, _)| *h == "content-type") {
            request = request.header("content-type", "application/json");
        }
        if !case.headers.iter().any(|(h, _)| *h == "x-correlation-id") {
            request = request.header("x-correlation-id", format!("hostile-{n}"));
        }
        for (header, value) in &case.headers {
            request = request.header(*header, value);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let headers: Vec<String> = case
                    .headers
                    .iter()
                    .map(|(h, v)| format!("{h}: {}", v.chars().take(60).collect::<String>()))
                    .collect();
                wrong.push(format!(
                    "{} {} {headers:?} → no answer: {e:?}",
                    case.method, case.path
                ));
                continue;
            }
        };
        let status = response.status();
        let problem = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v == "application/problem+json");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !(status.is_client_error() && problem && body["status"] == status.as_u16()) {
            let shown = String::from_utf8_lossy(&case.body);
            let shown: String = shown.chars().take(120).collect();
            wrong.push(format!(
                "{} {} {shown} → {status} {body}",
                case.method, case.path
            ));
        }
    }
    wrong
}

/// RSS (KiB) and open file descriptors of a process.
fn resources(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_load_and_faults_nothing_is_lost_duplicated_or_oversold_and_hostile_input_harms_no_one(
) {
    let total = seconds("FAULT_SUITE_SECONDS", 45);
    let every = seconds("FAULT_SUITE_EVERY", 40);
    let postgres = PrivatePostgres::start();
    let mut redis = PrivateRedis::start();
    let mut broker = PrivateBroker::start();
    let etcd = PrivateEtcd::start();
    let member = member_env(&etcd, "a");
    let member: Vec<(&str, &str)> = member
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut system = System::start_over(
        Some(postgres.url()),
        Some(redis.url()),
        Some(broker.brokers()),
        &member,
    )
    .await;
    // Members b and c beside the system's own (a), and the gateway the clients write through.
    let others = [
        Instance::start(&system, "b").await,
        Instance::start(&system, "c").await,
    ];
    wait_for_members(&[&system.command, &others[0].url, &others[1].url], 3).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let gateway = Gateway::start(
        &system.query,
        &[&system.command, &others[0].url, &others[1].url],
    );

    // The things the clients race for.
    let now = chrono::Utc::now();
    let product = system
        .post("/api/v1/products", json!({ "name": "P", "price": 10_000 }))
        .await;
    let sale = system
        .post("/api/v1/time-sales", json!({ "productId": product.body["productId"], "discountPrice": 5_000,
            "quantity": STOCK, "startAt": now - chrono::Duration::minutes(1), "endAt": now + chrono::Duration::hours(2) }))
        .await
        .body["timeSaleId"]
        .as_str()
        .unwrap()
        .to_owned();
    let policy = system
        .post("/api/v1/coupon-policies", json!({ "title": "Suite", "totalQuantity": COUPONS,
            "startTime": now - chrono::Duration::minutes(1), "endTime": now + chrono::Duration::hours(2),
            "discountType": "FIXED_AMOUNT", "discountValue": 100 }))
        .await
        .body["policyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let sample_coupon = system
        .post(
            "/api/v1/coupons/issue",
            json!({ "policyId": policy, "userId": 999_999 }),
        )
        .await
        .body["couponId"]
        .as_str()
        .unwrap()
        .to_owned();
    let sample_order = system
        .post(
            "/api/v1/orders",
            json!({ "timeSaleId": sale, "userId": 999_999, "quantity": 1 }),
        )
        .await
        .body["orderId"]
        .as_str()
        .unwrap()
        .to_owned();

    let base = Arc::new(RwLock::new(gateway.url.clone()));
    let load = Arc::new(Load::default());
    let (calm, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(client(
                base.clone(),
                sale.clone(),
                policy.clone(),
                load.clone(),
                calm.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let started = Instant::now();
    let mut faults: BTreeMap<&str, u32> = BTreeMap::new();
    let mut soak: Vec<(u64, [(u64, usize); 3])> = Vec::new();
    let sample = |system: &System| {
        [COMMAND_API, PROJECTOR, QUERY_API].map(|name| system.pid(name).map_or((0, 0), resources))
    };
    let pause = |s: u64| tokio::time::sleep(Duration::from_secs(s));
    let hostile_phase_from = total.saturating_sub(Duration::from_secs(10));
    let mut hostile_wrong = Vec::new();
    let mut hostile_sent = 0;
    while started.elapsed() < hostile_phase_from {
        let round = started.elapsed();
        pause(3).await;
        system.kill(COMMAND_API);
        *faults
            .entry("kill -9 one of three command-api instances (and the relay's leader)")
            .or_default() += 1;
        pause(1).await;
        // Back as member a on its port: the gateway reaches it again.
        system.relaunch_command_api().await;
        pause(4).await;
        system.kill(PROJECTOR);
        *faults.entry("kill -9 projector").or_default() += 1;
        pause(1).await;
        system.launch(PROJECTOR).await;
        pause(3).await;
        postgres.crash_and_restart();
        *faults
            .entry("PostgreSQL crashed and restarted")
            .or_default() += 1;
        pause(5).await;
        redis.restart();
        *faults
            .entry("Redis killed and restarted (empty)")
            .or_default() += 1;
        pause(2).await;
        let frozen = redis.freeze();
        *faults
            .entry("Redis frozen (SIGSTOP) 4 s, then resumed")
            .or_default() += 1;
        pause(4).await;
        frozen.thaw();
        pause(2).await;
        broker.kill();
        *faults
            .entry("broker kill -9, started again 5 s later")
            .or_default() += 1;
        pause(5).await;
        broker.restart();
        soak.push((started.elapsed().as_secs(), sample(&system)));
        // The rest of the round without faults (the long form's rounds are `every` long).
        while started.elapsed() < round + every && started.elapsed() < hostile_phase_from {
            pause(1).await;
        }
        if started.elapsed() + Duration::from_secs(30) > hostile_phase_from {
            break;
        }
    }
    // Calm: no faults; the hostile catalogue against every endpoint while the clients go on,
    // and sockets that connect to both APIs and send nothing, held meanwhile.
    pause(3).await;
    calm.store(true, Ordering::Relaxed);
    // Straight to an instance: the hostile catalogue and the silent sockets test the service's
    // own edge, not nginx's.
    let command = system.command.clone();
    let mut silent = e2e::sockets::silent(&command, SILENT_SOCKETS).await;
    silent.extend(e2e::sockets::silent(&system.query, SILENT_SOCKETS).await);
    let silent_held = silent.len();
    let catalogue = hostile_catalogue(&policy, &sale, &sample_coupon, &sample_order);
    while started.elapsed() < total || hostile_sent == 0 {
        hostile_wrong.extend(send_hostile(&system, &command, &catalogue).await);
        hostile_sent += catalogue.len();
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    soak.push((started.elapsed().as_secs(), sample(&system)));
    // Every silent socket closed by the server within its first-byte deadline (10 s).
    let silent_closed = e2e::sockets::closed_by_server(silent, Duration::from_secs(20)).await;

    // Every hold the clients left open expires (five seconds each, then its deadline), and
    // every point lot comes due (at most 20 s after its earn), before the log is read.
    let last_due: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT max((data->>'expiresAt')::timestamptz) FROM events WHERE event_type = 'point.earned'",
    )
    .fetch_one(&system.pool)
    .await
    .unwrap();
    if let Some(due) = last_due {
        let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait + Duration::from_secs(2)).await;
    }
    let holds_open_after = {
        let waited = Instant::now();
        loop {
            let open = system.open_holds().await;
            if open == 0 || waited.elapsed() > Duration::from_secs(60) {
                break open;
            }
            pause(1).await;
        }
    };

    // ---- the checks, against the event log ----
    let outcomes = load.outcomes.lock().unwrap().clone();
    let events: Vec<(String, Value)> =
        sqlx::query_as("SELECT event_type, data FROM events ORDER BY position")
            .fetch_all(&system.pool)
            .await
            .unwrap();
    let count_ids = |event_type: &str, field: &str| -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for (t, data) in &events {
            if t == event_type {
                *counts
                    .entry(data[field].as_str().unwrap_or_default().to_owned())
                    .or_default() += 1;
            }
        }
        counts
    };
    let successes = |kind: Kind| -> Vec<&Outcome> {
        outcomes
            .iter()
            .filter(|o| o.kind == kind && (200..300).contains(&o.status))
            .collect()
    };
    let orders = count_ids("order.created", "orderId");
    let coupons = count_ids("coupon.issued", "couponId");
    let points: HashMap<String, usize> = ["point.earned", "point.spent"]
        .iter()
        .flat_map(|t| count_ids(t, "transactionId"))
        .collect();
    let mut problems = Vec::new();
    for (kind, field, logged, extra) in [
        (Kind::Order, "orderId", &orders, 1),
        (Kind::Issue, "couponId", &coupons, 1),
    ] {
        let answered = successes(kind);
        for outcome in &answered {
            let id = outcome.body[field].as_str().unwrap_or_default();
            if logged.get(id) != Some(&1) {
                problems.push(format!(
                    "{kind:?} {id} answered {} is in the log {:?} times",
                    outcome.status,
                    logged.get(id)
                ));
            }
        }
        // The suite's own sample order or coupon, made before the clients started.
        if logged.len() != answered.len() + extra {
            problems.push(format!(
                "{kind:?}: {} answered as created, {} in the log",
                answered.len() + extra,
                logged.len()
            ));
        }
    }
    let point_answers: Vec<&Outcome> = successes(Kind::Earn)
        .into_iter()
        .chain(successes(Kind::Use))
        .collect();
    for outcome in &point_answers {
        let id = outcome.body["transactionId"].as_str().unwrap_or_default();
        if points.get(id) != Some(&1) {
            problems.push(format!(
                "points {id} is in the log {:?} times",
                points.get(id)
            ));
        }
    }
    if points.len() != point_answers.len() {
        problems.push(format!(
            "points: {} answered, {} in the log",
            point_answers.len(),
            points.len()
        ));
    }
    // Holds: each answered 201 is in the log once; each ended exactly once (confirmed,
    // released, or expired by the system); each confirmation or release answered 200 is
    // the one in the log.
    let holds = count_ids("timesale.reserved", "reservationId");
    let hold_ends: Vec<(&str, HashMap<String, usize>)> = [
        ("timesale.reservation_confirmed", Kind::Confirm),
        ("timesale.reservation_released", Kind::Release),
        ("timesale.reservation_expired", Kind::Hold),
    ]
    .iter()
    .map(|(t, _)| (*t, count_ids(t, "reservationId")))
    .collect();
    let answered_holds = successes(Kind::Hold);
    if holds.len() != answered_holds.len() {
        problems.push(format!(
            "holds: {} answered as created, {} in the log",
            answered_holds.len(),
            holds.len()
        ));
    }
    for (id, n) in &holds {
        let ends: usize = hold_ends.iter().map(|(_, m)| m.get(id).unwrap_or(&0)).sum();
        if *n != 1 || ends != 1 {
            problems.push(format!(
                "hold {id}: in the log {n} times, ended {ends} times"
            ));
        }
    }
    for (kind, t) in [
        (Kind::Confirm, "timesale.reservation_confirmed"),
        (Kind::Release, "timesale.reservation_released"),
    ] {
        let logged = &hold_ends.iter().find(|(name, _)| *name == t).unwrap().1;
        for outcome in successes(kind) {
            let id = outcome.body["reservationId"].as_str().unwrap_or_default();
            if logged.get(id) != Some(&1) {
                problems.push(format!(
                    "{kind:?} of {id} answered, {:?} in the log",
                    logged.get(id)
                ));
            }
        }
    }
    // Expiring points: each lot expired at most once, never before its due time.
    let due: HashMap<String, String> = events
        .iter()
        .filter(|(t, d)| t == "point.earned" && d["expiresAt"].is_string())
        .map(|(_, d)| {
            (
                d["transactionId"].as_str().unwrap_or_default().to_owned(),
                d["expiresAt"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mut lots_expired = 0;
    for (lot, n) in count_ids("point.expired", "lotId") {
        lots_expired += 1;
        if n != 1 {
            problems.push(format!("points of lot {lot} expired {n} times"));
        }
    }
    for (t, d) in &events {
        if t != "point.expired" {
            continue;
        }
        let lot = d["lotId"].as_str().unwrap_or_default();
        let early = due.get(lot).is_none_or(|due| {
            let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
            parse(due) > parse(d["occurredAt"].as_str().unwrap_or_default())
        });
        if early {
            problems.push(format!(
                "lot {lot} expired before its due time, or was never due"
            ));
        }
    }
    if holds_open_after > 0 {
        problems.push(format!("{holds_open_after} holds never ended"));
    }
    let confirmed = hold_ends[0].1.len() as i64;
    let sold = orders.len() as i64 + confirmed;
    let issued = coupons.len() as i64;
    if sold > STOCK || issued > COUPONS {
        problems.push(format!(
            "oversold or over-issued: {sold} of {STOCK}, {issued} of {COUPONS}"
        ));
    }
    let mut per_user: HashSet<i64> = HashSet::new();
    let mut issued_twice = 0;
    for (t, data) in &events {
        if t == "coupon.issued" && !per_user.insert(data["userId"].as_i64().unwrap_or(0)) {
            issued_twice += 1;
        }
    }
    if issued_twice > 0 {
        problems.push(format!("{issued_twice} coupons issued twice to a user"));
    }
    let mut balances: HashMap<i64, i64> = HashMap::new();
    for (t, data) in &events {
        let user = data["userId"].as_i64().unwrap_or(0);
        let amount = data["amount"].as_i64().unwrap_or(0);
        match t.as_str() {
            "point.earned" => *balances.entry(user).or_default() += amount,
            "point.spent" | "point.expired" => *balances.entry(user).or_default() -= amount,
            _ => continue,
        }
        if balances[&user] < 0 || data["balanceAfter"].as_i64() != Some(balances[&user]) {
            problems.push(format!(
                "user {user}: balance {} after {t}, event says {}",
                balances[&user], data["balanceAfter"]
            ));
        }
    }
    let hostile_in_log: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE metadata->>'correlationId' LIKE 'hostile%'",
    )
    .fetch_one(&system.pool)
    .await
    .unwrap();

    // The read side and Kafka caught up, and equal the log.
    let head = system.projected().await;
    // The sale as the query API shows it: nothing held, every unit sold or back in stock.
    let view = system
        .get(&format!("/api/v1/time-sales/{sale}"), Some(head))
        .await;
    let stock_seen = (
        view.body["remainingQuantity"].as_i64(),
        view.body["reservedQuantity"].as_i64(),
        view.body["soldQuantity"].as_i64(),
    );
    // The suite's own sample order is one of the orders.
    if stock_seen != (Some(STOCK - sold), Some(0), Some(sold)) {
        problems.push(format!(
            "the sale shows {stock_seen:?}, the log says {} left, 0 held, {sold} sold",
            STOCK - sold
        ));
    }
    let relayed = system.relayed().await;
    let (verify, verified) = system.replay_tools(&["verify"]);
    let published = system.published_event_ids(relayed as usize).await;
    let logged = system.logged_event_ids().await;
    let missing = logged.difference(&published).count();

    let by_status = outcomes.iter().fold(BTreeMap::new(), |mut m, o| {
        *m.entry((o.kind, o.status)).or_insert(0) += 1;
        m
    });
    let retried_commands = outcomes.iter().filter(|o| o.tries > 1).count();
    eprintln!(
        "fault suite, {} s: {} commands ({} requests with retries; {} commands needed more than one try), \
         {} undetermined; definitive answers {by_status:?}; faults {faults:?}; {} hostile requests ({} kinds) \
         sent, {} answered wrong; log head {head}, sold {sold} of {STOCK}, issued {issued} of {COUPONS}, {lots_expired} point lots expired; \
         5xx while calm: {}; {silent_closed} of {silent_held} silent sockets closed by the servers",
        started.elapsed().as_secs(),
        outcomes.len(),
        load.sent.load(Ordering::Relaxed),
        retried_commands,
        load.undetermined.load(Ordering::Relaxed),
        hostile_sent,
        catalogue.len(),
        hostile_wrong.len(),
        load.errors_when_calm.load(Ordering::Relaxed),
    );
    for (at, sample) in &soak {
        eprintln!(
            "  at {at:>4} s: RSS KiB / fds — command-api {:?}, projector {:?}, query-api {:?}",
            sample[0], sample[1], sample[2]
        );
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        hostile_wrong.is_empty(),
        "{} hostile requests answered wrong: {hostile_wrong:#?}",
        hostile_wrong.len()
    );
    assert_eq!(hostile_in_log, 0, "a hostile request left an event");
    assert_eq!(
        silent_closed, silent_held,
        "silent sockets the servers closed"
    );
    assert_eq!(
        load.undetermined.load(Ordering::Relaxed),
        0,
        "commands without a definitive answer"
    );
    assert_eq!(
        load.errors_when_calm.load(Ordering::Relaxed),
        0,
        "valid clients saw 5xx with no fault"
    );
    assert!(
        outcomes.len() > 500,
        "the load ran: {} commands",
        outcomes.len()
    );
    assert_eq!(verify, 0, "{verified}");
    assert_eq!(missing, 0, "{missing} events never reached Kafka");
    drop(gateway);
    drop(others);
    system.stop().await;
}
