//! Servers of a test's own — a Redis, a PostgreSQL, an Apache Kafka broker or a three-node
//! Kafka cluster — so a test can stop, kill and restart them without disturbing any other
//! test. Each binds free ports on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::path::PathBuf;
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

    /// SIGSTOP: the server keeps its port and accepts connections (the kernel does), and
    /// answers nothing — a hung Redis, not one that is down — until the guard is dropped.
    pub fn freeze(&self) -> Frozen {
        Frozen::stop(vec![self.child.as_ref().expect("redis runs").id()])
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One Apache Kafka node (KRaft, broker and controller in one JVM) run by
/// `scripts/kafka/node.sh` — the script the stack runs its node with — over a directory of its
/// own that survives [`KafkaNode::kill`], as a broker's disk does.
#[derive(Debug)]
struct KafkaNode {
    child: Option<Child>,
    node_id: u32,
    port: u16,
    controller_port: u16,
    dir: PathBuf,
}

impl KafkaNode {
    fn new(root: &std::path::Path, node_id: u32) -> Self {
        Self {
            child: None,
            node_id,
            port: free_port(),
            controller_port: free_port(),
            dir: root.join(format!("node-{node_id}")),
        }
    }

    fn voter(&self) -> String {
        format!("{}@127.0.0.1:{}", self.node_id, self.controller_port)
    }

    /// Starts the JVM (formatting the store on first use); `voters` for a cluster's node.
    fn spawn(&mut self, voters: Option<&str>) {
        assert!(self.child.is_none(), "node {} is running", self.node_id);
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka/node.sh");
        let mut command = Command::new(script);
        command
            .arg("run")
            .arg("--dir")
            .arg(&self.dir)
            .args(["--port", &self.port.to_string()])
            .args(["--controller-port", &self.controller_port.to_string()])
            .args(["--node-id", &self.node_id.to_string()]);
        if let Some(voters) = voters {
            command.args(["--voters", voters]);
        }
        let child = command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {script}: {e}"));
        self.child = Some(child);
    }

    /// SIGKILL: the JVM gets no chance to flush or hand anything over.
    fn kill(&mut self) {
        end(&mut self.child);
    }
}

/// Waits until the metadata of `brokers` lists `count` live brokers (a JVM's start takes
/// seconds; a port that is open does not yet mean a registered broker).
fn wait_for_brokers(brokers: &str, count: usize, logs: &std::path::Path) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while std::time::Instant::now() < deadline {
        let client: Result<BaseConsumer, _> = messaging::client_config(brokers).create();
        if let Ok(client) = client {
            if let Ok(metadata) = client.fetch_metadata(None, Duration::from_secs(2)) {
                if metadata.brokers().len() >= count {
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "{count} Kafka broker(s) at {brokers} did not come up; logs under {}",
        logs.display()
    );
}

/// A single-node Apache Kafka of a test's own, configured as the stack's, so a test can kill
/// it (-9) and start it again over the same store.
#[derive(Debug)]
pub struct PrivateBroker {
    node: KafkaNode,
    dir: PathBuf,
}

impl PrivateBroker {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("e2e-kafka-{}", uuid::Uuid::new_v4().simple()));
        let mut broker = Self {
            node: KafkaNode::new(&dir, 1),
            dir,
        };
        broker.restart();
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.node.port)
    }

    /// Starts the broker again over the same store (after [`PrivateBroker::kill`]) and waits
    /// until it serves metadata.
    pub fn restart(&mut self) {
        self.node.spawn(None);
        wait_for_brokers(&self.brokers(), 1, &self.dir);
    }

    /// SIGKILL: the broker gets no chance to flush anything.
    pub fn kill(&mut self) {
        self.node.kill();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cluster of three Apache Kafka nodes of a test's own (each broker and controller, a static
/// quorum), topics replicated three times with `min.insync.replicas=2`: one node may die.
#[derive(Debug)]
pub struct KafkaCluster {
    nodes: Vec<KafkaNode>,
    voters: String,
    dir: PathBuf,
}

impl KafkaCluster {
    pub fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("e2e-kafka3-{}", uuid::Uuid::new_v4().simple()));
        let nodes: Vec<KafkaNode> = (1..=3).map(|id| KafkaNode::new(&dir, id)).collect();
        let voters = nodes
            .iter()
            .map(KafkaNode::voter)
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self { nodes, voters, dir };
        for node in &mut cluster.nodes {
            node.spawn(Some(&cluster.voters));
        }
        wait_for_brokers(&cluster.brokers(), 3, &cluster.dir);
        cluster
    }

    /// Every node's address, as bootstrap servers.
    pub fn brokers(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILL of node `index` (0-based).
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Starts node `index` again over its store and waits until all three serve.
    pub fn restart(&mut self, index: usize) {
        self.nodes[index].spawn(Some(&self.voters));
        wait_for_brokers(&self.brokers(), 3, &self.dir);
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
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
fn children_of(parent: u32) -> Vec<u32> {
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
