//! Leadership among processes by a PostgreSQL session advisory lock: one relay publishes, one
//! projector per read-model schema projects, one replay-tools job per deployment runs.
//!
//! The lock lives as long as the session that took it, so it is taken on a connection of the
//! leader's own — never a pooled one: a pooled connection goes back to the pool still holding
//! the lock, and the process can then neither use it nor take it again (a relay stayed silent
//! after a broker outage that way). Dropping the [`Leader`] closes the connection, which
//! releases the lock; a process that dies releases it with its session.

use std::time::Duration;

use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio::sync::watch;

/// How often a standby tries the lock again.
const STANDBY_POLL: Duration = Duration::from_secs(1);

/// A SQL condition true while this session holds an advisory lock (a leader's connection
/// holds exactly one): guards a statement that only the leader may run.
pub const HOLDS_LOCK: &str = "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                              AND pid = pg_backend_pid() AND granted)";

/// The holder of the advisory lock named `name`, with the connection holding it.
#[derive(Debug)]
pub struct Leader {
    connection: PgConnection,
    name: String,
}

impl Leader {
    /// Takes the lock `name` if it is free; `None` if another session holds it.
    pub async fn try_acquire(pool: &PgPool, name: &str) -> Result<Option<Leader>, sqlx::Error> {
        let connection = own_connection(pool).await?;
        take(connection, name).await
    }

    /// Waits, standing by, until this process holds the lock `name`; `None` once `stop` turns
    /// true first. Standing by and taking over are logged once each.
    pub async fn acquire(
        pool: &PgPool,
        name: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<Leader>, sqlx::Error> {
        let mut standing_by = false;
        loop {
            if *stop.borrow() {
                return Ok(None);
            }
            if let Some(leader) = Self::try_acquire(pool, name).await? {
                if standing_by {
                    tracing::info!(lock = name, "the other leader is gone; taking over");
                }
                return Ok(Some(leader));
            }
            if !standing_by {
                tracing::info!(lock = name, "another process leads; standing by");
                standing_by = true;
            }
            tokio::select! {
                () = tokio::time::sleep(STANDBY_POLL) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// The connection holding the lock: run what only the leader may do on it.
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.connection
    }

    /// Whether this session still holds the lock (and the database answers).
    pub async fn holds(&mut self) -> bool {
        sqlx::query_scalar::<_, bool>(&format!("SELECT {HOLDS_LOCK}"))
            .fetch_one(&mut self.connection)
            .await
            .unwrap_or(false)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Gives the lock up now (dropping does too, closing the connection in the background).
    pub async fn release(self) {
        let _ = self.connection.close().await;
    }
}

/// A connection with the pool's settings that is not the pool's.
async fn own_connection(pool: &PgPool) -> Result<PgConnection, sqlx::Error> {
    pool.connect_options().as_ref().clone().connect().await
}

async fn take(mut connection: PgConnection, name: &str) -> Result<Option<Leader>, sqlx::Error> {
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
        .bind(name)
        .fetch_one(&mut connection)
        .await?;
    if held {
        Ok(Some(Leader {
            connection,
            name: name.to_owned(),
        }))
    } else {
        let _ = connection.close().await;
        Ok(None)
    }
}
