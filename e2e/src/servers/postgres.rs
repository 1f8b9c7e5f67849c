//! A PostgreSQL of a test's own.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{children_of, free_port, Frozen};

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

    /// SIGSTOP to the server, then to every process it started (none can start another
    /// meanwhile): connections stay open and nothing answers — a hung database, not one that
    /// is down — until the guard is dropped.
    pub fn freeze(&self) -> Frozen {
        let postmaster = self.postmaster();
        let mut pids = vec![postmaster];
        pids.extend(children_of(postmaster));
        Frozen::stop(pids)
    }

    /// The server's process id, from the first line of `postmaster.pid`.
    fn postmaster(&self) -> u32 {
        let file = self.dir.join("data").join("postmaster.pid");
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}", file.display()))
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
