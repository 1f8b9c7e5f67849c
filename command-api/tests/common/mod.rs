//! Test harness: the real command API on port 0 over a fresh database, and a JSON client.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use chrono::{Duration, Utc};
use command_api::settings::{
    DatabaseSettings, LogSettings, ServerSettings, Settings, WriterSettings,
};
use command_api::Application;
use eventlog::EventLog;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub log: EventLog,
}

pub async fn spawn(pool: PgPool) -> TestApp {
    let settings = Settings {
        server: ServerSettings {
            host: "127.0.0.1".into(),
            port: 0,
        },
        database: DatabaseSettings {
            url: "unused: the pool is given".to_owned().into(),
            max_connections: 8,
        },
        writer: WriterSettings::default(),
        log: LogSettings::default(),
    };
    let log = EventLog::from_pool(pool);
    let app = Application::build_with_log(settings, log.clone())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until(std::future::pending()));
    let client = Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    TestApp { base, client, log }
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
        let mut request = self
            .client
            .post(format!("{}{}", self.base, path))
            .header("content-type", "application/json")
            .body(raw);
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
