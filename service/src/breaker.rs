//! A circuit breaker for a dependency that may hang rather than fail — a Redis that accepts and
//! never answers (frozen, a full network buffer, a long `KEYS`). Refused connections fail
//! fast by themselves; a hang costs every caller its whole deadline, so after one call that
//! fails or runs past its deadline the breaker **opens**: callers skip the dependency at once
//! and take their fallback. While open, one caller at a time, at most every `probe_every`, is
//! let through as a **probe** (with the same deadline); the first call that succeeds closes
//! it. Opening and closing are logged once each and shown in `breaker_open{dependency}` and
//! `breaker_opened_total{dependency}`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What a caller may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: call, within the deadline.
    Call,
    /// Open, and this caller probes: call, within the deadline.
    Probe,
    /// Open: do not call; take the fallback.
    Skip,
}

/// One dependency's breaker (share it behind an `Arc`).
#[derive(Debug)]
pub struct Breaker {
    dependency: &'static str,
    probe_every_ms: u64,
    /// When it opened (ms on [`clock_ms`]); 0 while closed.
    opened_at: AtomicU64,
    /// When the last probe was let through (ms on [`clock_ms`]).
    probed_at: AtomicU64,
}

/// Milliseconds on a monotonic clock, never 0.
fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX) + 1
}

impl Breaker {
    pub fn new(dependency: &'static str, probe_every: Duration) -> Self {
        metrics::gauge!("breaker_open", "dependency" => dependency).set(0.0);
        Self {
            dependency,
            probe_every_ms: u64::try_from(probe_every.as_millis()).unwrap_or(u64::MAX),
            opened_at: AtomicU64::new(0),
            probed_at: AtomicU64::new(0),
        }
    }

    pub fn is_open(&self) -> bool {
        self.opened_at.load(Ordering::Acquire) != 0
    }

    /// Whether to call now.
    pub fn admit(&self) -> Admit {
        if !self.is_open() {
            return Admit::Call;
        }
        let now = clock_ms();
        let last = self.probed_at.load(Ordering::Acquire);
        if now.saturating_sub(last) >= self.probe_every_ms
            && self
                .probed_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            Admit::Probe
        } else {
            Admit::Skip
        }
    }

    /// A call answered: closes the breaker if it was open.
    pub fn succeeded(&self) {
        let opened = self.opened_at.swap(0, Ordering::AcqRel);
        if opened != 0 {
            metrics::gauge!("breaker_open", "dependency" => self.dependency).set(0.0);
            tracing::info!(
                dependency = self.dependency,
                open_ms = clock_ms().saturating_sub(opened),
                "dependency answers again; calls go to it"
            );
        }
    }

    /// A call failed or ran past its deadline: opens the breaker if it was closed.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        let now = clock_ms();
        if self
            .opened_at
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // The next probe in `probe_every`, not at once.
            self.probed_at.store(now, Ordering::Release);
            metrics::gauge!("breaker_open", "dependency" => self.dependency).set(1.0);
            metrics::counter!("breaker_opened_total", "dependency" => self.dependency).increment(1);
            tracing::warn!(
                dependency = self.dependency,
                error = %error,
                probe_every_ms = self.probe_every_ms,
                "dependency failed or did not answer in time; calls skip it until a probe answers"
            );
        }
    }

    /// Runs `call` within `deadline` unless the breaker says skip; records the outcome.
    /// `None`: skipped, failed, or past the deadline (the caller takes its fallback).
    pub async fn call<T, E: std::fmt::Display>(
        &self,
        deadline: Duration,
        call: impl Future<Output = Result<T, E>>,
    ) -> Option<T> {
        if self.admit() == Admit::Skip {
            return None;
        }
        self.timed(deadline, call).await
    }

    /// Runs `call` within `deadline` (admitted already) and records the outcome: `None` when
    /// it failed or ran past the deadline.
    pub async fn timed<T, E: std::fmt::Display>(
        &self,
        deadline: Duration,
        call: impl Future<Output = Result<T, E>>,
    ) -> Option<T> {
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(value)) => {
                self.succeeded();
                Some(value)
            }
            Ok(Err(e)) => {
                self.failed(&e);
                None
            }
            Err(_) => {
                self.failed(&format_args!("no answer within {deadline:?}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hang_opens_it_callers_skip_one_probe_per_period_and_an_answer_closes_it() {
        let breaker = Breaker::new("test", Duration::from_millis(200));
        assert_eq!(breaker.admit(), Admit::Call);
        let deadline = Duration::from_millis(20);

        let hung = breaker
            .call(deadline, std::future::pending::<Result<(), String>>())
            .await;
        assert_eq!(hung, None);
        assert!(breaker.is_open());
        // Skipped at once: a pending call would never end, so the test would hang.
        assert_eq!(
            breaker
                .call(deadline, std::future::pending::<Result<(), String>>())
                .await,
            None
        );
        assert_eq!(breaker.admit(), Admit::Skip, "no probe before the period");

        tokio::time::sleep(Duration::from_millis(210)).await;
        assert_eq!(breaker.admit(), Admit::Probe);
        assert_eq!(breaker.admit(), Admit::Skip, "one probe per period");
        tokio::time::sleep(Duration::from_millis(210)).await;
        let answered = breaker.call(deadline, async { Ok::<_, String>(7) }).await;
        assert_eq!(answered, Some(7), "the probe answered");
        assert!(!breaker.is_open());
        assert_eq!(breaker.admit(), Admit::Call);
    }

    #[tokio::test]
    async fn an_error_opens_it_like_a_hang() {
        let breaker = Breaker::new("test", Duration::from_secs(1));
        let failed = breaker
            .call(Duration::from_millis(20), async { Err::<(), _>("refused") })
            .await;
        assert_eq!(failed, None);
        assert_eq!(breaker.admit(), Admit::Skip);
    }
}
