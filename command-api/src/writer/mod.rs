//! One writer per aggregate, and group commit across aggregates (ADR 5).
//!
//! Commands for one aggregate queue to one task that keeps the aggregate in memory, decides
//! the queued commands in order, and hands the whole batch to the [`Committer`], which appends
//! the batches of many aggregates in one transaction. Within one process no two writers touch
//! a stream, so commands never conflict with each other; optimistic concurrency in the event
//! log still guards against another process, and a lost race reloads and decides again.
//! Queues are bounded: a full one answers 503 instead of growing memory.
//!
//! The parts: [`registry`] (the writers of one aggregate type, started on first use and
//! dropped when idle), [`task`] (one aggregate's writer), [`batch`] (deciding a batch and
//! answering it), [`committer`] (group commit) and [`loader`] (batched cold loads). The naive
//! baseline the benchmark compared against (one transaction per command) is gone; its figures
//! stay in docs/benchmarks.md.

use std::collections::HashMap;
use std::sync::Mutex;

use domain::{Decide, DomainError};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

mod batch;
mod committer;
mod inner;
mod loader;
mod registry;
mod task;

pub use committer::{CommitError, Committer};
pub use registry::Aggregates;

/// Bumped when an aggregate's in-memory state changes shape: older snapshots are ignored.
pub(super) const STATE_FORMAT: i32 = 2;

/// A request carrying an idempotency key: who sent it, the key, and the body's hash.
#[derive(Debug, Clone)]
pub struct Keyed {
    pub principal: String,
    pub key: String,
    pub hash: Vec<u8>,
}

/// A command with what is needed to answer it.
pub struct Request<A: Decide> {
    pub command: A::Command,
    pub key: Option<Keyed>,
    /// Stored with every event: correlation and causation ids, actor, trace context.
    pub metadata: Value,
    /// HTTP status of a success (201 for creations, 200 otherwise).
    pub status: u16,
    /// Builds the success body from the state after the command and its events. Called once
    /// per decision (again after a lost race); its result is stored with the idempotency key.
    pub render: Render<A>,
}

/// A command's success, fresh or replayed from its idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub status: u16,
    pub body: Value,
    pub version: i64,
    pub position: i64,
    pub replayed: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Refused(#[from] DomainError),
    /// A refusal stored under the request's idempotency key, answered again as it was.
    #[error("stored refusal")]
    StoredRefusal { status: u16, body: Value },
    #[error("idempotency key reused")]
    KeyReused,
    #[error("overloaded")]
    Overloaded,
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// This instance no longer owns the aggregate (a cluster's membership changed).
    #[error("not the owner")]
    Moved,
}

/// Builds a success body; see [`Request::render`].
pub type Render<A> = Box<dyn Fn(&A, &[<A as Decide>::Event]) -> Value + Send + Sync>;

pub(super) type Reply = oneshot::Sender<Result<Committed, WriteError>>;
pub(super) type Read<A> = Box<dyn FnOnce(Result<&A, WriteError>) + Send>;

/// A command waiting for its answer.
pub(super) type Pending<A> = (Box<Request<A>>, Reply);
/// Each aggregate's writer queue, with the generation of the writer task behind it.
pub(super) type Registry<A> = Mutex<HashMap<Uuid, (u64, mpsc::Sender<Job<A>>)>>;

pub(super) enum Job<A: Decide> {
    Command(Box<Request<A>>, Reply),
    Read(Read<A>),
}
