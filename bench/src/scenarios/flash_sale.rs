//! One time sale; every request orders one unit for a distinct buyer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use serde_json::json;

use crate::checks::check_sale;
use crate::run::{percentile, report, spawn_freshness, Run};
use crate::Context;

/// Runs the scenario; whether every check passed.
pub(crate) async fn run(ctx: Context, stock: i64, requests: Option<usize>) -> anyhow::Result<bool> {
    let Context {
        run,
        cli,
        client,
        pool,
        tokens,
        service: _,
        label,
        now: _,
    } = ctx;
    let mut ok = true;
    let requests = requests.unwrap_or(stock as usize);
    let (sale_id, _) = create_sale(&run, stock).await?;
    let base = format!("{}/api/v1/orders", cli.command);
    let id = sale_id.clone();
    let http = client.clone();
    let buyers = Arc::new(tokens.for_users(1, requests)?);
    let make = Arc::new(move |n: usize| {
        let user = n as i64 + 1;
        http.post(&base)
            .header("authorization", buyers.user(user))
            .json(&json!({ "timeSaleId": id, "userId": user, "quantity": 1 }))
    });
    let latest = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicUsize::new(0));
    let sampler = (!cli.write_only).then(|| {
        spawn_freshness(
            run.clone(),
            latest.clone(),
            |b| b["orderId"].as_str().map(|o| format!("/api/v1/orders/{o}")),
            stop.clone(),
        )
    });
    let (mut record, elapsed) = run
        .drive_as_told(requests, make, |s| s == 201, Some(latest))
        .await;
    stop.store(1, Ordering::Relaxed);
    report(&label, "flash-sale", &mut record, elapsed, 201);
    if let Some(sampler) = sampler {
        let mut freshness = sampler.await.unwrap_or_default();
        freshness.sort_unstable();
        println!("  freshness (accepted → visible in query API), {} samples: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            freshness.len(), percentile(&freshness, 50.0), percentile(&freshness, 99.0), percentile(&freshness, 100.0));
    }

    ok &= check_sale(&run, &pool, &sale_id, stock, &record).await?;

    Ok(ok)
}

/// A product and a time sale of `stock` units running now; its id and the position of its
/// creation (for read-your-writes).
pub(crate) async fn create_sale(run: &Run, stock: i64) -> anyhow::Result<(String, Option<i64>)> {
    let now = chrono::Utc::now();
    let product = run
        .post(
            "/api/v1/products",
            json!({ "name": "Bench headphones", "price": 100_000 }),
        )
        .await?;
    let sale = run
        .post(
            "/api/v1/time-sales",
            json!({ "productId": product["productId"], "discountPrice": 49_000, "quantity": stock,
                    "startAt": now - chrono::Duration::minutes(1), "endAt": now + chrono::Duration::hours(6) }),
        )
        .await?;
    let sale_id = sale["timeSaleId"].as_str().context("sale id")?.to_owned();
    Ok((sale_id, sale["position"].as_i64()))
}
