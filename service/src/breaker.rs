//! A circuit breaker for a dependency that may hang rather than fail — a Redis or PostgreSQL
//! that accepts and never answers (frozen, a full network buffer, a long `KEYS`). A refused
//! connection fails fast by itself; a hang costs every caller its whole deadline. So after one
//! call that fails or runs past its deadline the breaker **opens**: callers skip the dependency
//! at once and take their fallback. While open, one call per `probe_every` is let through as a
//! **probe** (with the caller's deadline); only a probe that answers closes it — a call let
//! through before it opened and answering late does not. Opening and closing are logged once
//! each and shown in `breaker_open{dependency}` and `breaker_opened_total{dependency}`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// What a caller may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: call, within the deadline.
    Call,
    /// Open, and this caller probes: call, within the deadline; an answer closes it.
    Probe,
    /// Open: do not call; take the fallback.
    Skip,
}

/// One dependency's breaker (share it behind an `Arc`).
#[derive(Debug)]
pub struct Breaker {
    dependency: std::borrow::Cow<'static, str>,
    probe_every_ms: u64,
    started: Instant,
    /// When it opened (ms since `started`, plus one); 0 while closed.
    opened_at: AtomicU64,
    /// When the last probe was let through (ms since `started`, plus one).
    probed_at: AtomicU64,
}

impl Breaker {
    /// A breaker for `dependency` (its name in logs and metrics: `"redis"`, `"peer:b"`).
    pub fn new(
        dependency: impl Into<std::borrow::Cow<'static, str>>,
        probe_every: Duration,
    ) -> Self {
        let dependency = dependency.into();
        metrics::gauge!("breaker_open", "dependency" => dependency.clone()).set(0.0);
        Self {
            dependency,
            probe_every_ms: u64::try_from(probe_every.as_millis()).unwrap_or(u64::MAX),
            started: Instant::now(),
            opened_at: AtomicU64::new(0),
            probed_at: AtomicU64::new(0),
        }
    }

    /// Milliseconds since the breaker was made, never 0.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    pub fn is_open(&self) -> bool {
        self.opened_at.load(Ordering::Acquire) != 0
    }

    /// The gauge, from the state (not from the transition: two racing ones may land in any
    /// order).
    fn show(&self) {
        let open = if self.is_open() { 1.0 } else { 0.0 };
        metrics::gauge!("breaker_open", "dependency" => self.dependency.clone()).set(open);
    }

    /// Whether to call now.
    pub fn admit(&self) -> Admit {
        if !self.is_open() {
            return Admit::Call;
        }
        let now = self.now_ms();
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

    /// A probe answered: closes the breaker.
    pub fn probe_answered(&self) {
        let opened = self.opened_at.swap(0, Ordering::AcqRel);
        if opened != 0 {
            self.show();
            tracing::info!(
                dependency = %self.dependency,
                open_ms = self.now_ms().saturating_sub(opened),
                "dependency answers again; calls go to it"
            );
        }
    }

    /// A call failed or ran past its deadline: opens the breaker if it was closed.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        let now = self.now_ms();
        // Opening: the first probe a period from now, not at once. Failures while open (a
        // probe's, or a caller's that was skipped) leave the probe's time alone: under steady
        // load they would otherwise put it off for ever.
        if !self.is_open() {
            self.probed_at.store(now, Ordering::Release);
        }
        if self
            .opened_at
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.show();
            metrics::counter!("breaker_opened_total", "dependency" => self.dependency.clone())
                .increment(1);
            tracing::warn!(
                dependency = %self.dependency,
                error = %error,
                probe_every_ms = self.probe_every_ms,
                "dependency failed or did not answer in time; calls skip it until a probe answers"
            );
        }
    }

    /// Runs `call`, admitted as `admitted`, within `deadline` and records the outcome: `None`
    /// when it failed or ran past the deadline.
    pub async fn timed<T, E: std::fmt::Display>(
        &self,
        admitted: Admit,
        deadline: Duration,
        call: impl Future<Output = Result<T, E>>,
    ) -> Option<T> {
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(value)) => {
                if admitted == Admit::Probe {
                    self.probe_answered();
                }
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

    impl Breaker {
        /// Runs `call` within `deadline` unless the breaker says skip; records the outcome.
        /// `None`: skipped, failed, or past the deadline (the caller takes its fallback).
        async fn call<T, E: std::fmt::Display>(
            &self,
            deadline: Duration,
            call: impl Future<Output = Result<T, E>>,
        ) -> Option<T> {
            match self.admit() {
                Admit::Skip => None,
                admitted => self.timed(admitted, deadline, call).await,
            }
        }
    }

    const DEADLINE: Duration = Duration::from_millis(20);

    #[tokio::test(start_paused = true)]
    async fn a_hang_opens_it_callers_skip_one_probe_per_period_and_an_answer_closes_it() {
        let breaker = Breaker::new("test", Duration::from_secs(1));
        assert_eq!(breaker.admit(), Admit::Call);
        let hung = breaker
            .call(DEADLINE, std::future::pending::<Result<(), String>>())
            .await;
        assert_eq!(hung, None);
        assert!(breaker.is_open());
        // Skipped at once: a pending call would never end, so the test would hang.
        assert_eq!(
            breaker
                .call(DEADLINE, std::future::pending::<Result<(), String>>())
                .await,
            None
        );
        assert_eq!(breaker.admit(), Admit::Skip, "no probe before the period");

        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(breaker.admit(), Admit::Probe);
        assert_eq!(breaker.admit(), Admit::Skip, "one probe per period");
        tokio::time::advance(Duration::from_secs(1)).await;
        let answered = breaker.call(DEADLINE, async { Ok::<_, String>(7) }).await;
        assert_eq!(answered, Some(7), "the probe answered");
        assert!(!breaker.is_open());
        assert_eq!(breaker.admit(), Admit::Call);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_while_open_do_not_put_the_probe_off() {
        let breaker = Breaker::new("test", Duration::from_secs(1));
        breaker.failed(&"hung");
        for _ in 0..10 {
            tokio::time::advance(Duration::from_millis(100)).await;
            breaker.failed(&"skipped caller");
        }
        assert_eq!(breaker.admit(), Admit::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_opens_it_like_a_hang_and_only_a_probe_closes_it() {
        let breaker = Breaker::new("test", Duration::from_secs(1));
        // Let through while closed, answering after another call opened it.
        let admitted = breaker.admit();
        assert_eq!(admitted, Admit::Call);
        let failed = breaker
            .call(DEADLINE, async { Err::<(), _>("refused") })
            .await;
        assert_eq!(failed, None);
        assert_eq!(breaker.admit(), Admit::Skip);
        let late = breaker
            .timed(admitted, DEADLINE, async { Ok::<_, String>(()) })
            .await;
        assert_eq!(late, Some(()));
        assert!(
            breaker.is_open(),
            "a call admitted before it opened does not close it"
        );
    }
}
