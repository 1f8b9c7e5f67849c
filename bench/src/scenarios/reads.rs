//! Balance and stock reads, half each.

use std::sync::Arc;

use anyhow::Context as _;
use serde_json::json;

use crate::run::{check, report};
use crate::Context;

/// Runs the scenario; whether every check passed.
pub(crate) async fn run(ctx: Context, requests: usize) -> anyhow::Result<bool> {
    let Context {
        run,
        cli,
        client,
        pool,
        tokens: _,
        service,
        label,
        now,
    } = ctx;
    let mut ok = true;
    let product = run
        .post(
            "/api/v1/products",
            json!({ "name": "Bench", "price": 1_000 }),
        )
        .await?;
    let sale = run
        .post("/api/v1/time-sales", json!({ "productId": product["productId"], "discountPrice": 500, "quantity": 1000,
            "startAt": now - chrono::Duration::minutes(1), "endAt": now + chrono::Duration::hours(6) }))
        .await?;
    for user in 1..=100 {
        run.post(
            "/api/v1/points/earn",
            json!({ "userId": user, "amount": 100, "description": "bench" }),
        )
        .await?;
    }
    let head: i64 = sqlx::query_scalar("SELECT position FROM log_head")
        .fetch_one(&pool)
        .await?;
    run.get("/api/v1/points/users/1/balance", Some(head))
        .await?;
    let query = cli.query.clone();
    let sale_id = sale["timeSaleId"].as_str().context("sale id")?.to_owned();
    let (http, storefront) = (client.clone(), service.clone());
    let make = Arc::new(move |n: usize| {
        if n.is_multiple_of(2) {
            http.get(format!(
                "{query}/api/v1/points/users/{}/balance",
                n % 100 + 1
            ))
        } else {
            http.get(format!("{query}/api/v1/time-sales/{sale_id}"))
        }
        .header("authorization", &storefront)
    });
    let (mut record, elapsed) = run.drive_as_told(requests, make, |_| false, None).await;
    report(&label, "reads", &mut record, elapsed, 200);
    ok &= check(
        "every read answered 200",
        record.statuses.keys().all(|s| *s == 200),
        format!("{:?}", record.statuses),
    );

    Ok(ok)
}
