//! Leadership among processes by a PostgreSQL session advisory lock: one relay publishes, one
//! projector per read-model schema projects, one replay-tools job per deployment runs.
//!
//! The lock lives as long as the session that took it, so it is taken on a connection of the
//! leader's own — never a pooled one: a pooled connection goes back to the pool still holding
//! the lock, and the process can then neither use it nor take it again (a relay stayed silent
//! after a broker outage that way). What only the leader may do runs on that connection: a
//! statement there can run only while its session, and so its lock, lives. Dropping the
//! [`Leader`] closes the connection, which releases the lock; a process that dies releases it
//! with its session, and the server's TCP keepalives (set below) find a vanished host within
//! about 25 s.

use std::time::Duration;

use sqlx::{ConnectOptions, PgConnection, PgPool};
use tokio::sync::watch;

/// How often a standby tries the lock again.
const STANDBY_POLL: Duration = Duration::from_secs(1);
/// Longest wait for a connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The holder of the advisory lock named `name`, with the connection holding it.
#[derive(Debug)]
pub struct Leader {
    connection: PgConnection,
}

impl Leader {
    /// Takes the lock `name` if it is free; `None` if another session holds it.
    pub async fn try_acquire(pool: &PgPool, name: &str) -> Result<Option<Leader>, sqlx::Error> {
        let mut connection = own_connection(pool).await?;
        Ok(take(&mut connection, name)
            .await?
            .then_some(Leader { connection }))
    }

    /// Waits, standing by, until this process holds the lock `name`; `None` once `stop` turns
    /// true (or its sender is gone) first. Standing by and taking over are logged once each.
    pub async fn acquire(
        pool: &PgPool,
        name: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<Leader>, sqlx::Error> {
        let mut connection = own_connection(pool).await?;
        let mut standing_by = false;
        loop {
            if *stop.borrow() {
                return Ok(None);
            }
            if take(&mut connection, name).await? {
                if standing_by {
                    tracing::info!(lock = name, "the other leader is gone; taking over");
                }
                return Ok(Some(Leader { connection }));
            }
            if !standing_by {
                tracing::info!(lock = name, "another process leads; standing by");
                standing_by = true;
            }
            tokio::select! {
                () = tokio::time::sleep(STANDBY_POLL) => {}
                changed = stop.changed() => if changed.is_err() { return Ok(None) },
            }
        }
    }

    /// The connection holding the lock: run what only the leader may do on it.
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.connection
    }

    /// Whether this session still answers (and so still holds the lock).
    pub async fn holds(&mut self) -> bool {
        sqlx::query("SELECT 1")
            .execute(&mut self.connection)
            .await
            .is_ok()
    }
}

/// A connection with the pool's settings that is not the pool's, opened within
/// [`CONNECT_TIMEOUT`]. The server probes it every few seconds once idle (a leader on a host
/// that vanished loses its lock in ~25 s, not the OS default of two hours), and a lock wait or
/// statement that hangs fails instead (the caller logs it and tries again).
async fn own_connection(pool: &PgPool) -> Result<PgConnection, sqlx::Error> {
    let options = pool.connect_options().as_ref().clone().options([
        ("tcp_keepalives_idle", "10"),
        ("tcp_keepalives_interval", "5"),
        ("tcp_keepalives_count", "3"),
        ("lock_timeout", "30s"),
        ("statement_timeout", "60s"),
    ]);
    tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .map_err(|_| {
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting to the database timed out",
            ))
        })?
}

/// Tries the lock on `connection`.
async fn take(connection: &mut PgConnection, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
        .bind(name)
        .fetch_one(connection)
        .await
}
