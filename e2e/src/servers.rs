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

/// A PostgreSQL cluster of the test's own (Debian's binaries), so a test can crash and restart
/// it: `initdb` into a temporary directory, a free port, role and database `promo`.
#[derive(Debug)]
pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root (PostgreSQL refuses root).
fn as_postgres(program: &std::path::Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("PostgreSQL's binaries under /usr/lib/postgresql");
        let dir = std::env::temp_dir().join(format!("e2e-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status();
        let data = dir.join("data");
        let initdb = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--auth=trust",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(initdb.success(), "initdb");
        let port = free_port();
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             max_connections = 200\nshared_buffers = 128MB\n",
            dir.display()
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut file, conf.as_bytes()).unwrap();
        let postgres = Self { port, dir, bin };
        postgres.pg_ctl(&["start", "-w", "-t", "60"]);
        let psql = as_postgres(&postgres.bin.join("psql"))
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-c", "CREATE ROLE promo LOGIN SUPERUSER PASSWORD 'promo'"])
            .args(["-c", "CREATE DATABASE promo OWNER promo"])
            .status()
            .unwrap();
        assert!(psql.success(), "creating role and database");
        postgres
    }

    fn pg_ctl(&self, args: &[&str]) {
        let status = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl {args:?}");
    }

    /// The admin URL of the cluster's `promo` database.
    pub fn url(&self) -> String {
        format!("postgres://promo:promo@127.0.0.1:{}/promo", self.port)
    }

    /// A crash and a start: the server stops without a checkpoint (`immediate`: recovery
    /// replays the WAL on start), every connection is cut.
    pub fn crash_and_restart(&self) {
        self.pg_ctl(&["restart", "-m", "immediate", "-w", "-t", "60"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["stop", "-m", "immediate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PrivateRedis {
    /// SIGKILL, then a new server on the same port (empty: Redis keeps no data here).
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(self.port, "redis-server");
        self.child = Some(child);
    }
}
