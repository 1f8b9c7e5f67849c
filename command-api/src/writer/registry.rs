//! The writers of one aggregate type: one task per aggregate, started on first use and
//! dropped when idle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use domain::Decide;
use eventlog::EventLog;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::inner::Inner;
use super::loader::Loader;
use super::task::Writer;
use super::*;
use crate::cluster::Ownership;
use crate::settings::WriterSettings;

/// The writers of one aggregate type, created on first use and dropped when idle.
pub struct Aggregates<A: Decide> {
    pub(super) inner: Arc<Inner<A>>,
}

impl<A: Decide> std::fmt::Debug for Aggregates<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregates")
            .field("category", &A::CATEGORY)
            .finish()
    }
}

impl<A: Decide> std::fmt::Debug for Request<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("key", &self.key)
            .field("status", &self.status)
            .finish()
    }
}

impl<A: Decide> Clone for Aggregates<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<A> Aggregates<A>
where
    A: Decide + Serialize + DeserializeOwned,
    A::Command: Clone,
{
    /// The writers over `log`; with a `fence`, each decides only while this instance owns
    /// its aggregate.
    pub fn new(
        log: EventLog,
        committer: Committer,
        settings: WriterSettings,
        fence: Option<Ownership>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                loader: Loader::start(log.clone()),
                log,
                committer,
                settings,
                writers: Mutex::new(HashMap::new()),
                generation: AtomicU64::new(0),
                queued: metrics::gauge!("writer_queue_depth", "aggregate" => A::CATEGORY),
                fence,
            }),
        }
    }

    /// Decides and appends a command on aggregate `id`.
    pub async fn execute(&self, id: Uuid, request: Request<A>) -> Result<Committed, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.send(id, Job::Command(Box::new(request), reply))?;
        let answered = async {
            answer
                .await
                .map_err(|_| WriteError::Unavailable("aggregate writer stopped".into()))?
        };
        // Queue, decision and commit as one span of the request's trace, when traces are on.
        if service::telemetry::enabled() {
            use tracing::Instrument;
            let span = tracing::info_span!("writer.execute", aggregate = A::CATEGORY, stream = %id);
            answered.instrument(span).await
        } else {
            answered.await
        }
    }

    /// Reads from aggregate `id`'s committed state, in its writer (so it sees every command
    /// answered before).
    pub async fn read<R: Send + 'static>(
        &self,
        id: Uuid,
        f: impl FnOnce(&A) -> R + Send + 'static,
    ) -> Result<R, WriteError> {
        let (reply, answer) = oneshot::channel();
        let job: Read<A> = Box::new(move |state| {
            let _ = reply.send(state.map(f));
        });
        self.send(id, Job::Read(job))?;
        answer
            .await
            .map_err(|_| WriteError::Unavailable("aggregate writer stopped".into()))?
    }

    fn send(&self, id: Uuid, mut job: Job<A>) -> Result<(), WriteError> {
        // A writer that went idle closes its queue; the next command starts a new one.
        for _ in 0..3 {
            let (generation, sender) = self.writer_for(id)?;
            // Counted before the send, so the writer never takes a job not yet counted.
            self.inner.queued.increment(1.0);
            match sender.try_send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.inner.queued.decrement(1.0);
                    return Err(WriteError::Overloaded);
                }
                Err(mpsc::error::TrySendError::Closed(returned)) => {
                    self.inner.queued.decrement(1.0);
                    self.inner.forget(id, generation);
                    job = returned;
                }
            }
        }
        Err(WriteError::Unavailable(
            "aggregate writer restarting".into(),
        ))
    }

    /// The queue of `id`'s writer, started if need be — unless `max_writers` are in memory
    /// already: then 503, until idle writers leave (a flood of commands for made-up
    /// aggregates cannot grow memory without bound).
    fn writer_for(&self, id: Uuid) -> Result<(u64, mpsc::Sender<Job<A>>), WriteError> {
        let mut writers = self.inner.writers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((generation, sender)) = writers.get(&id) {
            return Ok((*generation, sender.clone()));
        }
        if writers.len() >= self.inner.settings.max_writers {
            return Err(WriteError::Overloaded);
        }
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(self.inner.settings.queue_capacity);
        writers.insert(id, (generation, sender.clone()));
        let writer = Writer::<A>::new(id, self.inner.clone());
        tokio::spawn(writer.run(generation, receiver));
        Ok((generation, sender))
    }
}
