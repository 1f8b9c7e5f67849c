//! Several command-api instances as one (ADR 15). Each registers in etcd under a lease
//! ([`membership`]); each aggregate is owned by one live member, by rendezvous hashing over
//! the members ([`ownership`]); a command that reaches another member is forwarded to the owner
//! over gRPC ([`grpc`]), and the writers decide only for aggregates their member owns, so one
//! writer per aggregate holds across the cluster. The event log's expected version stays the
//! final guard during a handover.

mod grpc;
mod membership;
pub mod ownership;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use grpc::{proto, Door, Peers};
pub use ownership::{Member, Ownership, Route};

use crate::settings::ClusterSettings;

/// This member: its view of who owns what, and its clients to the others.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub ownership: Ownership,
    pub peers: Arc<Peers>,
}

impl Cluster {
    pub fn new(settings: &ClusterSettings) -> Self {
        Self {
            ownership: Ownership::new(&settings.node, Duration::from_millis(settings.handover_ms)),
            peers: Arc::new(Peers::new(Duration::from_millis(
                settings.forward_timeout_ms,
            ))),
        }
    }

    /// Keeps this member registered (its gRPC door at `address`) until `stop`, then leaves.
    pub fn join(
        &self,
        settings: ClusterSettings,
        address: String,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(membership::run(
            settings,
            address,
            self.ownership.clone(),
            stop,
        ))
    }
}
