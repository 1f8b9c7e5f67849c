//! The relay's CPU priority: its thread, and the threads librdkafka starts from it, run at
//! nice 19 — `SCHED_OTHER` at the lowest weight (15 against a normal thread's 1,024). On a
//! saturated machine the command API, the projector and the database come first and Kafka
//! trails during a flash sale (on 2 cores a relay at normal priority took about a quarter of a
//! sale's orders/s, ADR 9), yet the relay always keeps its share of the CPU, so it trails and
//! is never stopped.
//!
//! Until 2026-12-03 it ran under `SCHED_IDLE`, which gives no such share: with both cores busy
//! for long (the schemathesis fuzzer beside the three-broker test in CI) the relay went 43 s
//! without publishing — its first read of the log timed out waiting for a connection it had
//! no CPU to open (ADR 13).

use thread_priority::unix::{
    set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
    ThreadSchedulePolicy,
};

/// Gives the calling thread nice 19 under `SCHED_OTHER`; the threads it starts inherit both.
/// (Linux keeps a nice value per thread: the rest of the process is untouched.)
pub fn lowest() {
    if let Err(e) = set_thread_priority_and_policy(
        thread_native_id(),
        thread_priority::ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
    ) {
        tracing::warn!(error = ?e, "the relay runs at normal priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's nice value, from `/proc/thread-self/stat` (field 19).
    fn own_nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // pid (comm) state …: the name may hold spaces; it ends at the last ')'.
        let (_, rest) = stat.rsplit_once(')').unwrap();
        rest.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn the_relay_thread_and_the_threads_it_starts_run_at_nice_19_and_the_rest_do_not() {
        let before = own_nice();
        let (relay, started) = std::thread::spawn(|| {
            lowest();
            let policy = thread_priority::unix::thread_schedule_policy_param(thread_native_id())
                .unwrap()
                .0;
            let started = std::thread::spawn(own_nice).join().unwrap();
            ((policy, own_nice()), started)
        })
        .join()
        .unwrap();
        assert_eq!(
            relay,
            (
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
                19
            )
        );
        assert_eq!(started, 19, "librdkafka's threads start from the relay's");
        assert_eq!(own_nice(), before, "only the relay's threads");
    }
}
