//! Apache Kafka of a test's own: one node, or a cluster of three.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use super::{end, free_port};

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
