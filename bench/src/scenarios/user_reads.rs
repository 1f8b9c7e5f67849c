//! Reads by distinct signed-in users: each request is another user reading their own balance
//! with their own token — what the query API's rate limiter sees on a sale day. A long run
//! reports reads/s by 10-s slice: whether a check costs the same with 400,000 users seen in
//! the window as with the first thousand. The users have no points: each read misses Redis
//! and reads PostgreSQL (a balance of 0), as a first visit does.

use std::sync::Arc;

use crate::run::{check, report};
use crate::Context;

/// Runs the scenario; whether every read answered 200.
pub(crate) async fn run(ctx: Context, users: usize) -> anyhow::Result<bool> {
    let Context {
        run,
        cli,
        client,
        tokens,
        label,
        ..
    } = ctx;
    let readers = Arc::new(tokens.for_users(1, users)?);
    let query = cli.query.clone();
    let make = Arc::new(move |n: usize| {
        let user = n as i64 + 1;
        client
            .get(format!("{query}/api/v1/points/users/{user}/balance"))
            .header("authorization", readers.user(user))
    });
    let (mut record, elapsed) = run.drive_as_told(users, make, |_| false, None).await;
    report(&label, "user-reads", &mut record, elapsed, 200);
    Ok(check(
        "every read answered 200",
        record.statuses.keys().all(|s| *s == 200),
        format!("{:?}", record.statuses),
    ))
}
