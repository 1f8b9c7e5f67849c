//! Read-model generations (ADR 7). A deployment's read models (PostgreSQL schema + Redis key
//! prefix) are one *generation*; replay-tools builds a new one beside the live one and then
//! switches every reader and the projector to it at once. The pointer is one row of
//! `public.read_model_generations`, keyed by the deployment's base schema name (`rm`):
//!
//! - the projector reads it `FOR SHARE` in every batch transaction and writes where it points;
//! - a switch takes it `FOR UPDATE`, so no projector batch commits while the new generation
//!   takes its last events and the pointer moves — after the commit, every batch lands in the
//!   new generation, and nothing projected into the old one is missing from the new one;
//! - the query API polls it (every 100 ms by default) and reads where it points.
//!
//! Generation 0 is the base schema and prefix themselves (`rm`, `promo:`); generation n > 0 is
//! `rm_g{n}` and `promo:g{n}:`. Key names of one prefix never match another's key patterns
//! (`promo:balance:*` does not match `promo:g2:balance:1`).

use sqlx::{PgConnection, PgPool};

use crate::projection::checked_schema;
use crate::ReadModelError;

/// Where one generation of the read models lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub number: i64,
    pub schema: String,
    pub prefix: String,
}

impl Generation {
    /// Generation `number` of the deployment with base schema `base` and base prefix `prefix`.
    pub fn new(base: &str, prefix: &str, number: i64) -> Result<Self, ReadModelError> {
        let (schema, prefix) = if number == 0 {
            (base.to_owned(), prefix.to_owned())
        } else {
            (format!("{base}_g{number}"), format!("{prefix}g{number}:"))
        };
        checked_schema(&schema)?;
        Ok(Generation {
            number,
            schema,
            prefix,
        })
    }
}

const ROW: &str =
    "SELECT generation, schema_name, redis_prefix FROM public.read_model_generations \
                   WHERE deployment = $1";

/// Creates the pointer table and the deployment's row (generation 0) if missing.
pub async fn ensure(pool: &PgPool, base: &str, prefix: &str) -> Result<(), ReadModelError> {
    let zero = Generation::new(base, prefix, 0)?;
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('read_model_generations'))")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS public.read_model_generations (\
           deployment   text PRIMARY KEY, \
           generation   bigint      NOT NULL, \
           schema_name  text        NOT NULL, \
           redis_prefix text        NOT NULL, \
           switched_at  timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO public.read_model_generations (deployment, generation, schema_name, redis_prefix) \
         VALUES ($1, 0, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(base)
    .bind(&zero.schema)
    .bind(&zero.prefix)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

fn from_row(row: Option<(i64, String, String)>) -> Result<Generation, ReadModelError> {
    let (number, schema, prefix) = row.ok_or(ReadModelError::NoGeneration)?;
    checked_schema(&schema)?;
    Ok(Generation {
        number,
        schema,
        prefix,
    })
}

/// The live generation (no lock).
pub async fn current(pool: &PgPool, base: &str) -> Result<Generation, ReadModelError> {
    from_row(sqlx::query_as(ROW).bind(base).fetch_optional(pool).await?)
}

/// How [`current_locked`] locks the pointer until the transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// A projector batch: no switch meanwhile; batches do not wait for each other.
    Share,
    /// A switch (or `verify`'s comparison): projector batches wait meanwhile.
    Update,
}

/// The live generation, locked until `conn`'s transaction ends.
pub async fn current_locked(
    conn: &mut PgConnection,
    base: &str,
    lock: Lock,
) -> Result<Generation, ReadModelError> {
    let mode = match lock {
        Lock::Share => "SHARE",
        Lock::Update => "UPDATE",
    };
    from_row(
        sqlx::query_as(&format!("{ROW} FOR {mode}"))
            .bind(base)
            .fetch_optional(conn)
            .await?,
    )
}

/// Points the deployment at `next` (inside the transaction that locked it for the switch).
pub async fn point_to(
    conn: &mut PgConnection,
    base: &str,
    next: &Generation,
) -> Result<(), ReadModelError> {
    sqlx::query(
        "UPDATE public.read_model_generations SET generation = $2, schema_name = $3, redis_prefix = $4, \
           switched_at = now() WHERE deployment = $1",
    )
    .bind(base)
    .bind(next.number)
    .bind(&next.schema)
    .bind(&next.prefix)
    .execute(conn)
    .await?;
    Ok(())
}
