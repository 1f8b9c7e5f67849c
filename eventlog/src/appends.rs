//! Waking the log's followers (the relay, the projector) as soon as an append commits: every
//! append notifies [`CHANNEL`] inside its transaction (PostgreSQL delivers it on commit), and
//! [`Appends`] listens on a connection of its own. A notification can be lost — the listening
//! connection drops, the database restarts — so a follower also polls (see [`Appends::next`]).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The channel every append notifies, with the log head as payload.
pub const CHANNEL: &str = "promo_events_appended";

/// Wait before listening again after the listener failed.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

/// Notifications of committed appends. Stops listening when dropped.
#[derive(Debug)]
pub struct Appends {
    appended: Arc<Notify>,
    listener: JoinHandle<()>,
}

impl Appends {
    /// Starts listening on a connection taken from `pool` for as long as this lives.
    pub fn listen(pool: PgPool) -> Self {
        let appended = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(pool, appended.clone()));
        Self { appended, listener }
    }

    /// Completes at the first append committed since the previous call returned (at once if
    /// one came meanwhile), or after `poll` at the latest.
    pub async fn next(&self, poll: Duration) {
        let _ = tokio::time::timeout(poll, self.appended.notified()).await;
    }
}

impl Drop for Appends {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

async fn listen(pool: PgPool, appended: Arc<Notify>) {
    let mut failing = false;
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match listening {
            Ok(listener) => listener,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot listen for appends; polling the log meanwhile");
                    failing = true;
                }
                tokio::time::sleep(RELISTEN_AFTER).await;
                continue;
            }
        };
        if std::mem::take(&mut failing) {
            tracing::info!("listening for appends again");
        }
        // Whatever was appended while nobody listened.
        appended.notify_one();
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => appended.notify_one(),
                // The connection dropped and was made again: notifications in between are lost.
                Ok(None) => appended.notify_one(),
                Err(e) => {
                    tracing::warn!(error = %e, "listening for appends failed; polling the log meanwhile");
                    failing = true;
                    break;
                }
            }
        }
        tokio::time::sleep(RELISTEN_AFTER).await;
    }
}
