//! What the writers of one aggregate type share: the log, the committer, the cold-load
//! batcher, the settings, the registry of running writers, and the queue-depth gauge.

use std::sync::atomic::AtomicU64;

use domain::Decide;
use eventlog::EventLog;
use uuid::Uuid;

use super::loader::Loader;
use super::{Committer, Registry};
use crate::cluster::Ownership;
use crate::settings::WriterSettings;

pub(super) struct Inner<A: Decide> {
    pub(super) log: EventLog,
    pub(super) committer: Committer,
    pub(super) loader: Loader,
    pub(super) settings: WriterSettings,
    pub(super) writers: Registry<A>,
    pub(super) generation: AtomicU64,
    /// `writer_queue_depth{aggregate}`: jobs (commands and reads) sent and not yet taken.
    pub(super) queued: metrics::Gauge,
    /// In a cluster, who owns what: a writer decides only while its instance owns its
    /// aggregate (ADR 15).
    pub(super) fence: Option<Ownership>,
}

impl<A: Decide> Inner<A> {
    /// The cluster's member-list epoch (0 alone): state loaded under another is reloaded.
    pub(super) fn epoch(&self) -> u64 {
        self.fence.as_ref().map_or(0, Ownership::epoch)
    }

    /// Whether this instance decides for aggregate `id` now.
    pub(super) fn decides(&self, id: Uuid) -> bool {
        self.fence
            .as_ref()
            .is_none_or(|ownership| ownership.owns(id))
    }

    pub(super) fn forget(&self, id: Uuid, generation: u64) {
        let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        if writers.get(&id).is_some_and(|(g, _)| *g == generation) {
            writers.remove(&id);
        }
    }
}
