//! One coupon policy; every request issues to a distinct user.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::json;

use crate::checks::check_capped;
use crate::run::{check, report};
use crate::Context;

/// Runs the scenario; whether every check passed.
pub(crate) async fn run(ctx: Context, total: i64, requests: Option<usize>) -> anyhow::Result<bool> {
    let Context {
        run,
        cli,
        client,
        pool,
        tokens,
        service: _,
        label,
        now,
    } = ctx;
    let mut ok = true;
    let requests = requests.unwrap_or(total as usize);
    let policy = run
        .post("/api/v1/coupon-policies", json!({ "title": "Bench", "totalQuantity": total, "startTime": now - chrono::Duration::minutes(1),
            "endTime": now + chrono::Duration::hours(6), "discountType": "FIXED_AMOUNT", "discountValue": 1000 }))
        .await?;
    let policy_id = policy["policyId"].as_str().context("policy id")?.to_owned();
    let base = format!("{}/api/v1/coupons/issue", cli.command);
    let id = policy_id.clone();
    let http = client.clone();
    let claimants = Arc::new(tokens.for_users(1, requests)?);
    let make = Arc::new(move |n: usize| {
        let user = n as i64 + 1;
        http.post(&base)
            .header("authorization", claimants.user(user))
            .json(&json!({ "policyId": id, "userId": user }))
    });
    let (mut record, elapsed) = run.drive_as_told(requests, make, |s| s == 201, None).await;
    report(&label, "coupon-race", &mut record, elapsed, 201);
    let users: Vec<i64> = sqlx::query_scalar(
        "SELECT (data->>'userId')::bigint FROM events WHERE stream_id = $1::uuid AND event_type = 'coupon.issued'",
    )
    .bind(&policy_id)
    .fetch_all(&pool)
    .await?;
    let distinct: HashSet<i64> = users.iter().copied().collect();
    ok &= check_capped("issued", "total", "EXHAUSTED", users.len(), total, &record);
    ok &= check(
        "no user twice",
        distinct.len() == users.len(),
        format!("{} distinct users", distinct.len()),
    );
    ok &= check(
        "every 'created' answer is in the log",
        record.bodies.len() == users.len(),
        format!("{} answered", record.bodies.len()),
    );

    Ok(ok)
}
