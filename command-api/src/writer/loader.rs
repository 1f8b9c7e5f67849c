//! Cold loads of aggregates, batched: every load waiting at the moment in two queries.

use std::sync::Arc;

use eventlog::{EventLog, Snapshot};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::*;

/// A cold aggregate's stored state: its snapshot (if any) and the events after it.
pub(super) type Stored = (Option<Snapshot>, Vec<eventlog::RecordedEvent>);

pub(super) struct LoadJob {
    id: Uuid,
    reply: oneshot::Sender<Result<Stored, String>>,
}

/// Loads cold aggregates for the writers of one aggregate type, batching every load waiting
/// at the moment into two queries (snapshots, then the events after them): under a load
/// spread over many aggregates — points over 100,000 users — cold loads cost a few queries
/// per batch instead of two per aggregate.
#[derive(Debug, Clone)]
pub(super) struct Loader {
    tx: mpsc::Sender<LoadJob>,
}

/// Most aggregates loaded per batch.
pub(super) const MAX_LOAD_BATCH: usize = 512;
/// Load batches in flight at once.
pub(super) const LOADS_IN_FLIGHT: usize = 2;

impl Loader {
    pub(super) fn start(log: EventLog) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run_loader(log, rx));
        Self { tx }
    }

    pub(super) async fn load(&self, id: Uuid) -> Result<Stored, WriteError> {
        let stopped = || WriteError::Unavailable("loader stopped".into());
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(LoadJob { id, reply })
            .await
            .map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(WriteError::Unavailable)
    }
}

pub(super) async fn run_loader(log: EventLog, mut rx: mpsc::Receiver<LoadJob>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(LOADS_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Whatever queued while waiting for a slot joins this batch.
        let mut jobs = vec![first];
        while jobs.len() < MAX_LOAD_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let log = log.clone();
        tokio::spawn(async move {
            let mut ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
            ids.sort_unstable();
            ids.dedup();
            match log.load_streams(&ids, STATE_FORMAT).await {
                Ok(loaded) => {
                    for job in jobs {
                        // Cloned: two loads of one id in a batch (a writer retired and its
                        // successor started) each get the stream.
                        let stored = loaded.get(&job.id).cloned().unwrap_or_default();
                        let _ = job.reply.send(Ok(stored));
                    }
                }
                Err(e) => {
                    for job in jobs {
                        let _ = job.reply.send(Err(e.to_string()));
                    }
                }
            }
            drop(slot);
        });
    }
}
