//! What the writers of one aggregate type share: the log, the committer, the cold-load
//! batcher, the settings, the registry of running writers, and the queue-depth gauge.

use std::sync::atomic::AtomicU64;

use domain::Decide;
use eventlog::EventLog;
use uuid::Uuid;

use super::loader::Loader;
use super::{Committer, Registry};
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
}

impl<A: Decide> Inner<A> {
    pub(super) fn forget(&self, id: Uuid, generation: u64) {
        let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        if writers.get(&id).is_some_and(|(g, _)| *g == generation) {
            writers.remove(&id);
        }
    }
}
