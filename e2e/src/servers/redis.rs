//! A Redis of a test's own.

use std::process::{Child, Command, Stdio};

use super::{end, free_port, wait_for_port, Frozen};

/// A Redis server without persistence.
#[derive(Debug)]
pub struct PrivateRedis {
    child: Option<Child>,
    pub port: u16,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let port = free_port();
        Self {
            child: Some(serve(port)),
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

    /// SIGKILL, then a new server on the same port (empty: Redis keeps no data here).
    pub fn restart(&mut self) {
        self.stop();
        self.child = Some(serve(self.port));
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

/// A `redis-server` on `port`, once it accepts connections.
fn serve(port: u16) -> Child {
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, "redis-server");
    child
}
