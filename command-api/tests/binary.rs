//! Black box: the real `command-api` binary, configured only by `APP_` environment variables,
//! on port 0 against a fresh database; it serves a command and stops cleanly on SIGTERM.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use sqlx::PgPool;

mod common;
use common::url_of;

#[sqlx::test(migrations = false)]
async fn the_binary_starts_on_port_0_serves_commands_and_stops_on_sigterm(pool: PgPool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_command-api"))
        .env("APP_CONFIG", "/nonexistent")
        .env("APP_SERVER__PORT", "0")
        .env("APP_DATABASE__URL", url_of(&pool))
        .env("APP_LOG__FORMAT", "json")
        .env("APP_AUTH__SECRET", common::SECRET)
        .env("RUST_LOG", "info,problem=debug")
        // No relay: these tests own no topics, and must never publish into the dev
        // deployment's (`./dev test` exports the stack's broker).
        .env_remove("APP_KAFKA__BROKERS")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("the binary logs before exiting")
            .unwrap();
        let log: Value = serde_json::from_str(&line).expect("structured JSON logs");
        if log["message"] == "command-api listening" {
            break log["port"].as_u64().unwrap();
        }
    };

    let client = reqwest::Client::new();
    let answer = client
        .post(format!("http://127.0.0.1:{port}/api/v1/points/earn"))
        .bearer_auth(common::token(auth::Role::Service, "checkout"))
        .header("x-correlation-id", "checkout-42")
        // A client's request id is not the server's: replaced.
        .header("x-request-id", "forged")
        .json(&json!({ "userId": 1, "amount": 10, "description": "black box" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::CREATED);
    let request_id = answer.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(request_id, "forged");
    let body: Value = answer.json().await.unwrap();
    // The request's id is its events' causation id, and its log lines carry both ids.
    let causation: String =
        sqlx::query_scalar("SELECT metadata->>'causationId' FROM events WHERE position = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(causation, request_id);
    let answered = lines
        .by_ref()
        .map(|line| serde_json::from_str::<Value>(&line.unwrap()).unwrap())
        .find(|log| log["message"] == "answered")
        .expect("the request's log line");
    assert_eq!(
        answered["span"]["request_id"],
        request_id.as_str(),
        "{answered}"
    );
    assert_eq!(
        answered["span"]["correlation_id"], "checkout-42",
        "{answered}"
    );
    assert_eq!(
        (body["balance"].as_i64(), body["position"].as_i64()),
        (Some(10), Some(1))
    );

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}
