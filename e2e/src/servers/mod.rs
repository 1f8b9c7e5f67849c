//! Servers of a test's own — a Redis, a PostgreSQL, an Apache Kafka broker or a three-node
//! Kafka cluster — so a test can stop, kill and restart them without disturbing any other
//! test. Each binds free ports on 127.0.0.1. What they share is here: ports, ending a child,
//! and freezing processes (SIGSTOP) until a guard is dropped.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod kafka;
mod postgres;
mod redis;

pub use kafka::{KafkaCluster, PrivateBroker};
pub use postgres::PrivatePostgres;
pub use redis::PrivateRedis;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn wait_for_port(port: u16, what: &str) {
    for _ in 0..250 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not open 127.0.0.1:{port}");
}

pub(crate) fn end(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Processes stopped with SIGSTOP, resumed (SIGCONT, in the reverse order) when dropped —
/// also when the test fails meanwhile, so no server is left frozen.
#[derive(Debug)]
#[must_use = "the processes resume when this is dropped"]
pub struct Frozen {
    pids: Vec<u32>,
}

impl Frozen {
    pub(crate) fn stop(pids: Vec<u32>) -> Self {
        for pid in &pids {
            // A process that ended meanwhile (a backend) has nothing to stop.
            let _ = signal(*pid, "-STOP");
        }
        Self { pids }
    }

    /// SIGCONT now (as dropping it does).
    pub fn thaw(self) {}
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for pid in self.pids.iter().rev() {
            let _ = signal(*pid, "-CONT");
        }
    }
}

/// Sends `signal` (`-STOP`, `-CONT`) to `pid`; whether it was delivered.
pub(crate) fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The processes whose parent is `parent`, from `/proc/*/stat`.
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …: the name may hold spaces and parentheses; it ends at the
        // last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}
