//! Servers of a test's own — a Redis, a Kafka broker (tansu) — so a test can stop, kill and
//! restart them without disturbing any other test. Each binds a free port on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    for _ in 0..250 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not open 127.0.0.1:{port}");
}

fn end(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A Redis server without persistence.
#[derive(Debug)]
pub struct PrivateRedis {
    child: Option<Child>,
    pub port: u16,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, "redis-server");
        Self {
            child: Some(child),
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL.
    pub fn stop(&mut self) {
        end(&mut self.child);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A tansu broker run the way `scripts/stack.sh` runs the stack's (same engine and flags), in
/// a directory of its own that survives [`PrivateBroker::kill`] and
/// [`PrivateBroker::restart`], as its store does.
#[derive(Debug)]
pub struct PrivateBroker {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl PrivateBroker {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("e2e-tansu-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut broker = Self {
            child: None,
            port: free_port(),
            dir,
        };
        broker.restart();
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker again over the same store (after [`PrivateBroker::kill`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        let tansu = std::env::var("TANSU_BIN")
            .unwrap_or_else(|_| format!("{}/.cargo/bin/tansu", std::env::var("HOME").unwrap()));
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .unwrap();
        let child = Command::new("chrt")
            .current_dir(&self.dir)
            .args(["--idle", "0", &tansu])
            .args(crate::broker_args(&url))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {tansu}: {e}"));
        self.child = Some(child);
        wait_for_port(self.port, "tansu");
        // As scripts/stack.sh does: the indexes the broker's store lacks (ADR 9).
        let indexes = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/tansu-indexes.sql");
        for _ in 0..100 {
            let indexed = Command::new("sqlite3")
                .current_dir(&self.dir)
                .args([
                    "-cmd",
                    ".timeout 10000",
                    "tansu.db",
                    &format!(".read {indexes}"),
                ])
                .stderr(Stdio::null())
                .status()
                .unwrap();
            if indexed.success() {
                return;
            }
            // The broker has not created its schema yet.
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "could not index the broker's store in {}",
            self.dir.display()
        );
    }

    /// SIGKILL: the broker gets no chance to flush anything.
    pub fn kill(&mut self) {
        end(&mut self.child);
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
