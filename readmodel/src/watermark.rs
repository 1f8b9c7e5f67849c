//! The watermark W: every event at or below position W is projected. Each category arrives in
//! log-position order (one partition per topic), so the projector knows, per category, the
//! highest position projected; the first event of a category above that is the first one not
//! yet projected, and the log is gap-free (ADR 5), so
//! W = min(log head, min over categories of (first unprojected position − 1)).

use domain::wire::EVENT_TYPES;

use crate::hot::HotStore;
use crate::ProjectionError;

/// Computes W from the read models in `schema` and the event log.
pub async fn compute(pool: &sqlx::PgPool, schema: &str) -> Result<i64, ProjectionError> {
    let schema = crate::projection::checked_schema(schema)?;
    let head: i64 = sqlx::query_scalar("SELECT position FROM public.log_head")
        .fetch_one(pool)
        .await?;
    let progress: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT category, position FROM {schema}.projection_progress"
    ))
    .fetch_all(pool)
    .await?;
    let mut watermark = head;
    let mut categories: Vec<&str> = EVENT_TYPES.iter().map(|t| t.category).collect();
    categories.dedup();
    for category in categories {
        let projected = progress
            .iter()
            .find(|(c, _)| c == category)
            .map_or(0, |(_, p)| *p);
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT min(position) FROM public.events WHERE category = $1 AND position > $2",
        )
        .bind(category)
        .bind(projected)
        .fetch_one(pool)
        .await?;
        if let Some(next) = next {
            watermark = watermark.min(next - 1);
        }
    }
    Ok(watermark)
}

/// Computes W and publishes it (PostgreSQL, then Redis); never lowers it.
pub async fn advance(
    pool: &sqlx::PgPool,
    hot: &mut HotStore,
    schema: &str,
) -> Result<i64, ProjectionError> {
    let schema = crate::projection::checked_schema(schema)?;
    let watermark = compute(pool, schema).await?;
    sqlx::query(&format!(
        "UPDATE {schema}.projection_watermark SET position = GREATEST(position, $1)"
    ))
    .bind(watermark)
    .execute(pool)
    .await?;
    hot.raise_watermark(watermark).await;
    Ok(watermark)
}

/// The published watermark in `schema`.
pub async fn read(pool: &sqlx::PgPool, schema: &str) -> Result<i64, ProjectionError> {
    let schema = crate::projection::checked_schema(schema)?;
    Ok(sqlx::query_scalar(&format!(
        "SELECT position FROM {schema}.projection_watermark"
    ))
    .fetch_one(pool)
    .await?)
}
