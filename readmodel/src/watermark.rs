//! The watermark W: every event of the log at or below position W is projected (applied, or
//! parked with its error). The projector follows the log in position order and the log is
//! gap-free (ADR 5), so W is simply the last position a committed batch covered; it is
//! written in that batch's transaction, then raised in Redis once the batch's hot values are
//! there. The query API answers `X-Min-Position: P` once W ≥ P.

use sqlx::PgConnection;

use crate::projection::checked_schema;
use crate::ReadModelError;

/// The watermark of `schema`, read on a pool or a connection.
pub async fn read<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    schema: &str,
) -> Result<i64, ReadModelError> {
    let schema = checked_schema(schema)?;
    Ok(sqlx::query_scalar(&format!(
        "SELECT position FROM {schema}.projection_watermark"
    ))
    .fetch_one(executor)
    .await?)
}

/// Moves the watermark of `schema` to `position` (never back), inside the caller's
/// transaction.
pub async fn set(
    conn: &mut PgConnection,
    schema: &str,
    position: i64,
) -> Result<(), ReadModelError> {
    let schema = checked_schema(schema)?;
    sqlx::query(&format!(
        "UPDATE {schema}.projection_watermark SET position = GREATEST(position, $1)"
    ))
    .bind(position)
    .execute(conn)
    .await?;
    Ok(())
}

/// The last position in the event log (the read models live beside it): what the watermark
/// can reach at most today.
pub async fn log_head<'e>(executor: impl sqlx::PgExecutor<'e>) -> Result<i64, ReadModelError> {
    Ok(sqlx::query_scalar("SELECT position FROM public.log_head")
        .fetch_one(executor)
        .await?)
}
