//! Both APIs' OpenAPI documents (ADR 12), as the running binaries serve them: valid OpenAPI
//! 3.1 (`openapi-spec-validator`), and true of the APIs — `schemathesis` sends generated
//! requests with valid tokens and finds no 5xx, no undocumented status, header or content
//! type, and no answer that breaks its documented schema. Swagger UI is served from the binary.
//!
//! Needs the two Python tools on PATH: `./dev test` and `.ci/run` install them with pip.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use e2e::System;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Every check, in every phase but the stateful one.
const CHECKS: &str = "all";
const PHASES: &str = "examples,coverage,fuzzing";

fn tool(name: &str) -> Command {
    let probe = Command::new(name).arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "{name} is not installed: `pip install openapi-spec-validator schemathesis` \
         (./dev test does it when missing)"
    );
    Command::new(name)
}

/// Data for the generated requests to find: a campaign with a coupon of user 7, a sale with
/// an order of user 7, points of user 7.
async fn seed(system: &System) {
    let now = chrono::Utc::now();
    let policy = system
        .post("/api/v1/coupon-policies", json!({ "title": "T", "totalQuantity": 5,
            "startTime": now - chrono::Duration::minutes(1), "endTime": now + chrono::Duration::days(1),
            "discountType": "PERCENTAGE", "discountValue": 10 }))
        .await;
    assert_eq!(policy.status, StatusCode::CREATED, "{}", policy.body);
    let issued = system
        .post(
            "/api/v1/coupons/issue",
            json!({ "policyId": policy.body["policyId"], "userId": 7 }),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.body);
    let sale = system.open_sale(10).await;
    let order = system
        .post(
            "/api/v1/orders",
            json!({ "timeSaleId": sale, "userId": 7, "quantity": 1 }),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    system
        .post(
            "/api/v1/points/earn",
            json!({ "userId": 7, "amount": 100, "description": "seed" }),
        )
        .await;
    system.projected().await;
}

async fn document(base: &str, path: &str, dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let answer = reqwest::get(format!("{base}{path}")).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "{base}{path}");
    let document: Value = answer.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    file
}

fn check(what: &str, command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn both_documents_are_valid_and_the_running_apis_keep_to_them() {
    let validator = || tool("openapi-spec-validator");
    let schemathesis = || tool("schemathesis");
    let system = System::start().await;
    seed(&system).await;
    let dir = std::env::temp_dir().join(format!("openapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let command = document(
        &system.command,
        "/api/docs/command/openapi.json",
        &dir,
        "command",
    )
    .await;
    let query = document(&system.query, "/api/docs/query/openapi.json", &dir, "query").await;
    check(
        "openapi-spec-validator",
        validator().arg(&command).arg(&query),
    );

    // Swagger UI, from the binary, at /api/docs.
    for base in [&system.command, &system.query] {
        let ui = reqwest::get(format!("{base}/api/docs")).await.unwrap();
        assert_eq!(ui.status(), StatusCode::OK, "{base}/api/docs");
        assert!(ui.text().await.unwrap().contains("swagger-ui"));
    }

    let admin = format!(
        "Authorization: Bearer {}",
        e2e::token(auth::Role::Admin, "schemathesis")
    );
    let user = format!(
        "Authorization: Bearer {}",
        e2e::token(auth::Role::User, "7")
    );
    for (name, document, base, token) in [
        ("command API as an admin", &command, &system.command, &admin),
        ("query API as an admin", &query, &system.query, &admin),
        ("query API as user 7", &query, &system.query, &user),
    ] {
        check(
            &format!("schemathesis on the {name}"),
            schemathesis()
                .arg("--config-file")
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/schemathesis.toml"
                ))
                .arg("run")
                .arg(document)
                .args(["--url", base, "--header", token, "--checks", CHECKS])
                .args(["--phases", PHASES])
                .args(["--max-examples", "20", "--seed", "1", "--no-color"])
                .env("SCHEMATHESIS_HOOKS", "")
                .current_dir(&dir),
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    system.stop().await;
}
