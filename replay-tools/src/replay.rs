//! Replaying the log into a read-model schema with the projector's own code: a reader task
//! pages through the log and decodes (upcasting old versions) while the caller applies the
//! previous page in one transaction.

use std::collections::HashMap;
use std::sync::Arc;

use eventlog::EventLog;
use indicatif::ProgressBar;
use messaging::envelope::Envelope;
use projector::hot::{self, HotStore};
use projector::projection::{self, AnyEvent};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::mpsc;

/// Events per page (and per transaction).
const PAGE: i64 = 10_000;

/// Which events of the log a replay applies, per category: those with a position above
/// `after[category]` (0 when absent) and, when `upto` is set, at or below `upto[category]`
/// (0 when absent).
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub after: HashMap<String, i64>,
    pub upto: Option<HashMap<String, i64>>,
}

impl Filter {
    fn wants(&self, category: &str, position: i64) -> bool {
        let above = position > self.after.get(category).copied().unwrap_or(0);
        let below = self
            .upto
            .as_ref()
            .is_none_or(|upto| position <= upto.get(category).copied().unwrap_or(0));
        above && below
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Events read from the log.
    pub read: u64,
    /// Events that changed the read models (not filtered out, not already there).
    pub applied: u64,
    /// The last position read: every wanted event up to it is applied.
    pub position: i64,
}

impl Replayed {
    pub(crate) fn absorb(&mut self, other: &Replayed) {
        self.read += other.read;
        self.applied += other.applied;
        self.position = self.position.max(other.position);
    }
}

/// One decoded page: the wanted events and the last position read.
struct Page {
    batch: Vec<(Envelope, AnyEvent)>,
    read: u64,
    last: i64,
}

/// Reads pages after `after` up to `until` (inclusive), decoding the wanted events.
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
            let page = async {
                let mut events = log.read_all(after, PAGE).await?;
                events.retain(|e| e.position <= until);
                let Some(last) = events.last().map(|e| e.position) else {
                    return Ok(None);
                };
                let read = events.len() as u64;
                let batch = events
                    .iter()
                    .filter(|e| filter.wants(&e.category, e.position))
                    .map(|e| {
                        let envelope = relay::envelope(e);
                        projection::decode(&envelope)
                            .map(|event| (envelope, event))
                            .map_err(|err| {
                                anyhow::anyhow!("event at position {}: {err}", e.position)
                            })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                anyhow::Ok(Some(Page { batch, read, last }))
            }
            .await;
            let done = !matches!(page, Ok(Some(_)));
            if let Some(page) = page.transpose() {
                if let Ok(page) = &page {
                    after = page.last;
                }
                if pages.send(page).await.is_err() {
                    return;
                }
            }
            if done {
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
        let page = page?;
        let mut tx = pool.begin().await?;
        let applied = projection::apply_batch(&mut tx, schema, &page.batch).await?;
        tx.commit().await?;
        if let Some(hot) = hot.as_deref_mut() {
            write_hot(hot, &page.batch).await?;
        }
        done.absorb(&Replayed {
            read: page.read,
            applied: applied.applied as u64,
            position: page.last,
        });
        bar.set_position(page.last.max(0) as u64);
    }
    Ok(done)
}

/// Replays every wanted event after `after` into `schema` inside `tx` (the switch), writing
/// the hot values too.
pub(crate) async fn replay_in(
    log: &EventLog,
    tx: &mut Transaction<'_, Postgres>,
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
        let page = page?;
        let applied = projection::apply_batch(tx, schema, &page.batch).await?;
        write_hot(hot, &page.batch).await?;
        done.absorb(&Replayed {
            read: page.read,
            applied: applied.applied as u64,
            position: page.last,
        });
    }
    Ok(done)
}

async fn write_hot(hot: &mut HotStore, batch: &[(Envelope, AnyEvent)]) -> anyhow::Result<()> {
    for chunk in hot::hot_writes(hot.prefix(), batch).chunks(1_000) {
        if !hot.write(chunk).await {
            anyhow::bail!("Redis failed while writing hot values");
        }
    }
    Ok(())
}
