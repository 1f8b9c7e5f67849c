//! Group commit: appends the batches of many aggregate writers in one transaction each round.

use std::collections::HashMap;

use eventlog::{AppendBatch, Appended, EventLog};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::known::Known;

#[derive(Debug, Clone, PartialEq)]
pub enum CommitError {
    /// Another writer won a stream, key or entity: decide again on fresh state.
    Race,
    Unavailable(String),
}

pub(super) struct CommitJob {
    batch: AppendBatch,
    reply: oneshot::Sender<Result<Vec<Appended>, CommitError>>,
}

/// Appends the batches of many aggregate writers in one transaction each round, and keeps
/// the stream of every entity it appended in `entities`.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::Sender<CommitJob>,
}

impl Committer {
    pub fn start(
        log: EventLog,
        max_commit_batch: usize,
        entities: Known<(Uuid, &'static str)>,
    ) -> Self {
        // Each writer has at most one batch in flight, so this bound is never the limit that
        // matters; the writers' own queues are.
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run_committer(log, rx, max_commit_batch, entities));
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

pub(super) fn classify(e: eventlog::StoreError) -> CommitError {
    if e.is_race() {
        CommitError::Race
    } else {
        CommitError::Unavailable(e.to_string())
    }
}

/// The entities of `batch`, which was committed, kept in `entities`.
fn committed(entities: &Known<(Uuid, &'static str)>, batch: &AppendBatch) {
    for link in &batch.links {
        entities.keep(link.entity_id, (link.stream_id, link.category));
    }
}

/// Appends `job`'s batch alone and answers it.
async fn commit_alone(log: &EventLog, entities: &Known<(Uuid, &'static str)>, job: CommitJob) {
    let appended = log.append(&job.batch).await;
    if appended.is_ok() {
        committed(entities, &job.batch);
    }
    let _ = job.reply.send(appended.map_err(classify));
}

pub(super) async fn run_committer(
    log: EventLog,
    mut rx: mpsc::Receiver<CommitJob>,
    max: usize,
    entities: Known<(Uuid, &'static str)>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < max {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        metrics::histogram!("writer_commit_batch_size").record(jobs.len() as f64);
        let started = std::time::Instant::now();
        if service::telemetry::enabled() {
            use tracing::Instrument;
            let span = append_span(&jobs);
            commit_round(&log, &entities, jobs).instrument(span).await;
        } else {
            commit_round(&log, &entities, jobs).await;
        }
        metrics::histogram!("writer_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
    }
}

/// The span of one group commit: a child of the first command's trace, linked to the traces
/// of the others it carries (at most 64), so each command's trace reaches its append.
fn append_span(jobs: &[CommitJob]) -> tracing::Span {
    let traces: Vec<&str> = jobs
        .iter()
        .flat_map(|job| &job.batch.streams)
        .flat_map(|stream| &stream.events)
        .filter_map(|event| event.metadata.get("traceparent").and_then(|t| t.as_str()))
        .collect();
    let span = tracing::info_span!(
        "eventlog.append",
        batches = jobs.len(),
        traced_events = traces.len()
    );
    let mut seen = std::collections::HashSet::new();
    for (n, traceparent) in traces
        .into_iter()
        .filter(|t| seen.insert(*t))
        .take(65)
        .enumerate()
    {
        if n == 0 {
            service::telemetry::set_parent(&span, traceparent);
        } else {
            service::telemetry::add_link(&span, traceparent);
        }
    }
    span
}

/// One round of group commit: the jobs merged into one transaction, or each alone when the
/// merged one failed on one batch's account.
async fn commit_round(
    log: &EventLog,
    entities: &Known<(Uuid, &'static str)>,
    mut jobs: Vec<CommitJob>,
) {
    if jobs.len() == 1 {
        commit_alone(log, entities, jobs.remove(0)).await;
        return;
    }
    let mut merged = AppendBatch::default();
    for job in &jobs {
        merged.streams.extend(job.batch.streams.iter().cloned());
        merged
            .idempotency
            .extend(job.batch.idempotency.iter().cloned());
        merged.links.extend(job.batch.links.iter().cloned());
        merged.guards.extend(job.batch.guards.iter().copied());
    }
    match log.append(&merged).await {
        Ok(appended) => {
            let by_stream: HashMap<Uuid, Appended> =
                appended.into_iter().map(|a| (a.stream_id, a)).collect();
            for job in jobs {
                committed(entities, &job.batch);
                let own = job
                    .batch
                    .streams
                    .iter()
                    .filter_map(|s| by_stream.get(&s.stream_id).copied())
                    .collect();
                let _ = job.reply.send(Ok(own));
            }
        }
        // One batch lost a race, or PostgreSQL refused it (its own data): retry each alone,
        // so only that one is refused or decides again and the others go through.
        Err(e) if e.is_race() || e.is_refusal() => {
            tracing::debug!(error = %e, jobs = jobs.len(), "a merged commit failed; committing its batches one by one");
            for job in jobs {
                commit_alone(log, entities, job).await;
            }
        }
        // The database is unreachable: every batch alike, at once.
        Err(e) => {
            let error = CommitError::Unavailable(e.to_string());
            for job in jobs {
                let _ = job.reply.send(Err(error.clone()));
            }
        }
    }
}
