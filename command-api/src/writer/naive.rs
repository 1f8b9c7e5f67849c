//! The baseline the benchmark compares against (`APP_WRITER__MODE=naive`): one transaction per
//! command with optimistic concurrency and retries. Never for production.

use std::sync::Arc;
use std::time::Duration;

use domain::Decide;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use super::batch::{apply_recorded, decide_batch, stored_answer, Decided};
use super::*;

impl<A> Aggregates<A>
where
    A: Decide + Serialize + DeserializeOwned,
    A::Command: Clone,
{
    /// The baseline: for each command, catch the aggregate up from the log, decide, and append
    /// in a transaction of its own expecting the version it decided on; a concurrent writer
    /// makes it a conflict, and the command is decided again after a jittered pause.
    pub(super) async fn execute_naive(
        &self,
        id: Uuid,
        request: Request<A>,
    ) -> Result<Committed, WriteError> {
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
}
