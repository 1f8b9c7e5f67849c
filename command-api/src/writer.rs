//! One writer per aggregate, and group commit across aggregates (DESIGN.md "Hot aggregates").
//!
//! Commands for one aggregate queue to one task that keeps the aggregate in memory, decides
//! the queued commands in order, and hands the whole batch to the [`Committer`], which appends
//! the batches of many aggregates in one transaction. Within one process no two writers touch
//! a stream, so commands never conflict with each other; optimistic concurrency in the event
//! log still guards against another process, and a lost race reloads and decides again.
//! Queues are bounded: a full one answers 503 instead of growing memory.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::wire::{WireCodec, WireEvent};
use domain::{Decide, DomainError};
use eventlog::{
    AppendBatch, Appended, EntityLink, EventLog, IdempotencyRecord, NewEvent, Snapshot,
    StreamAppend,
};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::error::ApiError;
use crate::settings::{WriterMode, WriterSettings};

/// Bumped when an aggregate's in-memory state changes shape: older snapshots are ignored.
const STATE_FORMAT: i32 = 1;

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
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Refused(e) => ApiError::Refused(e),
            WriteError::KeyReused => ApiError::IdempotencyKeyReused,
            WriteError::Overloaded => ApiError::Overloaded,
            WriteError::Unavailable(cause) => ApiError::Unavailable(cause),
            WriteError::StoredRefusal { .. } => {
                ApiError::Unavailable("stored refusal not rendered".into())
            }
        }
    }
}

/// Builds a success body; see [`Request::render`].
pub type Render<A> = Box<dyn Fn(&A, &[<A as Decide>::Event]) -> Value + Send + Sync>;

type Reply = oneshot::Sender<Result<Committed, WriteError>>;
type Read<A> = Box<dyn FnOnce(Result<&A, WriteError>) + Send>;

/// A command waiting for its answer.
type Pending<A> = (Box<Request<A>>, Reply);
/// Each aggregate's writer queue, with the generation of the writer task behind it.
type Registry<A> = Mutex<HashMap<Uuid, (u64, mpsc::Sender<Job<A>>)>>;

enum Job<A: Decide> {
    Command(Box<Request<A>>, Reply),
    Read(Read<A>),
}

// ---- the committer ----------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub enum CommitError {
    /// Another writer won a stream, key or entity: decide again on fresh state.
    Race,
    Unavailable(String),
}

struct CommitJob {
    batch: AppendBatch,
    reply: oneshot::Sender<Result<Vec<Appended>, CommitError>>,
}

/// Appends the batches of many aggregate writers in one transaction each round.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::Sender<CommitJob>,
}

impl Committer {
    pub fn start(log: EventLog, max_commit_batch: usize) -> Self {
        // Each writer has at most one batch in flight, so this bound is never the limit that
        // matters; the writers' own queues are.
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run_committer(log, rx, max_commit_batch));
        Self { tx }
    }

    pub async fn commit(&self, batch: AppendBatch) -> Result<Vec<Appended>, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(CommitJob { batch, reply })
            .await
            .map_err(|_| CommitError::Unavailable("committer stopped".into()))?;
        answer
            .await
            .map_err(|_| CommitError::Unavailable("committer stopped".into()))?
    }
}

fn classify(e: eventlog::StoreError) -> CommitError {
    if e.is_race() {
        CommitError::Race
    } else {
        CommitError::Unavailable(e.to_string())
    }
}

async fn run_committer(log: EventLog, mut rx: mpsc::Receiver<CommitJob>, max: usize) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < max {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if jobs.len() == 1 {
            let job = jobs.remove(0);
            let _ = job
                .reply
                .send(log.append(&job.batch).await.map_err(classify));
            continue;
        }
        let mut merged = AppendBatch::default();
        for job in &jobs {
            merged.streams.extend(job.batch.streams.iter().cloned());
            merged
                .idempotency
                .extend(job.batch.idempotency.iter().cloned());
            merged.links.extend(job.batch.links.iter().cloned());
        }
        match log.append(&merged).await {
            Ok(appended) => {
                let by_stream: HashMap<Uuid, Appended> =
                    appended.into_iter().map(|a| (a.stream_id, a)).collect();
                for job in jobs {
                    let own = job
                        .batch
                        .streams
                        .iter()
                        .filter_map(|s| by_stream.get(&s.stream_id).copied())
                        .collect();
                    let _ = job.reply.send(Ok(own));
                }
            }
            // One batch lost a race: retry each alone so only the loser has to decide again.
            Err(e) if e.is_race() => {
                for job in jobs {
                    let _ = job
                        .reply
                        .send(log.append(&job.batch).await.map_err(classify));
                }
            }
            Err(e) => {
                let error = CommitError::Unavailable(e.to_string());
                for job in jobs {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

// ---- the loader ---------------------------------------------------------------------------

/// A cold aggregate's stored state: its snapshot (if any) and the events after it.
type Stored = (Option<Snapshot>, Vec<eventlog::RecordedEvent>);

struct LoadJob {
    id: Uuid,
    reply: oneshot::Sender<Result<Stored, String>>,
}

/// Loads cold aggregates for the writers of one aggregate type, batching every load waiting
/// at the moment into two queries (snapshots, then the events after them): under a load
/// spread over many aggregates — points over 100,000 users — cold loads cost a few queries
/// per batch instead of two per aggregate.
#[derive(Debug, Clone)]
struct Loader {
    tx: mpsc::Sender<LoadJob>,
}

/// Most aggregates loaded per batch.
const MAX_LOAD_BATCH: usize = 512;
/// Load batches in flight at once.
const LOADS_IN_FLIGHT: usize = 2;

impl Loader {
    fn start(log: EventLog) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run_loader(log, rx));
        Self { tx }
    }

    async fn load(&self, id: Uuid) -> Result<Stored, WriteError> {
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

async fn run_loader(log: EventLog, mut rx: mpsc::Receiver<LoadJob>) {
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
                Ok(mut loaded) => {
                    for job in jobs {
                        let stored = loaded.remove(&job.id).unwrap_or_default();
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

// ---- the per-aggregate writers ----------------------------------------------------------

/// The writers of one aggregate type, created on first use and dropped when idle.
pub struct Aggregates<A: Decide> {
    inner: Arc<Inner<A>>,
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

struct Inner<A: Decide> {
    log: EventLog,
    committer: Committer,
    loader: Loader,
    settings: WriterSettings,
    writers: Registry<A>,
    generation: AtomicU64,
    /// Naive mode only: the last state seen per aggregate, caught up from the log's tail.
    naive: Mutex<HashMap<Uuid, (i64, Arc<A>)>>,
}

impl<A> Aggregates<A>
where
    A: Decide + Serialize + DeserializeOwned,
    A::Command: Clone,
{
    pub fn new(log: EventLog, committer: Committer, settings: WriterSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                loader: Loader::start(log.clone()),
                log,
                committer,
                settings,
                writers: Mutex::new(HashMap::new()),
                generation: AtomicU64::new(0),
                naive: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Decides and appends a command on aggregate `id`.
    pub async fn execute(&self, id: Uuid, request: Request<A>) -> Result<Committed, WriteError> {
        if self.inner.settings.mode == WriterMode::Naive {
            return self.execute_naive(id, request).await;
        }
        let (reply, answer) = oneshot::channel();
        self.send(id, Job::Command(Box::new(request), reply))?;
        answer
            .await
            .map_err(|_| WriteError::Unavailable("aggregate writer stopped".into()))?
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

    /// The baseline: for each command, catch the aggregate up from the log, decide, and append
    /// in a transaction of its own expecting the version it decided on; a concurrent writer
    /// makes it a conflict, and the command is decided again after a jittered pause.
    async fn execute_naive(&self, id: Uuid, request: Request<A>) -> Result<Committed, WriteError> {
        const ATTEMPTS: u32 = 64;
        for attempt in 0..ATTEMPTS {
            if let Some(key) = &request.key {
                let stored = self
                    .inner
                    .log
                    .idempotent_answers(&key.principal, std::slice::from_ref(&key.key))
                    .await
                    .map_err(|e| WriteError::Unavailable(e.to_string()))?;
                if let Some(answer) = stored.into_iter().next() {
                    return stored_answer(&answer, &key.hash);
                }
            }
            let (version, state) = self.naive_state(id).await?;
            let mut next = (*state).clone();
            let (batch, mut decided) =
                decide_batch(&mut next, id, version, std::iter::once(&request));
            let Some(outcome) = decided.pop() else { break };
            if let Decided::Refused(refusal) = &outcome {
                if request.key.is_none() {
                    return Err(WriteError::Refused(refusal.clone()));
                }
            }
            match self.inner.log.append(&batch).await {
                Ok(appended) => {
                    return match outcome {
                        Decided::Refused(refusal) => Err(WriteError::Refused(refusal)),
                        Decided::Accepted { events, body } => {
                            let a = appended.first().copied().ok_or_else(|| {
                                WriteError::Unavailable("nothing appended".into())
                            })?;
                            if let Ok(mut cache) = self.inner.naive.lock() {
                                if cache.get(&id).is_none_or(|(v, _)| *v < a.version) {
                                    cache.insert(id, (a.version, Arc::new(next)));
                                }
                            }
                            Ok(Committed {
                                status: request.status,
                                body,
                                version: a.version,
                                position: a.first_position + events as i64 - 1,
                                replayed: false,
                            })
                        }
                    };
                }
                Err(e) if e.is_race() => {
                    let pause = rand::rng().random_range(1..=5u64) * u64::from(attempt.min(10) + 1);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(e) => return Err(WriteError::Unavailable(e.to_string())),
            }
        }
        Err(WriteError::Unavailable(
            "contention: too many retries".into(),
        ))
    }

    /// The cached state of `id` (naive mode), caught up with every event appended since.
    async fn naive_state(&self, id: Uuid) -> Result<(i64, Arc<A>), WriteError> {
        let cached = self
            .inner
            .naive
            .lock()
            .ok()
            .and_then(|c| c.get(&id).cloned());
        let (version, state) = cached.unwrap_or_else(|| (0, Arc::new(A::default())));
        let tail = self
            .inner
            .log
            .read_stream(id, version, None)
            .await
            .map_err(|e| WriteError::Unavailable(e.to_string()))?;
        if tail.is_empty() {
            return Ok((version, state));
        }
        let mut caught_up = (*state).clone();
        let version = apply_recorded(&mut caught_up, id, version, tail)?;
        let caught_up = Arc::new(caught_up);
        if let Ok(mut cache) = self.inner.naive.lock() {
            if cache.get(&id).is_none_or(|(v, _)| *v < version) {
                cache.insert(id, (version, caught_up.clone()));
            }
        }
        Ok((version, caught_up))
    }

    fn send(&self, id: Uuid, mut job: Job<A>) -> Result<(), WriteError> {
        // A writer that went idle closes its queue; the next command starts a new one.
        for _ in 0..3 {
            let (generation, sender) = self.writer_for(id);
            match sender.try_send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => return Err(WriteError::Overloaded),
                Err(mpsc::error::TrySendError::Closed(returned)) => {
                    self.inner.forget(id, generation);
                    job = returned;
                }
            }
        }
        Err(WriteError::Unavailable(
            "aggregate writer restarting".into(),
        ))
    }

    fn writer_for(&self, id: Uuid) -> (u64, mpsc::Sender<Job<A>>) {
        let mut writers = self.inner.writers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((generation, sender)) = writers.get(&id) {
            return (*generation, sender.clone());
        }
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(self.inner.settings.queue_capacity);
        writers.insert(id, (generation, sender.clone()));
        let writer = Writer::<A> {
            id,
            inner: self.inner.clone(),
            state: None,
            snapshot_version: 0,
        };
        tokio::spawn(writer.run(generation, receiver));
        (generation, sender)
    }
}

impl<A: Decide> Inner<A> {
    fn forget(&self, id: Uuid, generation: u64) {
        let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        if writers.get(&id).is_some_and(|(g, _)| *g == generation) {
            writers.remove(&id);
        }
    }
}

struct Loaded<A> {
    aggregate: A,
    version: i64,
}

struct Writer<A: Decide> {
    id: Uuid,
    inner: Arc<Inner<A>>,
    /// `None` until loaded, and again after a failed commit (the in-memory state may hold
    /// events that were not appended).
    state: Option<Loaded<A>>,
    snapshot_version: i64,
}

/// What deciding one command gave.
enum Decided {
    Accepted { events: usize, body: Value },
    Refused(DomainError),
}

impl<A> Writer<A>
where
    A: Decide + Serialize + DeserializeOwned,
    A::Command: Clone,
{
    async fn run(mut self, generation: u64, mut rx: mpsc::Receiver<Job<A>>) {
        let idle = Duration::from_secs(self.inner.settings.idle_seconds);
        loop {
            let first = match tokio::time::timeout(idle, rx.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => break,
                Err(_) => {
                    // Idle: refuse new jobs (senders start a new writer), finish what raced in.
                    rx.close();
                    let mut rest = vec![];
                    while let Ok(job) = rx.try_recv() {
                        rest.push(job);
                    }
                    if !rest.is_empty() {
                        self.process(rest).await;
                    }
                    break;
                }
            };
            let mut jobs = vec![first];
            while jobs.len() < self.inner.settings.max_batch {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.process(jobs).await;
        }
        self.inner.forget(self.id, generation);
        if let Some(state) = &self.state {
            if state.version > self.snapshot_version {
                self.save_snapshot().await;
            }
        }
    }

    async fn process(&mut self, jobs: Vec<Job<A>>) {
        let mut commands = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job {
                Job::Command(request, reply) => commands.push((request, reply)),
                Job::Read(read) => match self.ensure_loaded().await {
                    Ok(()) => read(Ok(&self.state.as_ref().expect("loaded").aggregate)),
                    Err(e) => read(Err(e)),
                },
            }
        }
        // Two commands with the same idempotency key in one batch: the later one waits for the
        // next round, where it finds the first one's stored answer.
        while !commands.is_empty() {
            let mut keys = HashSet::new();
            let (now, later): (Vec<_>, Vec<_>) =
                commands.into_iter().partition(|(r, _)| match &r.key {
                    Some(k) => keys.insert((k.principal.clone(), k.key.clone())),
                    None => true,
                });
            self.round(now).await;
            commands = later;
        }
    }

    /// Decides a batch and commits it, deciding again (bounded) after a lost race.
    async fn round(&mut self, mut pending: Vec<Pending<A>>) {
        let mut attempt = 0;
        loop {
            if let Err(e) = self.ensure_loaded().await {
                return fail_all(pending, e);
            }
            pending = match self.answer_stored_keys(pending).await {
                Ok(p) => p,
                Err((p, e)) => return fail_all(p, e),
            };
            if pending.is_empty() {
                return;
            }
            let (batch, decided) = self.decide(&pending);
            if batch.streams.iter().all(|s| s.events.is_empty()) && batch.idempotency.is_empty() {
                return reply_all(pending, decided, 0, 0);
            }
            match self.inner.committer.commit(batch).await {
                Ok(appended) => {
                    let state = self.state.as_mut().expect("loaded");
                    let base = state.version;
                    if let Some(a) = appended.first() {
                        state.version = a.version;
                    }
                    let first_position = appended.first().map_or(0, |a| a.first_position);
                    self.maybe_snapshot();
                    return reply_all(pending, decided, base, first_position);
                }
                Err(CommitError::Race) => {
                    self.state = None;
                    attempt += 1;
                    if attempt >= self.inner.settings.max_attempts {
                        return fail_all(
                            pending,
                            WriteError::Unavailable("contention: too many retries".into()),
                        );
                    }
                    let backoff = rand::rng().random_range(1..=4u64) * u64::from(attempt);
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                }
                Err(CommitError::Unavailable(cause)) => {
                    self.state = None;
                    return fail_all(pending, WriteError::Unavailable(cause));
                }
            }
        }
    }

    fn decide(&mut self, pending: &[Pending<A>]) -> (AppendBatch, Vec<Decided>) {
        let state = self.state.as_mut().expect("loaded");
        decide_batch(
            &mut state.aggregate,
            self.id,
            state.version,
            pending.iter().map(|(r, _)| r.as_ref()),
        )
    }

    /// Answers commands whose idempotency key has a stored answer; returns the rest.
    async fn answer_stored_keys(
        &self,
        pending: Vec<Pending<A>>,
    ) -> Result<Vec<Pending<A>>, (Vec<Pending<A>>, WriteError)> {
        let mut by_principal: HashMap<&str, Vec<String>> = HashMap::new();
        for (request, _) in &pending {
            if let Some(k) = &request.key {
                by_principal
                    .entry(k.principal.as_str())
                    .or_default()
                    .push(k.key.clone());
            }
        }
        if by_principal.is_empty() {
            return Ok(pending);
        }
        let mut stored = HashMap::new();
        for (principal, keys) in by_principal {
            match self.inner.log.idempotent_answers(principal, &keys).await {
                Ok(answers) => {
                    for answer in answers {
                        stored.insert((principal.to_owned(), answer.key.clone()), answer);
                    }
                }
                Err(e) => {
                    let error = WriteError::Unavailable(e.to_string());
                    return Err((pending, error));
                }
            }
        }
        let mut rest = Vec::with_capacity(pending.len());
        for (request, reply) in pending {
            let found = request
                .key
                .as_ref()
                .and_then(|k| stored.get(&(k.principal.clone(), k.key.clone())));
            let Some(answer) = found else {
                rest.push((request, reply));
                continue;
            };
            let hash = &request.key.as_ref().expect("keyed").hash;
            let result = stored_answer(answer, hash);
            let _ = reply.send(result);
        }
        Ok(rest)
    }

    async fn ensure_loaded(&mut self) -> Result<(), WriteError> {
        if self.state.is_some() {
            return Ok(());
        }
        let unavailable = |e: eventlog::StoreError| WriteError::Unavailable(e.to_string());
        let mut aggregate = A::default();
        let mut version = 0;
        let (snapshot, mut tail) = self.inner.loader.load(self.id).await?;
        if let Some(snapshot) = snapshot {
            match serde_json::from_value::<A>(snapshot.state) {
                Ok(state) => {
                    aggregate = state;
                    version = snapshot.version;
                    self.snapshot_version = version;
                }
                // A snapshot that no longer deserializes is ignored: the stream is replayed
                // whole.
                Err(_) => {
                    tail = self
                        .inner
                        .log
                        .read_stream(self.id, 0, None)
                        .await
                        .map_err(unavailable)?;
                }
            }
        }
        let version = apply_recorded(&mut aggregate, self.id, version, tail)?;
        self.state = Some(Loaded { aggregate, version });
        Ok(())
    }

    /// Snapshots when the events since the last snapshot reach the snapshot's own size (and at
    /// least 1,000): a long stream costs at most twice its length in snapshot writes, and a
    /// cold load replays at most half of it. Idle writers snapshot when they stop.
    fn maybe_snapshot(&mut self) {
        let Some(state) = &self.state else { return };
        let since = state.version - self.snapshot_version;
        if since < 1_000 || since < self.snapshot_version {
            return;
        }
        self.snapshot_version = state.version;
        // Serializing a big state (a sale's 64,000 orders) takes tens of milliseconds: on a
        // blocking thread, from a copy, so the writer goes on deciding meanwhile.
        let (log, id) = (self.inner.log.clone(), self.id);
        let (aggregate, version) = (state.aggregate.clone(), state.version);
        tokio::spawn(async move {
            let serialized =
                tokio::task::spawn_blocking(move || serde_json::to_value(&aggregate)).await;
            if let Ok(Ok(state)) = serialized {
                let snapshot = Snapshot { version, state };
                if let Err(e) = log
                    .save_snapshot(id, A::CATEGORY, STATE_FORMAT, &snapshot)
                    .await
                {
                    tracing::warn!(error = %e, stream = %id, "snapshot not saved");
                }
            }
        });
    }

    async fn save_snapshot(&mut self) {
        let Some(state) = &self.state else { return };
        if let Some(snapshot) = self.snapshot_of(state) {
            if let Err(e) = self
                .inner
                .log
                .save_snapshot(self.id, A::CATEGORY, STATE_FORMAT, &snapshot)
                .await
            {
                tracing::warn!(error = %e, stream = %self.id, "snapshot not saved");
            }
        }
    }

    fn snapshot_of(&self, state: &Loaded<A>) -> Option<Snapshot> {
        let value = serde_json::to_value(&state.aggregate).ok()?;
        Some(Snapshot {
            version: state.version,
            state: value,
        })
    }
}

/// Decides `requests` in order against `aggregate` (applying each accepted command's events
/// before the next) and builds the batch that appends them: events, entity links, and the
/// idempotency record of every keyed request (refusals included). Shared by both write modes.
fn decide_batch<'r, A: Decide>(
    aggregate: &mut A,
    id: Uuid,
    base_version: i64,
    requests: impl Iterator<Item = &'r Request<A>>,
) -> (AppendBatch, Vec<Decided>)
where
    A::Command: Clone,
{
    let mut version = base_version;
    let mut stream = StreamAppend {
        stream_id: id,
        category: A::CATEGORY.to_owned(),
        expected_version: base_version,
        events: vec![],
    };
    let mut batch = AppendBatch::default();
    let mut decided = Vec::new();
    for request in requests {
        match aggregate.decide(request.command.clone()) {
            Ok(events) => {
                for event in &events {
                    let wire = event.to_wire();
                    if let Some(entity_id) = A::created_entity(event) {
                        batch.links.push(EntityLink {
                            entity_id,
                            stream_id: id,
                            category: A::CATEGORY.to_owned(),
                        });
                    }
                    stream.events.push(NewEvent {
                        event_id: Uuid::now_v7(),
                        event_type: wire.event_type,
                        schema_version: wire.version as i16,
                        data: wire.data,
                        metadata: request.metadata.clone(),
                    });
                    aggregate.apply_event(event.clone());
                }
                version += events.len() as i64;
                let body = (request.render)(aggregate, &events);
                if let Some(key) = &request.key {
                    batch.idempotency.push(IdempotencyRecord {
                        principal: key.principal.clone(),
                        key: key.key.clone(),
                        request_hash: key.hash.clone(),
                        status: request.status as i16,
                        body: body.clone(),
                        stream: Some((id, version)),
                    });
                }
                decided.push(Decided::Accepted {
                    events: events.len(),
                    body,
                });
            }
            Err(refusal) => {
                if let Some(key) = &request.key {
                    let (status, body) = ApiError::Refused(refusal.clone()).problem();
                    batch.idempotency.push(IdempotencyRecord {
                        principal: key.principal.clone(),
                        key: key.key.clone(),
                        request_hash: key.hash.clone(),
                        status: status.as_u16() as i16,
                        body,
                        stream: None,
                    });
                }
                decided.push(Decided::Refused(refusal));
            }
        }
    }
    batch.streams.push(stream);
    (batch, decided)
}

/// Applies recorded events of one stream to `aggregate`; returns the version after them.
fn apply_recorded<A: Decide>(
    aggregate: &mut A,
    id: Uuid,
    mut version: i64,
    recorded: Vec<eventlog::RecordedEvent>,
) -> Result<i64, WriteError> {
    for event in recorded {
        let wire = WireEvent {
            event_type: event.event_type,
            version: event.schema_version as u16,
            data: event.data,
        };
        let decoded = A::Event::from_wire(&wire)
            .map_err(|e| WriteError::Unavailable(format!("stream {id}: {e}")))?;
        aggregate.apply_event(decoded);
        version = event.version;
    }
    Ok(version)
}

/// The answer stored under an idempotency key, for a request whose body hashes to `hash`.
fn stored_answer(answer: &eventlog::StoredAnswer, hash: &[u8]) -> Result<Committed, WriteError> {
    if answer.request_hash != hash {
        Err(WriteError::KeyReused)
    } else if (200..300).contains(&answer.status) {
        Ok(Committed {
            status: answer.status as u16,
            body: answer.body.clone(),
            version: answer.stream.map_or(0, |s| s.1),
            position: answer.position.unwrap_or(0),
            replayed: true,
        })
    } else {
        Err(WriteError::StoredRefusal {
            status: answer.status as u16,
            body: answer.body.clone(),
        })
    }
}

fn fail_all<A: Decide>(pending: Vec<Pending<A>>, error: WriteError) {
    for (_, reply) in pending {
        let _ = reply.send(Err(error.clone()));
    }
}

/// Answers each command of a committed batch: its version and the position of its last event.
fn reply_all<A: Decide>(
    pending: Vec<Pending<A>>,
    decided: Vec<Decided>,
    base_version: i64,
    first_position: i64,
) {
    let mut version = base_version;
    let mut position = first_position - 1;
    for ((request, reply), outcome) in pending.into_iter().zip(decided) {
        let result = match outcome {
            Decided::Accepted { events, body } => {
                version += events as i64;
                position += events as i64;
                Ok(Committed {
                    status: request.status,
                    body,
                    version,
                    position,
                    replayed: false,
                })
            }
            Decided::Refused(refusal) => Err(WriteError::Refused(refusal)),
        };
        let _ = reply.send(result);
    }
}
