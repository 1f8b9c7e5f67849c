//! A flash sale, the points mix and reads at once, a third of the connections each.

use std::sync::Arc;

use serde_json::json;

use crate::checks::{check_points, check_sale};
use crate::run::{check, report};
use crate::scenarios::flash_sale::create_sale;
use crate::scenarios::points::points_mix;
use crate::tokens::Tokens;
use crate::Context;

/// Runs the scenario; whether every check passed.
pub(crate) async fn run(
    ctx: Context,
    stock: i64,
    users: i64,
    requests: usize,
) -> anyhow::Result<bool> {
    let Context {
        run,
        cli,
        client,
        pool,
        tokens: _,
        service,
        label,
        now: _,
    } = ctx;
    let mut ok = true;
    let (sale_id, sale_position) = create_sale(&run, stock).await?;
    // The reads ask for this sale: start once the query API shows it (read-your-writes).
    run.get(&format!("/api/v1/time-sales/{sale_id}"), sale_position)
        .await?;
    let share = (cli.concurrency / 3).max(1);
    let third = cli.rate.map(|rate| rate / 3.0);
    let (command, query) = (cli.command.clone(), cli.query.clone());
    let (http, id) = (client.clone(), sale_id.clone());
    let buyers = Arc::new(Tokens::new(&cli.auth_secret)?.for_users(1_000_000, requests)?);
    let orders = Arc::new(move |n: usize| {
        let user = 1_000_000 + n as i64;
        http.post(format!("{command}/api/v1/orders"))
            .header("authorization", buyers.user(user))
            .json(&json!({ "timeSaleId": id, "userId": user, "quantity": 1 }))
    });
    let points = points_mix(
        &client,
        &cli.command,
        users,
        Tokens::new(&cli.auth_secret)?,
        &service,
        "mixed",
    )?;
    let (http, id, storefront) = (client.clone(), sale_id.clone(), service.clone());
    let reads = Arc::new(move |n: usize| {
        if n.is_multiple_of(2) {
            http.get(format!(
                "{query}/api/v1/points/users/{}/balance",
                n as i64 % users + 1
            ))
        } else {
            http.get(format!("{query}/api/v1/time-sales/{id}"))
        }
        .header("authorization", &storefront)
    });
    let ((mut sold, sold_time), (mut moved, moved_time), (mut read, read_time)) = tokio::join!(
        run.drive(share, requests, third, orders, |s| s == 201, None),
        run.drive(share, requests, third, points, |s| s == 201, None),
        run.drive(share, requests, third, reads, |_| false, None),
    );
    report(&label, "mixed/orders", &mut sold, sold_time, 201);
    report(&label, "mixed/points", &mut moved, moved_time, 201);
    report(&label, "mixed/reads", &mut read, read_time, 200);
    ok &= check_sale(&run, &pool, &sale_id, stock, &sold).await?;
    ok &= check_points(&run, &pool, users).await?;
    ok &= check(
        "every read answered 200",
        read.statuses.keys().all(|s| *s == 200),
        format!("{:?}", read.statuses),
    );

    Ok(ok)
}
