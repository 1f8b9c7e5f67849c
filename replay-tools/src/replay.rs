//! Replaying the log into a read-model schema with the projector's own code
//! ([`readmodel::parked::project`], so it parks what the projector parks): a reader task pages
//! through the log and decodes (upcasting old versions) while the caller applies the previous
//! page in one transaction.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use eventlog::{EventLog, RecordedEvent};
use indicatif::ProgressBar;
use readmodel::hot::{self, HotStore};
use readmodel::parked::{self, Projected};
use readmodel::projection::{self, AnyEvent};
use readmodel::ReadModelError;
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;

/// Events per page (and per transaction).
const PAGE: i64 = 10_000;

/// Which events of the log a replay applies: those with a position above
/// `after[category]` (0 when absent), except the positions in `skip`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub after: HashMap<String, i64>,
    pub skip: HashSet<i64>,
}

impl Filter {
    fn wants(&self, event: &RecordedEvent) -> bool {
        event.position > self.after.get(&event.category).copied().unwrap_or(0)
            && !self.skip.contains(&event.position)
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Events read from the log.
    pub read: u64,
    /// Events that changed the read models (not filtered out, not already there).
    pub applied: u64,
    /// Events parked (they could not be applied; see `replay-tools parked`).
    pub parked: u64,
    /// The last position read: every wanted event up to it is applied or parked.
    pub position: i64,
}

impl Replayed {
    pub(crate) fn absorb(&mut self, other: &Replayed) {
        self.read += other.read;
        self.applied += other.applied;
        self.parked += other.parked;
        self.position = self.position.max(other.position);
    }

    fn of(read: u64, last: i64, done: &Projected) -> Self {
        Replayed {
            read,
            applied: done.applied as u64,
            parked: done.parked.len() as u64,
            position: last,
        }
    }
}

type Page = (
    Vec<(RecordedEvent, Result<AnyEvent, ReadModelError>)>,
    u64,
    i64,
);

/// Reads pages after `after` up to `until` (inclusive), decoding the wanted events: (the
/// wanted events, how many were read, the last position read).
fn read_pages(
    log: EventLog,
    after: i64,
    until: i64,
    filter: Arc<Filter>,
) -> mpsc::Receiver<anyhow::Result<Page>> {
    let (pages, receiver) = mpsc::channel(2);
    tokio::spawn(async move {
        let mut after = after;
        while after < until {
            let page = match log.read_all(after, PAGE).await {
                Ok(mut events) => {
                    events.retain(|e| e.position <= until);
                    let Some(last) = events.last().map(|e| e.position) else {
                        return;
                    };
                    after = last;
                    let read = events.len() as u64;
                    let wanted = events
                        .into_iter()
                        .filter(|e| filter.wants(e))
                        .map(|e| {
                            let decoded = projection::decode(&e);
                            (e, decoded)
                        })
                        .collect();
                    Ok((wanted, read, last))
                }
                Err(e) => Err(e.into()),
            };
            let failed = page.is_err();
            if pages.send(page).await.is_err() || failed {
                return;
            }
        }
    });
    receiver
}

/// Replays the wanted events with positions in `(after, until]` into `schema`, one
/// transaction per page; with `hot`, also writes each page's hot values.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn replay(
    log: &EventLog,
    pool: &PgPool,
    schema: &str,
    after: i64,
    until: i64,
    filter: &Filter,
    mut hot: Option<&mut HotStore>,
    bar: &ProgressBar,
) -> anyhow::Result<Replayed> {
    let mut pages = read_pages(log.clone(), after, until, Arc::new(filter.clone()));
    let mut done = Replayed {
        position: after,
        ..Replayed::default()
    };
    while let Some(page) = pages.recv().await {
        let (batch, read, last) = page?;
        let mut tx = pool.begin().await?;
        let projected = parked::project_decoded(&mut tx, schema, batch, true).await?;
        tx.commit().await?;
        if let Some(hot) = hot.as_deref_mut() {
            write_hot(hot, &projected).await?;
        }
        done.absorb(&Replayed::of(read, last, &projected));
        bar.set_position(last.max(0) as u64);
    }
    Ok(done)
}

/// Replays every wanted event after `after` into `schema` on `conn` inside the caller's
/// transaction (the switch), writing the hot values too.
pub(crate) async fn replay_in(
    log: &EventLog,
    conn: &mut PgConnection,
    schema: &str,
    after: i64,
    filter: &Filter,
    hot: &mut HotStore,
) -> anyhow::Result<Replayed> {
    let mut pages = read_pages(log.clone(), after, i64::MAX, Arc::new(filter.clone()));
    let mut done = Replayed {
        position: after,
        ..Replayed::default()
    };
    while let Some(page) = pages.recv().await {
        let (batch, read, last) = page?;
        let projected = parked::project_decoded(conn, schema, batch, true).await?;
        write_hot(hot, &projected).await?;
        done.absorb(&Replayed::of(read, last, &projected));
    }
    Ok(done)
}

/// Writes the hot values of what a projection step put into the read models.
pub(crate) async fn write_hot(hot: &mut HotStore, done: &Projected) -> anyhow::Result<()> {
    for chunk in hot::hot_writes(hot.prefix(), &done.projected).chunks(1_000) {
        if !hot.write(chunk).await {
            anyhow::bail!("Redis failed while writing hot values");
        }
    }
    Ok(())
}
