//! One aggregate's writer: keeps it in memory, decides its queued commands in order, and
//! commits each batch through the committer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use domain::Decide;
use eventlog::{AppendBatch, Snapshot};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::batch::*;
use super::inner::Inner;
use super::*;

pub(super) struct Loaded<A> {
    aggregate: A,
    version: i64,
    /// The cluster's member-list epoch it was loaded under.
    epoch: u64,
}

pub(super) struct Writer<A: Decide> {
    id: Uuid,
    inner: Arc<Inner<A>>,
    /// `None` until loaded, and again after a failed commit (the in-memory state may hold
    /// events that were not appended).
    state: Option<Loaded<A>>,
    snapshot_version: i64,
    /// Its instance no longer owns the aggregate: it refuses what is queued and stops.
    moved: bool,
}

impl<A: Decide> Writer<A> {
    /// The writer of aggregate `id`, not loaded yet.
    pub(super) fn new(id: Uuid, inner: Arc<Inner<A>>) -> Self {
        Writer {
            id,
            inner,
            state: None,
            snapshot_version: 0,
            moved: false,
        }
    }
}

/// A writer's receiving end; dropping it uncounts the jobs still in it (a task that panicked).
struct Queue<J> {
    rx: mpsc::Receiver<J>,
    queued: metrics::Gauge,
}

impl<J> Drop for Queue<J> {
    fn drop(&mut self) {
        // Closed first: a send racing this drop fails (and uncounts itself) instead of landing.
        self.rx.close();
        self.queued.decrement(self.rx.len() as f64);
    }
}

/// Refuses new jobs (their senders start a new writer) and takes every job already queued or
/// being sent: `recv` ends only once no sender holds a permit, where `try_recv` could miss a
/// job whose sender had reserved its slot but not yet written it.
async fn close_and_drain<J>(rx: &mut mpsc::Receiver<J>) -> Vec<J> {
    rx.close();
    let mut rest = vec![];
    while let Some(job) = rx.recv().await {
        rest.push(job);
    }
    rest
}

impl<A> Writer<A>
where
    A: Decide + Serialize + DeserializeOwned,
    A::Command: Clone,
{
    pub(super) async fn run(mut self, generation: u64, rx: mpsc::Receiver<Job<A>>) {
        // However the task ends, what is left in its queue is no longer queued.
        let mut queue = Queue {
            rx,
            queued: self.inner.queued.clone(),
        };
        let rx = &mut queue.rx;
        let idle = Duration::from_secs(self.inner.settings.idle_seconds);
        loop {
            let first = match tokio::time::timeout(idle, rx.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => break,
                Err(_) => {
                    // Idle: refuse new jobs (senders start a new writer), finish what raced in.
                    let rest = close_and_drain(rx).await;
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
            if self.moved {
                let rest = close_and_drain(rx).await;
                if !rest.is_empty() {
                    self.process(rest).await;
                }
                break;
            }
            // An aggregate that does not exist (every command for it refused: points used
            // by a user who never earned, say) is not kept in memory for the idle time.
            if self.state.as_ref().is_some_and(|s| s.version == 0) && rx.is_empty() {
                let rest = close_and_drain(rx).await;
                if !rest.is_empty() {
                    self.process(rest).await;
                }
                break;
            }
        }
        self.inner.forget(self.id, generation);
        if let Some(state) = &self.state {
            if state.version > self.snapshot_version {
                self.save_snapshot().await;
            }
        }
    }

    async fn process(&mut self, jobs: Vec<Job<A>>) {
        self.inner.queued.decrement(jobs.len() as f64);
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
            if !self.still_owned() {
                return fail_all(pending, WriteError::Moved);
            }
            // Loaded under another member list: the aggregate may have been another member's
            // since (this one lost it and got it back), so it is loaded again.
            if self
                .state
                .as_ref()
                .is_some_and(|s| s.epoch != self.inner.epoch())
            {
                self.state = None;
            }
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
            let (mut batch, decided) = self.decide(&pending);
            let refusing = decided.iter().any(|d| matches!(d, Decided::Refused(_)));
            let appending = batch.streams.iter().any(|s| !s.events.is_empty());
            // A refusal must not come from state another instance has moved on from (an earn
            // elsewhere, a cancelled order freeing stock): when nothing is appended — whose
            // version check would catch it — the stream must still be at this writer's version.
            let decided_at = self.state.as_ref().map_or(0, |s| s.version);
            let outcome = if refusing && !appending && batch.idempotency.is_empty() {
                match self.inner.log.stream_version(self.id).await {
                    Ok(stored) if stored == decided_at => {
                        return reply_all(pending, decided, 0, 0);
                    }
                    Ok(_) => Err(CommitError::Race),
                    Err(e) => Err(CommitError::Unavailable(e.to_string())),
                }
            } else if !appending && batch.idempotency.is_empty() {
                return reply_all(pending, decided, 0, 0);
            } else {
                if refusing && !appending {
                    // Keyed refusals are stored: only if the stream is still where they were
                    // decided, in the same transaction.
                    batch.guards.push((self.id, decided_at));
                }
                // Loading and deciding took time: the aggregate may have moved meanwhile.
                if !self.still_owned() {
                    return fail_all(pending, WriteError::Moved);
                }
                self.inner.committer.commit(batch).await
            };
            match outcome {
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
                    // Decided again: another writer appended to the stream first (a handover
                    // between instances, a frozen one resuming), or the commit met a taken
                    // idempotency key or entity id, or a serialization failure or deadlock.
                    metrics::counter!("writer_races_total", "aggregate" => A::CATEGORY)
                        .increment(1);
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

    /// Whether this instance still decides for the aggregate; once it does not, the writer
    /// drops its state (a later owner loads from the log) and stops after this batch.
    fn still_owned(&mut self) -> bool {
        if self.inner.decides(self.id) {
            return true;
        }
        self.state = None;
        self.moved = true;
        false
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
        // Taken before the read: a member-list change during it makes the state stale.
        let epoch = self.inner.epoch();
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
        self.state = Some(Loaded {
            aggregate,
            version,
            epoch,
        });
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
