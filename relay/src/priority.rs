//! The relay's CPU priority. Its thread runs under `SCHED_IDLE`: on a saturated machine the
//! command API, the projector and the database come first and Kafka trails during a flash
//! sale (on 2 cores the relay and the broker would otherwise take about a quarter of its
//! orders/s, ADR 9).
//!
//! Idle priority alone has no bound: with both cores busy for long (a fuzzing client beside a
//! load, CI 2026-12-03) the relay went 43 s without publishing. [`Priority`] bounds it: a
//! watcher thread at normal priority gives the relay's thread normal priority once the relay
//! has been behind the log — or a leader not yet sure it is not: starved, its first read
//! timed out — without moving its checkpoint for [`STARVED_AFTER`], and the relay takes idle
//! priority again as soon as it has caught up (or stands by for the leader's lock). librdkafka's threads (which only
//! move bytes) keep normal priority: the relay creates its producer from a thread of normal
//! priority ([`normal_priority_call`]), so a raised relay is never left waiting on a starved
//! acknowledgement.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use thread_priority::unix::{
    set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy, ThreadId,
    ThreadSchedulePolicy,
};

/// How long the relay may stay behind the log without publishing before it is given normal
/// priority.
pub const STARVED_AFTER: Duration = Duration::from_secs(5);
/// How often the watcher looks.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// Where the relay stands, shared between it and its watcher.
#[derive(Debug)]
pub struct Priority {
    started: Instant,
    /// Milliseconds from `started` to the relay's last move (or the moment it fell behind).
    moved: AtomicU64,
    behind: AtomicBool,
    raised: AtomicBool,
    /// The relay's thread, once it runs.
    thread: OnceLock<ThreadId>,
}

/// A scheduling policy for the relay's threads.
#[derive(Debug, Clone, Copy)]
enum Policy {
    Idle,
    Normal,
}

impl Default for Priority {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            moved: AtomicU64::new(0),
            behind: AtomicBool::new(false),
            raised: AtomicBool::new(false),
            thread: OnceLock::new(),
        }
    }
}

impl Priority {
    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The calling thread is the relay's: it takes idle priority.
    pub fn start_idle(&self) {
        let thread = *self.thread.get_or_init(thread_native_id);
        set(thread, Policy::Idle);
    }

    fn set_relay(&self, policy: Policy) {
        if let Some(thread) = self.thread.get() {
            set(*thread, policy);
        }
    }

    /// The relay may have events to publish: it read some, or has not read yet.
    pub fn behind(&self) {
        if !self.behind.swap(true, Ordering::AcqRel) {
            self.moved.store(self.now(), Ordering::Release);
        }
    }

    /// The relay moved its checkpoint.
    pub fn moved(&self) {
        self.moved.store(self.now(), Ordering::Release);
    }

    /// The relay has published everything in the log, or stands by: idle priority again if it
    /// was raised.
    pub fn caught_up(&self) {
        self.behind.store(false, Ordering::Release);
        if self.raised.swap(false, Ordering::AcqRel) {
            self.set_relay(Policy::Idle);
            tracing::info!("relay caught up; back to idle CPU priority");
        }
    }

    /// Gives the relay's thread normal priority for good (it must stop: a saturated machine
    /// never schedules an idle thread, measured 7 s to stop with three busy loops on 2 cores).
    pub fn raise_to_stop(&self) {
        self.raised.store(true, Ordering::Release);
        self.set_relay(Policy::Normal);
    }

    /// One look by the watcher: normal priority for a relay starved while behind.
    fn look(&self) {
        if !self.behind.load(Ordering::Acquire) || self.raised.load(Ordering::Acquire) {
            return;
        }
        let still = self
            .now()
            .saturating_sub(self.moved.load(Ordering::Acquire));
        if still >= u64::try_from(STARVED_AFTER.as_millis()).unwrap_or(u64::MAX)
            && !self.raised.swap(true, Ordering::AcqRel)
        {
            self.set_relay(Policy::Normal);
            metrics::counter!("relay_priority_raised_total").increment(1);
            tracing::warn!(
                still_ms = still,
                "relay has not published for a while though behind the log; normal CPU priority until it catches up"
            );
        }
    }

    /// Watches the relay on a thread of its own at normal priority until `stop` turns true
    /// (or its sender is gone); ends within [`LOOK_EVERY`] of it.
    pub fn watch(
        self: std::sync::Arc<Self>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("relay-watch".into())
            .spawn(move || {
                // Until stopped, or until no one can stop it any more.
                while !*stop.borrow() && stop.has_changed().is_ok() {
                    std::thread::sleep(LOOK_EVERY);
                    self.look();
                }
            })
            .map(drop)
    }
}

/// Sets `policy` on `thread`.
fn set(thread: ThreadId, policy: Policy) {
    let policy_of = match policy {
        Policy::Idle => NormalThreadSchedulePolicy::Idle,
        Policy::Normal => NormalThreadSchedulePolicy::Other,
    };
    if let Err(e) = set_thread_priority_and_policy(
        thread,
        thread_priority::ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(policy_of),
    ) {
        tracing::warn!(error = ?e, ?policy, "the relay keeps its CPU priority");
    }
}

/// Runs `call` on a short-lived thread of normal priority and returns its result: threads
/// that `call` starts (librdkafka's, from its producer) inherit normal priority, not the
/// calling relay's idle one. Fails only when no thread can be started.
pub fn normal_priority_call<T: Send>(call: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("relay-start".into())
            // A thread inherits its starter's policy: this one sets its own first.
            .spawn_scoped(scope, || {
                set(thread_native_id(), Policy::Normal);
                call()
            })?;
        Ok(handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_of(priority: &Priority) -> ThreadSchedulePolicy {
        thread_priority::unix::thread_schedule_policy_param(*priority.thread.get().unwrap())
            .unwrap()
            .0
    }

    const IDLE: ThreadSchedulePolicy =
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    const OTHER: ThreadSchedulePolicy =
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);

    #[test]
    fn a_relay_behind_and_still_is_raised_and_idle_again_once_caught_up() {
        // Started long enough ago that a relay still since its start is starved.
        let priority = std::sync::Arc::new(Priority {
            started: Instant::now().checked_sub(STARVED_AFTER * 2).unwrap(),
            ..Priority::default()
        });
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let relay = std::thread::spawn({
            let priority = priority.clone();
            move || {
                priority.start_idle();
                started_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            }
        });
        started_rx.recv().unwrap();
        assert_eq!(policy_of(&priority), IDLE);

        priority.behind();
        priority.look();
        assert_eq!(policy_of(&priority), IDLE, "not still for long yet");
        // As if the relay last moved at its start.
        priority.moved.store(0, Ordering::Release);
        priority.look();
        assert_eq!(policy_of(&priority), OTHER, "starved while behind");

        priority.caught_up();
        assert_eq!(policy_of(&priority), IDLE, "caught up");
        priority.look();
        assert_eq!(policy_of(&priority), IDLE, "not behind");
        go_tx.send(()).unwrap();
        relay.join().unwrap();
    }

    #[test]
    fn threads_started_by_a_normal_priority_call_from_an_idle_thread_are_normal() {
        let policy = std::thread::spawn(|| {
            Priority::default().start_idle();
            normal_priority_call(|| {
                std::thread::spawn(|| {
                    thread_priority::unix::thread_schedule_policy_param(thread_native_id())
                        .unwrap()
                        .0
                })
                .join()
                .unwrap()
            })
            .unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(policy, OTHER);
    }
}
