//! Several command-api instances as one (ADR 15), for the cluster tests: an etcd of the test's
//! own, instances started on a [`System`]'s settings, and the nginx gateway in front of them
//! (`scripts/gateway.sh`, as `./dev run --instances N` runs it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::servers::{end, free_port, signal, wait_for_port, Frozen};
use crate::{System, COMMAND_API};

/// An etcd server of the test's own (a single member), on free ports, with its data in a
/// temporary directory: stopped and started again with its data.
#[derive(Debug)]
pub struct PrivateEtcd {
    child: Option<Child>,
    dir: PathBuf,
    pub port: u16,
    peer_port: u16,
}

impl PrivateEtcd {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("e2e-etcd-{}", uuid::Uuid::new_v4().simple()));
        let mut etcd = Self {
            child: None,
            dir,
            port: free_port(),
            peer_port: free_port(),
        };
        etcd.run();
        etcd
    }

    fn run(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .args(["--name", "e2e", "--data-dir"])
            .arg(self.dir.join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("e2e={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (scripts/stack.sh install puts it there)");
        wait_for_port(self.port, "etcd");
        self.child = Some(child);
    }

    /// The endpoint the instances are given (`cluster.etcd`).
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL: gone, data kept.
    pub fn stop(&mut self) {
        end(&mut self.child);
    }

    /// Started again on its data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        end(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The names of the members registered in `etcd` now (under the default prefix).
pub async fn registered(etcd: &PrivateEtcd) -> Vec<String> {
    const PREFIX: &str = "/promo/command-api/members/";
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    let listed = client
        .get(PREFIX, Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .unwrap();
    listed
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok()?.strip_prefix(PREFIX).map(str::to_owned))
        .collect()
}

/// The settings that make a [`System`]'s command-api member `node` of the cluster in `etcd`,
/// with a short lease (2 s) so a test sees a failover in seconds.
pub fn member_env(etcd: &PrivateEtcd, node: &str) -> Vec<(String, String)> {
    vec![
        ("APP_CLUSTER__ETCD".into(), etcd.endpoint()),
        ("APP_CLUSTER__NODE".into(), node.into()),
        ("APP_CLUSTER__LEASE_TTL_SECONDS".into(), "2".into()),
        ("APP_CLUSTER__HANDOVER_MS".into(), "500".into()),
    ]
}

/// One command-api instance: the system's own (node `a`) or one started beside it.
#[derive(Debug)]
pub struct Instance {
    pub node: String,
    /// Its HTTP API.
    pub url: String,
    child: Option<Child>,
}

impl Instance {
    /// Another instance of `system`'s command API, member `node` of the same cluster.
    pub async fn start(system: &System, node: &str) -> Self {
        let (child, port) = system
            .spawn(COMMAND_API, &[("APP_CLUSTER__NODE", node)])
            .await;
        Self {
            node: node.into(),
            url: format!("http://127.0.0.1:{}", port.expect("command-api port")),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no shutdown code runs, its lease expires by itself.
    pub fn kill(&mut self) {
        end(&mut self.child);
    }

    /// SIGSTOP until the guard is dropped.
    pub fn freeze(&self) -> Frozen {
        Frozen::stop(vec![self.pid().expect("the instance runs")])
    }

    /// SIGTERM, and the time it took to exit.
    pub fn terminate(&mut self) -> Duration {
        let mut child = self.child.take().expect("the instance runs");
        let sent = Instant::now();
        signal(child.id(), "-TERM");
        while sent.elapsed() < Duration::from_secs(10) {
            if child.try_wait().unwrap().is_some() {
                return sent.elapsed();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("instance {} did not stop within 10 s of SIGTERM", self.node);
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        end(&mut self.child);
    }
}

/// The nginx gateway (`scripts/gateway.sh`) in front of command APIs and a query API.
#[derive(Debug)]
pub struct Gateway {
    child: Option<Child>,
    dir: PathBuf,
    pub url: String,
}

impl Gateway {
    pub fn start(query: &str, commands: &[&str]) -> Self {
        let port_of = |url: &str| {
            url.rsplit(':')
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_owned()
        };
        let dir =
            std::env::temp_dir().join(format!("e2e-gateway-{}", uuid::Uuid::new_v4().simple()));
        let port = free_port();
        let script = crate::process::repo_root().join("scripts/gateway.sh");
        let child = Command::new(script)
            .arg("run")
            .arg(&dir)
            .arg(port.to_string())
            .arg(port_of(query))
            .args(commands.iter().map(|c| port_of(c)))
            .stdout(Stdio::null())
            .spawn()
            .expect("nginx (scripts/stack.sh install puts it there)");
        wait_for_port(port, "the gateway (nginx)");
        Self {
            child: Some(child),
            dir,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // SIGTERM: nginx's master stops its worker and leaves (SIGKILL would orphan it).
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "-TERM");
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The members `url`'s instance counts now (its `cluster_members` gauge), 0 when it does not
/// answer.
pub async fn members_seen(url: &str) -> u64 {
    let Ok(response) = reqwest::get(format!("{url}/metrics")).await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    crate::Scrape::parse(&text).sum("cluster_members", &[]) as u64
}

/// Waits until every instance at `urls` counts `n` members (30 s at most).
pub async fn wait_for_members(urls: &[&str], n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut all = true;
        for url in urls {
            all &= members_seen(url).await == n;
        }
        if all {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the instances did not all see {n} members"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
