//! What the limiter's in-process part costs as distinct keys grow (ADR 11): 1,000,000 distinct
//! keys a minute through `count_strict` on a limiter without Redis (the path a Redis outage
//! takes; the "seen" keys of the fast path are kept the same way), timed per 100,000, with the
//! process's resident memory. `cargo run --release -p auth --example limiter-keys`
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use auth::limit::{LimitSettings, RateLimiter};

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let limiter = RateLimiter::in_process(LimitSettings::default());
    println!("keys so far | ns per check (last 100,000) | refused | resident MiB");
    let mut refused = 0;
    for block in 0..10 {
        let started = Instant::now();
        for n in block * 100_000..(block + 1) * 100_000 {
            let key = format!("login:address:{n}");
            if !limiter.count_strict(&key, 30, 60).await.allowed {
                refused += 1;
            }
        }
        let ns = started.elapsed().as_nanos() as f64 / 100_000.0;
        println!(
            "{:>11} | {ns:>26.0} | {refused:>7} | {:>12.1}",
            (block + 1) * 100_000,
            resident_mib()
        );
    }
}
