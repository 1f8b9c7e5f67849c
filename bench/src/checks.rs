//! The correctness checks after a load, against the event log and the query API.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::run::{check, Record, Run};

/// The two checks of a capped resource (stock, a policy's total): never more taken than the
/// cap, and a refusal (422) only once the cap is reached.
pub(crate) fn check_capped(
    taken_name: &str,
    cap_name: &str,
    refusal: &str,
    taken: usize,
    cap: i64,
    record: &Record,
) -> bool {
    let refused = record.statuses.get(&422).copied().unwrap_or(0);
    let within = check(
        &format!("{taken_name} ≤ {cap_name}"),
        taken as i64 <= cap,
        format!("{taken_name} {taken} of {cap_name} {cap}"),
    );
    let refused_right = check(
        &format!("{refusal} only once the {cap_name} is reached"),
        refused == 0 || taken as i64 == cap,
        format!("{refused} refused"),
    );
    within && refused_right
}

/// The flash-sale checks against the log and the query API.
pub(crate) async fn check_sale(
    run: &Run,
    pool: &sqlx::PgPool,
    sale_id: &str,
    stock: i64,
    record: &Record,
) -> anyhow::Result<bool> {
    let cli = &run.cli;
    let mut all_ok = true;
    let accepted: HashSet<String> = record
        .bodies
        .iter()
        .filter_map(|b| b["orderId"].as_str().map(str::to_owned))
        .collect();
    let logged: Vec<String> = sqlx::query_scalar(
                "SELECT data->>'orderId' FROM events WHERE stream_id = $1::uuid AND event_type = 'order.created'",
            )
            .bind(sale_id)
            .fetch_all(pool)
            .await?;
    let logged_set: HashSet<String> = logged.iter().cloned().collect();
    all_ok &= check_capped("sold", "stock", "SOLD_OUT", logged.len(), stock, record);
    all_ok &= check(
        "no order twice in the log",
        logged_set.len() == logged.len(),
        format!("{} distinct", logged_set.len()),
    );
    all_ok &= check(
        "every 'created' answer is in the log",
        accepted == logged_set,
        format!("{} answered, {} logged", accepted.len(), logged_set.len()),
    );
    let head: i64 = sqlx::query_scalar("SELECT position FROM log_head")
        .fetch_one(pool)
        .await?;
    if cli.write_only {
        println!("  (write-only: query-API checks skipped)");
    } else {
        match run
            .get(&format!("/api/v1/time-sales/{sale_id}"), Some(head))
            .await
        {
            Ok(view) => {
                all_ok &= check(
                    "query API stock = stock − sold",
                    view["remainingQuantity"].as_i64() == Some(stock - logged.len() as i64),
                    format!("remaining {}", view["remainingQuantity"]),
                )
            }
            Err(e) => all_ok &= check("query API stock = stock − sold", false, e.to_string()),
        }
    }
    Ok(all_ok)
}

/// The points checks: every balance equals the sum of its history and is never negative; a
/// sample of balances read through the query API equals the log.
pub(crate) async fn check_points(
    run: &Run,
    pool: &sqlx::PgPool,
    users: i64,
) -> anyhow::Result<bool> {
    let cli = &run.cli;
    let mut all_ok = true;
    // Balances = history sums, for every account the log holds.
    let mismatched: i64 = sqlx::query_scalar(
                "WITH last AS (SELECT DISTINCT ON (stream_id) stream_id, (data->>'balanceAfter')::bigint AS balance \
                   FROM events WHERE category = 'point' ORDER BY stream_id, version DESC), \
                 sums AS (SELECT stream_id, sum(CASE event_type WHEN 'point.earned' THEN (data->>'amount')::bigint \
                   WHEN 'point.spent' THEN -(data->>'amount')::bigint \
                   ELSE CASE data->>'canceledType' WHEN 'EARN' THEN -(data->>'amount')::bigint ELSE (data->>'amount')::bigint END END) AS total \
                   FROM events WHERE category = 'point' GROUP BY stream_id) \
                 SELECT count(*) FROM last JOIN sums USING (stream_id) WHERE last.balance <> sums.total OR last.balance < 0",
            )
            .fetch_one(pool)
            .await?;
    all_ok &= check(
        "every balance = sum of its history, ≥ 0",
        mismatched == 0,
        format!("{mismatched} accounts differ"),
    );
    let head: i64 = sqlx::query_scalar("SELECT position FROM log_head")
        .fetch_one(pool)
        .await?;
    let mut differing = Vec::new();
    for user in 1..=(if cli.write_only { 0 } else { users.min(50) }) {
        let from_log: Option<i64> = sqlx::query_scalar(
                    "SELECT (data->>'balanceAfter')::bigint FROM events WHERE category = 'point' AND (data->>'userId')::bigint = $1 ORDER BY position DESC LIMIT 1",
                )
                .bind(user)
                .fetch_optional(pool)
                .await?;
        let view = run
            .get(&format!("/api/v1/points/users/{user}/balance"), Some(head))
            .await?;
        if view["balance"].as_i64() != Some(from_log.unwrap_or(0)) {
            differing.push(format!(
                "user {user}: query API {view}, log {}",
                from_log.unwrap_or(0)
            ));
        }
    }
    if !cli.write_only {
        all_ok &= check(
            "query API balances = log (50 users)",
            differing.is_empty(),
            format!(
                "{} differ{}",
                differing.len(),
                differing
                    .first()
                    .map(|d| format!(", e.g. {d}"))
                    .unwrap_or_default()
            ),
        );
    }
    Ok(all_ok)
}

/// How far the relay was behind the log when the load ended, and how long after that the
/// broker had acknowledged every event (the relay's checkpoint at the log head).
pub(crate) async fn report_relay(pool: &sqlx::PgPool) -> anyhow::Result<bool> {
    const WAIT: Duration = Duration::from_secs(300);
    let ended = Instant::now();
    let head: i64 = sqlx::query_scalar("SELECT position FROM log_head")
        .fetch_one(pool)
        .await?;
    let checkpoint = || {
        sqlx::query_scalar::<_, i64>("SELECT position FROM relay_checkpoint WHERE name = 'kafka'")
            .fetch_one(pool)
    };
    let behind = head - checkpoint().await?;
    while checkpoint().await? < head && ended.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caught_up = ended.elapsed();
    println!(
        "  relay: {behind} of {head} events not yet in Kafka when the load ended; all acknowledged {:.1} s later",
        caught_up.as_secs_f64()
    );
    Ok(check(
        "Kafka holds every event of the log",
        checkpoint().await? >= head,
        format!(
            "checkpoint vs head {head}, waited at most {} s",
            WAIT.as_secs()
        ),
    ))
}
