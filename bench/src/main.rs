//! promo-bench: drives the running system over HTTP on loopback — closed loop (a fixed number
//! of workers each sending its next request when the previous one was answered) or open loop
//! (`--rate`: requests on a fixed schedule, at most `--concurrency` in flight) — then checks
//! the outcome against the event log and the query API. Stops by itself after `--requests`.
//! Prints throughput, latency percentiles, answers by status, and the correctness verdicts.
//!
//! It signs in as the shop would (ADR 11): buyers order, claim coupons and spend points with
//! tokens of their own (so each of those requests is also counted by the rate limiter); the
//! checkout service earns points and the storefront's back end reads, with service tokens;
//! setup is an admin's. Tokens are minted before the load with the services' HS256 secret.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use clap::{Parser, Subcommand};
use rand::Rng;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Load generator for the promotion back end (loopback only)")]
struct Cli {
    /// The command API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    command: String,
    /// The query API.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    query: String,
    /// The event log's database, for the correctness checks.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://promo:promo@127.0.0.1:55432/promo"
    )]
    database_url: String,
    /// Concurrent workers (connections); in an open-loop run (`--rate`), the most requests
    /// in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Open loop: send this many requests per second, on schedule, whether or not earlier
    /// ones were answered (latency counts from when a request was due). Without it, closed
    /// loop. In `mixed`, each of the three parts gets a third.
    #[arg(long)]
    rate: Option<f64>,
    /// Also print answers, p50, p99 and max second by second (where stalls show).
    #[arg(long)]
    timeline: bool,
    /// Label printed with the results (e.g. single-writer, naive).
    #[arg(long, default_value = "")]
    label: String,
    /// Measure the write path alone: no freshness sampling and no query-API checks (the
    /// event-log checks still run). For runs where no relay/projector is running.
    #[arg(long)]
    write_only: bool,
    /// A relay publishes this log to Kafka: after the load, report how far behind it was
    /// when the load ended and how long Kafka took to hold every event.
    #[arg(long)]
    relay: bool,
    /// The HS256 secret the services verify tokens with.
    #[arg(
        long,
        env = "APP_AUTH__SECRET",
        default_value = "dev-only-secret-do-not-use-in-production-0000",
        hide_env_values = true
    )]
    auth_secret: String,
    #[command(subcommand)]
    scenario: Scenario,
}

/// Bearer tokens minted before the load, so that signing costs the measured window nothing.
struct Tokens {
    minter: auth::Minter,
    /// `Bearer …` of users `first..first + users.len()`.
    first: i64,
    users: Vec<String>,
}

impl Tokens {
    fn new(secret: &str) -> anyhow::Result<Self> {
        let minter = auth::Minter::new(&auth::AuthSettings {
            secret: Some(secret.into()),
            ..auth::AuthSettings::default()
        })?;
        Ok(Self {
            minter,
            first: 1,
            users: Vec::new(),
        })
    }

    fn bearer(&self, role: auth::Role, sub: &str) -> anyhow::Result<String> {
        Ok(format!(
            "Bearer {}",
            self.minter
                .mint(sub, role, Duration::from_secs(6 * 3_600))?
        ))
    }

    /// Mints a token for each of users `first..first + count`.
    fn for_users(mut self, first: i64, count: usize) -> anyhow::Result<Self> {
        self.first = first;
        self.users = (0..count as i64)
            .map(|n| self.bearer(auth::Role::User, &(first + n).to_string()))
            .collect::<anyhow::Result<_>>()?;
        Ok(self)
    }

    /// User `id`'s `Bearer …` (minted by [`Tokens::for_users`]).
    fn user(&self, id: i64) -> &str {
        &self.users[(id - self.first) as usize]
    }
}

#[derive(Subcommand, Clone)]
enum Scenario {
    /// One time sale of `stock` units; every request orders one unit for a distinct buyer.
    FlashSale {
        #[arg(long, default_value_t = 100_000)]
        stock: i64,
        /// Orders sent in all (defaults to the stock).
        #[arg(long)]
        requests: Option<usize>,
    },
    /// One coupon policy of `total`; every request issues to a distinct user.
    CouponRace {
        #[arg(long, default_value_t = 100_000)]
        total: i64,
        #[arg(long)]
        requests: Option<usize>,
    },
    /// Earn (60 %) and use (40 %) over `users` random users.
    Points {
        #[arg(long, default_value_t = 100_000)]
        users: i64,
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
    },
    /// A flash sale, the points mix and reads at once, a third of the connections each.
    Mixed {
        #[arg(long, default_value_t = 30_000)]
        stock: i64,
        #[arg(long, default_value_t = 100_000)]
        users: i64,
        /// Requests of each of the three kinds.
        #[arg(long, default_value_t = 30_000)]
        requests: usize,
    },
    /// Balance and stock reads, half each.
    Reads {
        #[arg(long, default_value_t = 200_000)]
        requests: usize,
    },
}

/// The latest accepted write and when it was answered: what the freshness sampler follows.
type Latest = Arc<Mutex<Option<(Value, Instant)>>>;

/// Latencies (µs) and answers by status of one run.
#[derive(Default)]
struct Record {
    latencies: Vec<u32>,
    /// Per answer: when it came (ms since the run started) and its latency (µs).
    timeline: Vec<(u32, u32)>,
    statuses: BTreeMap<u16, usize>,
    bodies: Vec<Value>,
}

struct Run {
    client: reqwest::Client,
    cli: Arc<Cli>,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

impl Run {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .client
            .post(format!("{}{path}", self.cli.command))
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("{path}: {status} {body}");
        }
        Ok(body)
    }

    /// A query; with `min_position`, retried on 503 for up to 3 minutes (the read side may
    /// trail a saturating load by much more than one consistency wait).
    async fn get(&self, path: &str, min_position: Option<i64>) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let mut request = self.client.get(format!("{}{path}", self.cli.query));
            if let Some(p) = min_position {
                request = request.header("X-Min-Position", p.to_string());
            }
            let response = request.send().await?;
            let status = response.status();
            let body: Value = response.json().await?;
            if status.is_success() {
                return Ok(body);
            }
            if status.as_u16() != 503 || min_position.is_none() || Instant::now() > deadline {
                bail!("{path}: {status} {body}");
            }
        }
    }

    /// Sends `requests` requests; `make(n)` builds request n. Closed loop (no `rate`):
    /// `concurrency` workers, each sending its next request when the previous one was answered.
    /// Open loop (`rate` requests/s): request n is due at n / rate, whatever came of the ones
    /// before, with at most `concurrency` in flight; its latency counts from when it was due,
    /// so a server that falls behind shows it (no coordinated omission).
    /// `keep` decides which answer bodies to keep for the checks.
    async fn drive(
        &self,
        concurrency: usize,
        requests: usize,
        rate: Option<f64>,
        make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>,
        keep: fn(u16) -> bool,
        freshness: Option<Latest>,
    ) -> (Record, Duration) {
        let started = Instant::now();
        let total = Arc::new(Mutex::new(Record::default()));
        let mut tasks = Vec::new();
        if let Some(rate) = rate {
            let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
            for n in 0..requests {
                let due = started + Duration::from_secs_f64(n as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let (make, freshness, record) = (make.clone(), freshness.clone(), total.clone());
                tasks.push(tokio::spawn(async move {
                    let (status, body) = send(make(n), keep).await;
                    drop(slot);
                    if let Ok(mut record) = record.lock() {
                        record.add(
                            started,
                            due.elapsed(),
                            status,
                            body,
                            keep,
                            freshness.as_ref(),
                        );
                    }
                }));
            }
        } else {
            let next = Arc::new(AtomicUsize::new(0));
            for _ in 0..concurrency {
                let (next, make, freshness, total) =
                    (next.clone(), make.clone(), freshness.clone(), total.clone());
                tasks.push(tokio::spawn(async move {
                    let mut record = Record::default();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= requests {
                            break;
                        }
                        let sent = Instant::now();
                        let (status, body) = send(make(n), keep).await;
                        record.add(
                            started,
                            sent.elapsed(),
                            status,
                            body,
                            keep,
                            freshness.as_ref(),
                        );
                    }
                    if let Ok(mut total) = total.lock() {
                        total.merge(record);
                    }
                }));
            }
        }
        for task in tasks {
            let _ = task.await;
        }
        let record = std::mem::take(&mut *total.lock().expect("record"));
        (record, started.elapsed())
    }
}

impl Run {
    /// [`Run::drive`] with the command line's `--concurrency` and `--rate`.
    async fn drive_as_told(
        &self,
        requests: usize,
        make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>,
        keep: fn(u16) -> bool,
        freshness: Option<Latest>,
    ) -> (Record, Duration) {
        let (concurrency, rate) = (self.cli.concurrency, self.cli.rate);
        self.drive(concurrency, requests, rate, make, keep, freshness)
            .await
    }
}

/// Sends one request; its status (0: no answer) and, where `keep` says so, its body.
async fn send(request: reqwest::RequestBuilder, keep: fn(u16) -> bool) -> (u16, Value) {
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            if keep(status) {
                (status, response.json().await.unwrap_or(Value::Null))
            } else {
                let _ = response.bytes().await;
                (status, Value::Null)
            }
        }
        Err(_) => (0, Value::Null),
    }
}

impl Record {
    /// Records one answer; a kept one is also the freshness sampler's latest.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        started: Instant,
        latency: Duration,
        status: u16,
        body: Value,
        keep: fn(u16) -> bool,
        freshness: Option<&Latest>,
    ) {
        let micros = latency.as_micros().min(u128::from(u32::MAX)) as u32;
        self.latencies.push(micros);
        if TIMELINE.get().copied().unwrap_or(false) {
            self.timeline
                .push((started.elapsed().as_millis() as u32, micros));
        }
        *self.statuses.entry(status).or_default() += 1;
        if keep(status) {
            if let Some(Ok(mut slot)) = freshness.map(|latest| latest.lock()) {
                *slot = Some((body.clone(), Instant::now()));
            }
            self.bodies.push(body);
        }
    }

    fn merge(&mut self, other: Record) {
        self.latencies.extend(other.latencies);
        self.timeline.extend(other.timeline);
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.bodies.extend(other.bodies);
    }
}

/// `--timeline`: print answers per second and their latency percentiles, second by second.
static TIMELINE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn print_timeline(timeline: &[(u32, u32)]) {
    let mut seconds: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &(at, micros) in timeline {
        seconds.entry(at / 1000).or_default().push(micros);
    }
    for (second, mut latencies) in seconds {
        latencies.sort_unstable();
        println!(
            "    second {second:>3}: {:>6} answers  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
            latencies.len(),
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0),
            percentile(&latencies, 100.0)
        );
    }
}

fn report(
    label: &str,
    scenario: &str,
    record: &mut Record,
    elapsed: Duration,
    success: u16,
) -> Value {
    if TIMELINE.get().copied().unwrap_or(false) {
        print_timeline(&record.timeline);
    }
    record.latencies.sort_unstable();
    let succeeded = record.statuses.get(&success).copied().unwrap_or(0);
    let sent = record.latencies.len();
    let secs = elapsed.as_secs_f64();
    let summary = json!({
        "label": label, "scenario": scenario, "requests": sent, "seconds": (secs * 100.0).round() / 100.0,
        "requestsPerSecond": (sent as f64 / secs).round(), "successesPerSecond": (succeeded as f64 / secs).round(),
        "p50ms": percentile(&record.latencies, 50.0), "p95ms": percentile(&record.latencies, 95.0),
        "p99ms": percentile(&record.latencies, 99.0),
        "maxms": f64::from(record.latencies.last().copied().unwrap_or(0)) / 1000.0,
        "statuses": record.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
    });
    println!(
        "{label:>14} {scenario:<12} {sent:>7} req in {secs:>6.2}s  {:>8.0} req/s  {:>8.0} ok/s  p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  {:?}",
        sent as f64 / secs,
        succeeded as f64 / secs,
        percentile(&record.latencies, 50.0),
        percentile(&record.latencies, 95.0),
        percentile(&record.latencies, 99.0),
        f64::from(record.latencies.last().copied().unwrap_or(0)) / 1000.0,
        record.statuses
    );
    summary
}

fn check(name: &str, ok: bool, detail: String) -> bool {
    println!(
        "  check {:<44} {}  {detail}",
        name,
        if ok { "PASS" } else { "FAIL" }
    );
    ok
}

/// Samples freshness while a scenario runs: every 20 ms the latest accepted write (if new) is
/// followed by a task of its own that polls the query API (every 2 ms, later 5 % of the wait
/// so far) until the write is visible; the time from its answer to its visibility is one sample. Samples overlap, so a
/// stall shows in many of them, and a run of a few seconds gives a usable p99.
fn spawn_freshness(
    run: Arc<Run>,
    latest: Arc<Mutex<Option<(Value, Instant)>>>,
    path: fn(&Value) -> Option<String>,
    stop: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<u32>> {
    tokio::spawn(async move {
        let mut followers = Vec::new();
        let mut seen = HashSet::new();
        while stop.load(Ordering::Relaxed) == 0 {
            let candidate = latest.lock().ok().and_then(|slot| slot.clone());
            if let Some((body, accepted)) = candidate {
                if let Some(path) = path(&body).filter(|p| seen.insert(p.clone())) {
                    let run = run.clone();
                    followers.push(tokio::spawn(async move {
                        let url = format!("{}{path}", run.cli.query);
                        while accepted.elapsed() < Duration::from_secs(30) {
                            match run.client.get(&url).send().await {
                                Ok(r) if r.status().is_success() => break,
                                // 2 ms at first, then 5 % of the time waited so far: a
                                // resolution well inside 100 ms, and a stall of seconds does
                                // not turn the samplers into a load of their own.
                                _ => {
                                    let pause =
                                        (accepted.elapsed() / 20).max(Duration::from_millis(2));
                                    tokio::time::sleep(pause).await;
                                }
                            }
                        }
                        accepted.elapsed().as_micros().min(u128::from(u32::MAX)) as u32
                    }));
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut samples = Vec::with_capacity(followers.len());
        for follower in followers {
            samples.extend(follower.await.ok());
        }
        samples
    })
}

/// A product and a time sale of `stock` units running now; its id and the position of its
/// creation (for read-your-writes).
async fn create_sale(run: &Run, stock: i64) -> anyhow::Result<(String, Option<i64>)> {
    let now = Utc::now();
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

/// The two checks of a capped resource (stock, a policy's total): never more taken than the
/// cap, and a refusal (422) only once the cap is reached.
fn check_capped(
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
async fn check_sale(
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
async fn check_points(run: &Run, pool: &sqlx::PgPool, users: i64) -> anyhow::Result<bool> {
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Arc::new(Cli::parse());
    let _ = TIMELINE.set(cli.timeline);
    let tokens = Tokens::new(&cli.auth_secret)?;
    let service = tokens.bearer(auth::Role::Service, "bench-checkout")?;
    // Setup, checks and the freshness sampler: an admin.
    let mut admin = reqwest::header::HeaderMap::new();
    admin.insert(
        reqwest::header::AUTHORIZATION,
        tokens.bearer(auth::Role::Admin, "bench")?.parse()?,
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(cli.concurrency)
        .default_headers(admin)
        .build()?;
    let run = Arc::new(Run {
        client: client.clone(),
        cli: cli.clone(),
    });
    let pool = sqlx::PgPool::connect(&cli.database_url)
        .await
        .context("connecting to the event log")?;
    let now = Utc::now();
    let mut all_ok = true;
    let label = cli.label.clone();
    match cli.scenario.clone() {
        Scenario::FlashSale { stock, requests } => {
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

            all_ok &= check_sale(&run, &pool, &sale_id, stock, &record).await?;
        }
        Scenario::CouponRace { total, requests } => {
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
            all_ok &= check_capped("issued", "total", "EXHAUSTED", users.len(), total, &record);
            all_ok &= check(
                "no user twice",
                distinct.len() == users.len(),
                format!("{} distinct users", distinct.len()),
            );
            all_ok &= check(
                "every 'created' answer is in the log",
                record.bodies.len() == users.len(),
                format!("{} answered", record.bodies.len()),
            );
        }
        Scenario::Points { users, requests } => {
            let make = points_mix(&client, &cli.command, users, tokens, &service, "bench")?;
            let (mut record, elapsed) = run.drive_as_told(requests, make, |s| s == 201, None).await;
            report(&label, "points", &mut record, elapsed, 201);
            all_ok &= check_points(&run, &pool, users).await?;
        }
        Scenario::Mixed {
            stock,
            users,
            requests,
        } => {
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
            all_ok &= check_sale(&run, &pool, &sale_id, stock, &sold).await?;
            all_ok &= check_points(&run, &pool, users).await?;
            all_ok &= check(
                "every read answered 200",
                read.statuses.keys().all(|s| *s == 200),
                format!("{:?}", read.statuses),
            );
        }
        Scenario::Reads { requests } => {
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
            all_ok &= check(
                "every read answered 200",
                record.statuses.keys().all(|s| *s == 200),
                format!("{:?}", record.statuses),
            );
        }
    }
    if cli.relay {
        all_ok &= report_relay(&pool).await?;
    }
    if !all_ok {
        bail!("a correctness check failed");
    }
    Ok(())
}

/// Earn (60 %, by the checkout service) and use (40 %, by the user) over `users` random users.
fn points_mix(
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

/// How far the relay was behind the log when the load ended, and how long after that the
/// broker had acknowledged every event (the relay's checkpoint at the log head).
async fn report_relay(pool: &sqlx::PgPool) -> anyhow::Result<bool> {
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
