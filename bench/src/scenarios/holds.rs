//! A flash sale with checkout holds: every checkout holds one unit, then confirms it (70 %),
//! releases it (20 %) or walks away and lets it expire (10 %). Reports the requests, the
//! checkouts per second, the confirmed orders per second, how late the system's expiries came
//! (their event's time past the hold's due time), and checks the stock against the log.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::run::{check, percentile, report, send, spawn_freshness, Record};
use crate::scenarios::flash_sale::create_sale;
use crate::Context;

/// How a checkout ends: n % 10 of 0–6 confirm, 7–8 release, 9 walks away.
fn end_of(n: usize) -> Option<&'static str> {
    match n % 10 {
        0..=6 => Some("confirm"),
        7 | 8 => Some("release"),
        _ => None,
    }
}

/// Runs the scenario; whether every check passed. `ttl` is each hold's lifetime in seconds
/// (at least the deployment's `[holds] min_ttl_seconds`).
pub(crate) async fn run(
    ctx: Context,
    stock: i64,
    checkouts: Option<usize>,
    ttl: i64,
) -> anyhow::Result<bool> {
    let Context {
        run,
        cli,
        client,
        pool,
        tokens,
        label,
        ..
    } = ctx;
    let checkouts = checkouts.unwrap_or(stock as usize);
    let (sale_id, _) = create_sale(&run, stock).await?;
    let buyers = Arc::new(tokens.for_users(1, checkouts)?);
    let next = Arc::new(AtomicUsize::new(0));
    let latest: Arc<Mutex<Option<(Value, Instant)>>> = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicUsize::new(0));
    let sampler = (!cli.write_only).then(|| {
        spawn_freshness(
            run.clone(),
            latest.clone(),
            |b| {
                b["reservationId"]
                    .as_str()
                    .map(|r| format!("/api/v1/reservations/{r}"))
            },
            stop.clone(),
        )
    });
    let started = Instant::now();
    let workers: Vec<_> = (0..cli.concurrency)
        .map(|_| {
            let (client, buyers, next, latest) =
                (client.clone(), buyers.clone(), next.clone(), latest.clone());
            let (command, sale_id) = (cli.command.clone(), sale_id.clone());
            tokio::spawn(async move {
                let mut record = Record::default();
                let mut confirmed = 0usize;
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= checkouts {
                        break;
                    }
                    let user = n as i64 + 1;
                    let token = buyers.user(user).to_owned();
                    let sent = Instant::now();
                    let (status, body) = send(
                        client
                            .post(format!("{command}/api/v1/reservations"))
                            .header("authorization", &token)
                            .json(
                                &json!({ "timeSaleId": sale_id, "orderId": format!("checkout-{n}"),
                                           "userId": user, "quantity": 1, "ttlSeconds": ttl }),
                            ),
                        |s| s == 201,
                    )
                    .await;
                    record.add(
                        started,
                        sent.elapsed(),
                        status,
                        body.clone(),
                        |s| s == 201,
                        Some(&latest),
                    );
                    let (Some(end), Some(hold)) = (end_of(n), body["reservationId"].as_str())
                    else {
                        continue;
                    };
                    let sent = Instant::now();
                    let (status, _) = send(
                        client
                            .post(format!("{command}/api/v1/reservations/{hold}/{end}"))
                            .header("authorization", &token)
                            .json(&json!({})),
                        |_| false,
                    )
                    .await;
                    record.add(
                        started,
                        sent.elapsed(),
                        status,
                        Value::Null,
                        |_| false,
                        None,
                    );
                    confirmed += usize::from(end == "confirm" && status == 200);
                }
                (record, confirmed)
            })
        })
        .collect();
    let mut record = Record::default();
    let mut confirmed = 0;
    for worker in workers {
        let (r, c) = worker.await?;
        record.merge(r);
        confirmed += c;
    }
    let elapsed = started.elapsed();
    stop.store(1, Ordering::Relaxed);
    let holds = record.statuses.get(&201).copied().unwrap_or(0);
    report(&label, "holds", &mut record, elapsed, 201);
    let secs = elapsed.as_secs_f64();
    println!(
        "  {checkouts} checkouts: {holds} held ({:.0}/s), {confirmed} confirmed into orders ({:.0} orders/s)",
        holds as f64 / secs,
        confirmed as f64 / secs
    );
    if let Some(sampler) = sampler {
        let mut freshness = sampler.await.unwrap_or_default();
        freshness.sort_unstable();
        println!("  freshness (held → visible in query API), {} samples: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            freshness.len(), percentile(&freshness, 50.0), percentile(&freshness, 99.0), percentile(&freshness, 100.0));
    }

    // Every hold left to expire expires: wait until none is open (at most the TTL + 60 s).
    let deadline = Instant::now() + Duration::from_secs(ttl as u64 + 60);
    let open = loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events r WHERE r.stream_id = $1::uuid AND r.event_type = 'timesale.reserved' \
             AND NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_id = r.stream_id AND e.event_type IN \
             ('timesale.reservation_confirmed', 'timesale.reservation_released', 'timesale.reservation_expired') \
             AND e.data->>'reservationId' = r.data->>'reservationId')",
        )
        .bind(&sale_id)
        .fetch_one(&pool)
        .await?;
        if open == 0 || Instant::now() > deadline {
            break open;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut all_ok = check("every hold ended", open == 0, format!("{open} still open"));
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT event_type, count(*) FROM events WHERE stream_id = $1::uuid GROUP BY event_type",
    )
    .bind(&sale_id)
    .fetch_all(&pool)
    .await?;
    let count = |t: &str| counts.iter().find(|(n, _)| n == t).map_or(0, |(_, c)| *c);
    let (reserved, confirmed_log, released, expired) = (
        count("timesale.reserved"),
        count("timesale.reservation_confirmed"),
        count("timesale.reservation_released"),
        count("timesale.reservation_expired"),
    );
    all_ok &= check(
        "each hold ended once (confirmed + released + expired = held)",
        confirmed_log + released + expired == reserved && reserved == holds as i64,
        format!("{reserved} held, {confirmed_log} confirmed, {released} released, {expired} expired; {holds} answered 201"),
    );
    all_ok &= check(
        "every confirmation answered is in the log",
        confirmed_log == confirmed as i64,
        format!("{confirmed} answered, {confirmed_log} logged"),
    );
    let mut late: Vec<u32> = sqlx::query_scalar(
        "SELECT (EXTRACT(EPOCH FROM ((x.data->>'occurredAt')::timestamptz - (r.data->>'expiresAt')::timestamptz)) * 1e6)::int \
         FROM events x JOIN events r ON r.stream_id = x.stream_id AND r.event_type = 'timesale.reserved' \
           AND r.data->>'reservationId' = x.data->>'reservationId' \
         WHERE x.stream_id = $1::uuid AND x.event_type = 'timesale.reservation_expired'",
    )
    .bind(&sale_id)
    .fetch_all(&pool)
    .await?
    .into_iter()
    .map(|micros: i32| micros.max(0) as u32)
    .collect();
    late.sort_unstable();
    println!(
        "  expiry lateness (due → expired in the log), {} expiries: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        late.len(),
        percentile(&late, 50.0),
        percentile(&late, 99.0),
        percentile(&late, 100.0)
    );
    if !cli.write_only {
        let head: i64 = sqlx::query_scalar("SELECT position FROM log_head")
            .fetch_one(&pool)
            .await?;
        let sale = run
            .get(&format!("/api/v1/time-sales/{sale_id}"), Some(head))
            .await
            .context("the sale as the query API shows it")?;
        let shown = (
            sale["remainingQuantity"].as_i64(),
            sale["reservedQuantity"].as_i64(),
            sale["soldQuantity"].as_i64(),
        );
        all_ok &= check(
            "stock exact: query API shows stock − confirmed left, none held",
            shown == (Some(stock - confirmed_log), Some(0), Some(confirmed_log)),
            format!("{shown:?}"),
        );
    }
    Ok(all_ok)
}
