//! Black-box harness: the real `command-api` binary on port 0 over a fresh database per test,
//! a JSON client, and the event log to check outcomes against.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use chrono::{Duration, Utc};
use eventlog::EventLog;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

/// The tests' HS256 secret (the binary gets it through `APP_AUTH__SECRET`).
pub const SECRET: &str = "command-api-tests-secret-0123456789abcdef";

/// Tokens signed with [`SECRET`].
pub fn minter() -> auth::Minter {
    auth::Minter::new(&auth::AuthSettings {
        secret: Some(SECRET.into()),
        ..auth::AuthSettings::default()
    })
    .unwrap()
}

/// A token for `sub` as `role`, valid for an hour.
pub fn token(role: auth::Role, sub: &str) -> String {
    minter()
        .mint(sub, role, std::time::Duration::from_secs(3_600))
        .unwrap()
}

/// A running `command-api` binary (killed when dropped) and the log it writes to. Its client
/// sends an admin token with every request unless told otherwise.
pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub log: EventLog,
    child: Child,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The URL of the fresh database `#[sqlx::test]` made, on the server of `DATABASE_URL`.
pub fn url_of(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").unwrap();
    let db = pool.connect_options().get_database().unwrap().to_owned();
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{db}")
}

/// Starts the real binary on port 0 over the test's fresh database, configured only through
/// `APP_` variables, and waits for the port it logs.
pub async fn spawn(pool: PgPool) -> TestApp {
    spawn_with(pool, &[]).await
}

/// As [`spawn`], with more settings (`APP_…` variables).
pub async fn spawn_with(pool: PgPool, settings: &[(&str, &str)]) -> TestApp {
    let mut child = Command::new(env!("CARGO_BIN_EXE_command-api"))
        .envs(settings.iter().copied())
        .env("APP_CONFIG", "/nonexistent")
        .env("APP_SERVER__PORT", "0")
        .env("APP_DATABASE__URL", url_of(&pool))
        .env("APP_LOG__FORMAT", "json")
        .env("RUST_LOG", "warn,command_api=info")
        .env("APP_AUTH__SECRET", SECRET)
        // Rate-limit counters of this test's own.
        .env(
            "APP_RATE_LIMIT__PREFIX",
            format!("test:{}:", uuid::Uuid::new_v4().simple()),
        )
        // No relay: these tests own no topics, and must never publish into the dev
        // deployment's (`./dev test` exports the stack's broker).
        .env_remove("APP_KAFKA__BROKERS")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let port = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("the binary logs its port before exiting")
                .unwrap();
            let log: Value = serde_json::from_str(&line).expect("structured JSON logs");
            if log["message"] == "command-api listening" {
                break log["port"].as_u64().unwrap();
            }
        };
        // Keep draining the pipe so the binary never blocks on a full stdout.
        std::thread::spawn(move || for _ in lines {});
        port
    })
    .await
    .unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", token(auth::Role::Admin, "tests"))
            .parse()
            .unwrap(),
    );
    let client = Client::builder()
        .pool_max_idle_per_host(64)
        .default_headers(headers)
        .build()
        .unwrap();
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        client,
        log: EventLog::from_pool(pool),
        child,
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub replayed: bool,
    pub content_type: String,
}

impl TestApp {
    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(path, body.to_string(), None).await
    }

    pub async fn post_keyed(&self, path: &str, body: Value, key: &str) -> Answer {
        self.send(path, body.to_string(), Some(key)).await
    }

    pub async fn send(&self, path: &str, raw: String, key: Option<&str>) -> Answer {
        self.send_as(None, path, raw, key).await
    }

    /// POSTs with `authorization` as the `Authorization` header (`Some("")`: none at all).
    pub async fn post_as(&self, authorization: &str, path: &str, body: Value) -> Answer {
        self.send_as(Some(authorization), path, body.to_string(), None)
            .await
    }

    async fn send_as(
        &self,
        authorization: Option<&str>,
        path: &str,
        raw: String,
        key: Option<&str>,
    ) -> Answer {
        let client = match authorization {
            Some("") => Client::new(),
            _ => self.client.clone(),
        };
        let mut request = client
            .post(format!("{}{}", self.base, path))
            .header("content-type", "application/json")
            .body(raw);
        if let Some(value) = authorization.filter(|a| !a.is_empty()) {
            request = request.header("authorization", value);
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let replayed = response.headers().contains_key("idempotent-replayed");
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            body,
            replayed,
            content_type,
        }
    }

    /// A policy open now, of `total` coupons, 10 % off orders of 1,000+, capped at 500.
    pub async fn policy(&self, total: i64) -> String {
        let now = Utc::now();
        let answer = self
            .post(
                "/api/v1/coupon-policies",
                json!({
                    "title": "Winter", "description": "10% off", "totalQuantity": total,
                    "startTime": now - Duration::hours(1), "endTime": now + Duration::hours(1),
                    "discountType": "PERCENTAGE", "discountValue": 10,
                    "minimumOrderAmount": 1000, "maximumDiscountAmount": 500,
                }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.body["policyId"].as_str().unwrap().to_owned()
    }

    pub async fn product(&self, price: i64) -> String {
        let answer = self
            .post(
                "/api/v1/products",
                json!({ "name": "Headphones", "price": price }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.body["productId"].as_str().unwrap().to_owned()
    }

    /// A sale running now of `stock` units at 7,000 (product at 10,000).
    pub async fn sale(&self, stock: i64, per_user_limit: Option<i64>) -> String {
        let product = self.product(10_000).await;
        let now = Utc::now();
        let answer = self
            .post(
                "/api/v1/time-sales",
                json!({
                    "productId": product, "discountPrice": 7000, "quantity": stock,
                    "startAt": now - Duration::minutes(5), "endAt": now + Duration::hours(1),
                    "perUserLimit": per_user_limit,
                }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.body["timeSaleId"].as_str().unwrap().to_owned()
    }

    /// Every event of the log, as (type, data).
    pub async fn events(&self) -> Vec<(String, Value)> {
        self.log
            .read_all(0, 1_000_000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.event_type, e.data))
            .collect()
    }
}
