//! Driving the load: closed or open loop over HTTP, the latencies and answers it records, the
//! freshness sampler, and the printed report and verdicts.

use serde_json::json;
use std::collections::BTreeMap;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::Value;

use crate::Cli;

/// The latest accepted write and when it was answered: what the freshness sampler follows.
pub(crate) type Latest = Arc<Mutex<Option<(Value, Instant)>>>;

/// Latencies (µs) and answers by status of one run.
#[derive(Default)]
pub(crate) struct Record {
    pub(crate) latencies: Vec<u32>,
    /// Per answer: when it came (ms since the run started) and its latency (µs).
    pub(crate) timeline: Vec<(u32, u32)>,
    pub(crate) statuses: BTreeMap<u16, usize>,
    pub(crate) bodies: Vec<Value>,
}

pub(crate) struct Run {
    pub(crate) client: reqwest::Client,
    pub(crate) cli: Arc<Cli>,
}

pub(crate) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

impl Run {
    pub(crate) async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
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
    pub(crate) async fn get(&self, path: &str, min_position: Option<i64>) -> anyhow::Result<Value> {
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
    pub(crate) async fn drive(
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
    pub(crate) async fn drive_as_told(
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
pub(crate) async fn send(request: reqwest::RequestBuilder, keep: fn(u16) -> bool) -> (u16, Value) {
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
    pub(crate) fn add(
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
        self.timeline
            .push((started.elapsed().as_millis() as u32, micros));
        *self.statuses.entry(status).or_default() += 1;
        if keep(status) {
            if let Some(Ok(mut slot)) = freshness.map(|latest| latest.lock()) {
                *slot = Some((body.clone(), Instant::now()));
            }
            self.bodies.push(body);
        }
    }

    pub(crate) fn merge(&mut self, other: Record) {
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

/// Whether reports also print answers, p50, p99 and max second by second (`--timeline`).
pub(crate) fn show_timeline(on: bool) {
    let _ = TIMELINE.set(on);
}

pub(crate) fn print_timeline(timeline: &[(u32, u32)]) {
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

/// The slices a long run's answers are counted in.
const SLICE: Duration = Duration::from_secs(10);

/// Answers per second in each whole slice of a long run, and the last whole slice against the
/// first: whether the rate held as the run went on (more distinct users seen, larger tables).
fn print_slices(timeline: &[(u32, u32)]) {
    let slice_ms = SLICE.as_millis() as u32;
    let last = timeline
        .iter()
        .map(|(at, _)| at / slice_ms)
        .max()
        .unwrap_or(0) as usize;
    // Every slice, a silent one too (a stall shows as 0).
    let mut slices = vec![0usize; last + 1];
    for &(at, _) in timeline {
        slices[(at / slice_ms) as usize] += 1;
    }
    // The last slice is cut short by the end of the load.
    let whole: Vec<f64> = slices[..last]
        .iter()
        .map(|answers| *answers as f64 / SLICE.as_secs_f64())
        .collect();
    let (Some(first), Some(last)) = (whole.first(), whole.last()) else {
        return;
    };
    println!(
        "  answers/s by {} s slice: {}  (last whole slice {:+.1} % against the first)",
        SLICE.as_secs(),
        whole
            .iter()
            .map(|rate| format!("{rate:.0}"))
            .collect::<Vec<_>>()
            .join(" "),
        (last / first - 1.0) * 100.0
    );
}

pub(crate) fn report(
    label: &str,
    scenario: &str,
    record: &mut Record,
    elapsed: Duration,
    success: u16,
) -> Value {
    if TIMELINE.get().copied().unwrap_or(false) {
        print_timeline(&record.timeline);
    }
    if elapsed >= SLICE * 3 {
        print_slices(&record.timeline);
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

pub(crate) fn check(name: &str, ok: bool, detail: String) -> bool {
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
pub(crate) fn spawn_freshness(
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
