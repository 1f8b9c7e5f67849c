//! The read-model schema: its tables, the check that a schema name is safe to splice into SQL,
//! and creating it.

use crate::ReadModelError;

const SCHEMA_SQL: &str = include_str!("../schema.sql");

/// The read-model tables (what a rebuild or a verification compares).
pub const TABLES: &[&str] = &[
    "coupon_policies",
    "coupons",
    "point_balances",
    "point_history",
    "products",
    "time_sales",
    "orders",
    "reservations",
    "aggregate_versions",
];

/// A read-model schema name: plain identifiers only, since it is spliced into SQL.
pub fn checked_schema(schema: &str) -> Result<&str, ReadModelError> {
    let ok = !schema.is_empty()
        && schema.len() <= 48
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(schema)
    } else {
        Err(ReadModelError::BadSchemaName(schema.to_owned()))
    }
}

/// Creates the read-model schema and tables if missing.
pub async fn ensure_schema(pool: &sqlx::PgPool, schema: &str) -> Result<(), ReadModelError> {
    let schema = checked_schema(schema)?;
    let mut tx = pool.begin().await?;
    // Two projectors starting at once must not race on CREATE … IF NOT EXISTS.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(schema)
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("SET LOCAL search_path TO {schema}"))
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(SCHEMA_SQL).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}
