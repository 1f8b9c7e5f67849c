//! Earn (60 %) and use (40 %) over random users.

use std::sync::Arc;

use rand::Rng;
use serde_json::json;

use crate::checks::check_points;
use crate::run::report;
use crate::tokens::Tokens;
use crate::Context;

/// Runs the scenario; whether every check passed.
pub(crate) async fn run(ctx: Context, users: i64, requests: usize) -> anyhow::Result<bool> {
    let Context {
        run,
        cli,
        client,
        pool,
        tokens,
        service,
        label,
        now: _,
    } = ctx;
    let mut ok = true;
    let make = points_mix(&client, &cli.command, users, tokens, &service, "bench")?;
    let (mut record, elapsed) = run.drive_as_told(requests, make, |s| s == 201, None).await;
    report(&label, "points", &mut record, elapsed, 201);
    ok &= check_points(&run, &pool, users).await?;

    Ok(ok)
}

/// Earn (60 %, by the checkout service) and use (40 %, by the user) over `users` random users.
pub(crate) fn points_mix(
    client: &reqwest::Client,
    command: &str,
    users: i64,
    tokens: Tokens,
    service: &str,
    description: &'static str,
) -> anyhow::Result<Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>> {
    let (http, command, service) = (client.clone(), command.to_owned(), service.to_owned());
    let spenders = tokens.for_users(1, users as usize)?;
    Ok(Arc::new(move |_n: usize| {
        let mut rng = rand::rng();
        let user = rng.random_range(1..=users);
        if rng.random_bool(0.6) {
            http.post(format!("{command}/api/v1/points/earn"))
                .header("authorization", &service)
                .json(&json!({ "userId": user, "amount": rng.random_range(10..=100), "description": description }))
        } else {
            http.post(format!("{command}/api/v1/points/use"))
                .header("authorization", spenders.user(user))
                .json(&json!({ "userId": user, "amount": rng.random_range(1..=50), "description": description }))
        }
    }))
}
