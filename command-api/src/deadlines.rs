//! Durable deadlines (DESIGN "Deadlines", ADR 16): the system's own events at their due time —
//! a checkout hold's expiry, an earn's points' expiry.
//!
//! Two loops, both bounded in what they do per round and retried with a pause that grows to a
//! second when the database fails, both ending within a round of `stop`:
//!
//! - the **follower**, one per deployment (the PostgreSQL advisory lock `deadlines`, like the
//!   relay's): reads the events that open or end a deadline from the log, after its
//!   checkpoint, and keeps the `deadlines` table — what the log says is outstanding — moving
//!   the checkpoint in the same transaction, on its leader connection. A restart, a kill -9,
//!   a standby taking over: the table is always the log's up to the checkpoint.
//! - the **firer**, in every instance: every `deadline_poll_ms` it takes the due deadlines of
//!   the aggregates this instance owns (all of them when it runs alone) and sends the command
//!   that ends each through the command layer, as the service principal `deadlines`. The
//!   aggregate's rules refuse an early or second expiry and its expected version guards a
//!   race, so a deadline fires once, however many look at it. A deadline that came due while
//!   everything was down fires at the first round after start.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::deadline::{DeadlineEffect, DeadlineKind, DEADLINE_EVENT_TYPES};
use domain::wire::AnyEvent;
use domain::DomainError;
use eventlog::deadlines::{apply_deadline_changes, Deadline, DeadlineChange};
use eventlog::leader::Leader;
use eventlog::{EventLog, RecordedEvent};
use tokio::sync::watch;

use crate::commands::holds::HoldEnd;
use crate::commands::{Call, CommandError, Commands};

/// The advisory lock of the follower.
const LEADER_LOCK: &str = "deadlines";
/// Events the follower reads per round.
const FOLLOW_BATCH: i64 = 2_000;
/// Due deadlines the firer takes per round (sent at once: one aggregate's writer decides
/// them in one batch).
const FIRE_BATCH: i64 = 1_000;
/// Pages of due deadlines one round looks through at most.
const MAX_PAGES: usize = 20;
/// How long a deadline just fired is not sent again while the follower has not yet read its
/// ending event.
const REFIRE_AFTER: Duration = Duration::from_secs(5);
/// Longest pause after failed rounds.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// The follower and the firer, until `stop`.
pub(crate) fn spawn(
    commands: Commands,
    poll: Duration,
    stop: watch::Receiver<bool>,
) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    let follower = tokio::spawn(follow(commands.log.clone(), poll, stop.clone()));
    let firer = tokio::spawn(fire(commands, poll, stop));
    (follower, firer)
}

/// The deadline changes of recorded events, in log order (an undecodable event is skipped
/// with an error logged: its deadline cannot be known, and the projector parks it too).
fn changes(events: &[RecordedEvent]) -> Vec<DeadlineChange> {
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let decoded = AnyEvent::from_wire(&event.category, &event.wire())
            .transpose()
            .map(|e| e.and_then(|e| e.deadline()));
        let effect = decoded.unwrap_or_else(|e| {
            tracing::error!(position = event.position, error = %e, "an event that sets a deadline does not decode; its deadline is skipped");
            None
        });
        out.extend(effect.map(|effect| match effect {
            DeadlineEffect::Opens {
                kind,
                entity,
                due_at,
            } => DeadlineChange::Set(Deadline {
                kind: kind.as_str().to_owned(),
                entity_id: entity,
                stream_id: event.stream_id,
                category: event.category.clone(),
                due_at,
            }),
            DeadlineEffect::Ends { kind, entity } => DeadlineChange::Clear {
                kind: kind.as_str().to_owned(),
                entity_id: entity,
            },
        }));
    }
    out
}

/// Pauses `pause` (or less, when `stop` comes); false once stopped.
async fn pause(stop: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(pause) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    !stopped && !*stop.borrow()
}

/// The follower: leads by the advisory lock, then follows the log into `deadlines`.
async fn follow(log: EventLog, poll: Duration, mut stop: watch::Receiver<bool>) {
    let categories: Vec<&str> = DeadlineKind::ALL.iter().map(|k| k.category()).collect();
    let mut failures = 0u32;
    while !*stop.borrow() {
        // Standing by ends when `stop` comes (acquire watches it).
        let mut leader = match Leader::acquire(log.pool(), LEADER_LOCK, &mut stop).await {
            Ok(Some(leader)) => leader,
            Ok(None) => return,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "the deadline follower cannot take its lock; trying again");
                if !pause(&mut stop, backoff(failures)).await {
                    return;
                }
                continue;
            }
        };
        loop {
            let round = async {
                let after = log.deadline_checkpoint().await?;
                let (events, read_up_to) = log
                    .read_types(after, &categories, DEADLINE_EVENT_TYPES, FOLLOW_BATCH)
                    .await?;
                if read_up_to > after {
                    apply_deadline_changes(leader.connection(), &changes(&events), read_up_to)
                        .await?;
                }
                Ok::<bool, eventlog::StoreError>(events.len() as i64 >= FOLLOW_BATCH)
            };
            let outcome = tokio::select! {
                outcome = round => outcome,
                _ = stop.wait_for(|s| *s) => return,
            };
            match outcome {
                Ok(more) => {
                    if std::mem::take(&mut failures) > 0 {
                        tracing::info!("the deadline follower reads the log again");
                    }
                    if more {
                        continue;
                    }
                    if !pause(&mut stop, poll).await {
                        return;
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(error = %e, "the deadline follower failed a round; retrying");
                    }
                    if !pause(&mut stop, backoff(failures)).await {
                        return;
                    }
                    if !leader.holds().await {
                        tracing::warn!("the deadline follower lost its lock; taking it again");
                        break;
                    }
                }
            }
        }
    }
}

fn backoff(failures: u32) -> Duration {
    (Duration::from_millis(100) * 2u32.saturating_pow(failures.min(4))).min(RETRY_MAX)
}

/// Pages through the due deadlines earliest first, keeping those of aggregates this
/// instance owns that it has not sent in the last [`REFIRE_AFTER`] (marked sent now), until
/// [`FIRE_BATCH`] or [`MAX_PAGES`] pages; a row of a kind this build does not know is logged
/// and forgotten.
async fn due_here(
    commands: &Commands,
    fired: &mut HashMap<(DeadlineKind, uuid::Uuid), Instant>,
    now: chrono::DateTime<Utc>,
) -> Result<Vec<(Deadline, DeadlineKind)>, eventlog::StoreError> {
    let mut due = Vec::new();
    let mut after = None;
    for _ in 0..MAX_PAGES {
        let page = commands.log.due_deadlines(now, after, FIRE_BATCH).await?;
        let full = page.len() as i64 >= FIRE_BATCH;
        after = page.last().map(|d| (d.due_at, d.entity_id));
        for deadline in page {
            let Some(kind) = DeadlineKind::parse(&deadline.kind) else {
                tracing::error!(kind = %deadline.kind, entity = %deadline.entity_id, "a deadline of a kind this build does not know; forgotten");
                commands
                    .log
                    .forget_deadline(&deadline.kind, deadline.entity_id)
                    .await?;
                continue;
            };
            if !commands.owns(deadline.stream_id) || fired.contains_key(&(kind, deadline.entity_id))
            {
                continue;
            }
            fired.insert((kind, deadline.entity_id), Instant::now());
            due.push((deadline, kind));
        }
        if !full || due.len() as i64 >= FIRE_BATCH {
            break;
        }
    }
    Ok(due)
}

/// The firer: sends the command that ends each due deadline this instance owns.
async fn fire(commands: Commands, poll: Duration, mut stop: watch::Receiver<bool>) {
    let lateness = metrics::histogram!("deadline_lateness_seconds");
    let mut fired: HashMap<(DeadlineKind, uuid::Uuid), Instant> = HashMap::new();
    let mut failures = 0u32;
    while pause(
        &mut stop,
        if failures > 0 {
            backoff(failures)
        } else {
            poll
        },
    )
    .await
    {
        let now = Utc::now();
        fired.retain(|_, at| at.elapsed() < REFIRE_AFTER);
        // Pages past what this instance skips (another member's, or sent a moment ago), so
        // they never hold back what is due after them.
        let due = match due_here(&commands, &mut fired, now).await {
            Ok(due) => due,
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %e, "cannot read the due deadlines; retrying");
                }
                continue;
            }
        };
        if std::mem::take(&mut failures) > 0 {
            tracing::info!("due deadlines are read again");
        }
        let mut sending = tokio::task::JoinSet::new();
        for (deadline, kind) in due {
            let (commands, call) = (commands.clone(), Call::system("deadlines"));
            sending.spawn(async move {
                let outcome = match kind {
                    DeadlineKind::Reservation => commands
                        .end_hold(&call, deadline.entity_id, HoldEnd::Expire)
                        .await
                        .map(|_| ()),
                    DeadlineKind::PointLot => commands
                        .expire_points(&call, deadline.stream_id, deadline.entity_id)
                        .await
                        .map(|_| ()),
                    DeadlineKind::CouponHold => commands
                        .end_coupon_hold(&call, deadline.entity_id, HoldEnd::Expire)
                        .await
                        .map(|_| ()),
                };
                (deadline, kind, outcome)
            });
        }
        let mut not_fired = 0;
        loop {
            let next = tokio::select! {
                next = sending.join_next() => next,
                _ = stop.wait_for(|s| *s) => return,
            };
            let Some(Ok((deadline, kind, outcome))) = next else {
                if next.is_none() {
                    break;
                }
                continue;
            };
            match outcome {
                Ok(()) => {
                    let late = (Utc::now() - deadline.due_at).num_milliseconds().max(0);
                    lateness.record(late as f64 / 1000.0);
                    metrics::counter!("deadlines_fired_total", "kind" => kind.as_str())
                        .increment(1);
                }
                // Ended already (confirmed, released, expired), or nothing the log knows:
                // the follower has not read that yet; forget it now.
                Err(
                    CommandError::Refused(
                        DomainError::ReservationClosed
                        | DomainError::ReservationNotFound
                        | DomainError::LotClosed
                        | DomainError::TransactionNotFound
                        | DomainError::CouponNotFound,
                    )
                    | CommandError::NotFound(_),
                ) => {
                    let _ = commands
                        .log
                        .forget_deadline(kind.as_str(), deadline.entity_id)
                        .await;
                }
                // Tried again once REFIRE_AFTER has passed (the owner changing, the database
                // failing, a writer queue full).
                Err(e) => {
                    not_fired += 1;
                    if not_fired == 1 {
                        tracing::warn!(kind = kind.as_str(), entity = %deadline.entity_id, error = %e, "a due deadline was not fired; trying again in a few seconds");
                    }
                }
            }
        }
        if not_fired > 1 {
            tracing::warn!(not_fired, "due deadlines not fired this round");
        }
    }
}
