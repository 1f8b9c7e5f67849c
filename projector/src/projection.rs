//! Applying events to the PostgreSQL read models. Idempotent: an event whose aggregate version
//! is not above the version the read models already reflect is skipped, so redelivery and
//! replay change nothing. Every write of a batch and the progress it makes commit together.

use std::collections::HashMap;

use domain::coupon::CouponEvent;
use domain::points::PointEvent;
use domain::product::ProductEvent;
use domain::time_sale::TimeSaleEvent;
use domain::wire::WireCodec;
use messaging::envelope::Envelope;
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::ProjectionError;

const SCHEMA_SQL: &str = include_str!("schema.sql");

/// The read-model tables (what a rebuild or a verification compares).
pub const TABLES: &[&str] = &[
    "coupon_policies",
    "coupons",
    "point_balances",
    "point_history",
    "products",
    "time_sales",
    "orders",
    "aggregate_versions",
];

/// A read-model schema name: plain identifiers only, since it is spliced into SQL.
pub fn checked_schema(schema: &str) -> Result<&str, ProjectionError> {
    let ok = !schema.is_empty()
        && schema.len() <= 48
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(schema)
    } else {
        Err(ProjectionError::BadSchemaName(schema.to_owned()))
    }
}

/// Creates the read-model schema and tables if missing.
pub async fn ensure_schema(pool: &sqlx::PgPool, schema: &str) -> Result<(), ProjectionError> {
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

/// A decoded event of any aggregate.
#[derive(Debug, Clone)]
pub enum AnyEvent {
    Coupon(CouponEvent),
    Point(PointEvent),
    Product(ProductEvent),
    TimeSale(TimeSaleEvent),
}

pub fn decode(envelope: &Envelope) -> Result<AnyEvent, ProjectionError> {
    let wire = envelope.wire();
    let decoded = match envelope.aggregate_type.as_str() {
        "coupon" => CouponEvent::from_wire(&wire).map(AnyEvent::Coupon),
        "point" => PointEvent::from_wire(&wire).map(AnyEvent::Point),
        "product" => ProductEvent::from_wire(&wire).map(AnyEvent::Product),
        "timesale" => TimeSaleEvent::from_wire(&wire).map(AnyEvent::TimeSale),
        other => return Err(ProjectionError::UnknownCategory(other.to_owned())),
    };
    decoded.map_err(|e| ProjectionError::Undecodable(e.to_string()))
}

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub applied: usize,
    pub skipped: usize,
}

/// Applies a batch (in delivery order) inside `tx`, into `schema`.
pub async fn apply_batch(
    tx: &mut Transaction<'_, Postgres>,
    schema: &str,
    batch: &[(Envelope, AnyEvent)],
) -> Result<Applied, ProjectionError> {
    let schema = checked_schema(schema)?;
    let conn: &mut PgConnection = tx;
    sqlx::query(&format!("SET LOCAL search_path TO {schema}"))
        .execute(&mut *conn)
        .await?;

    let ids: Vec<Uuid> = batch.iter().map(|(e, _)| e.aggregate_id).collect();
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT aggregate_id, version FROM aggregate_versions WHERE aggregate_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut versions: HashMap<Uuid, i64> = rows.into_iter().collect();
    let mut changed: HashMap<Uuid, (&str, i64)> = HashMap::new();
    let mut progress: HashMap<&str, i64> = HashMap::new();
    let mut outcome = Applied::default();

    for (envelope, event) in batch {
        let progress_entry = progress
            .entry(envelope.aggregate_type.as_str())
            .or_insert(0);
        *progress_entry = (*progress_entry).max(envelope.position);
        let current = versions.get(&envelope.aggregate_id).copied().unwrap_or(0);
        if envelope.aggregate_version <= current {
            outcome.skipped += 1;
            continue;
        }
        apply(conn, envelope, event).await?;
        versions.insert(envelope.aggregate_id, envelope.aggregate_version);
        changed.insert(
            envelope.aggregate_id,
            (envelope.aggregate_type.as_str(), envelope.aggregate_version),
        );
        outcome.applied += 1;
    }

    if !changed.is_empty() {
        let (ids, rest): (Vec<Uuid>, Vec<(&str, i64)>) = changed.into_iter().unzip();
        let (categories, versions): (Vec<&str>, Vec<i64>) = rest.into_iter().unzip();
        sqlx::query(
            "INSERT INTO aggregate_versions (aggregate_id, category, version) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[]) \
             ON CONFLICT (aggregate_id) DO UPDATE SET version = GREATEST(aggregate_versions.version, EXCLUDED.version)",
        )
        .bind(&ids)
        .bind(&categories)
        .bind(&versions)
        .execute(&mut *conn)
        .await?;
    }
    for (category, position) in progress {
        sqlx::query(
            "INSERT INTO projection_progress (category, position) VALUES ($1, $2) \
             ON CONFLICT (category) DO UPDATE SET position = GREATEST(projection_progress.position, EXCLUDED.position)",
        )
        .bind(category)
        .bind(position)
        .execute(&mut *conn)
        .await?;
    }
    Ok(outcome)
}

async fn apply(
    conn: &mut PgConnection,
    envelope: &Envelope,
    event: &AnyEvent,
) -> Result<(), sqlx::Error> {
    let id = envelope.aggregate_id;
    let version = envelope.aggregate_version;
    let at = envelope.occurred_at;
    match event {
        AnyEvent::Coupon(CouponEvent::PolicyCreated { spec }) => {
            let terms = spec.terms();
            sqlx::query(
                "INSERT INTO coupon_policies (policy_id, title, description, total_quantity, start_time, end_time, \
                   discount_type, discount_value, minimum_order_amount, maximum_discount_amount, coupon_expires_at, \
                   issued_count, used_count, created_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, 0, $12, $13) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(spec.title().as_str())
            .bind(spec.description().as_str())
            .bind(i64::from(spec.total_quantity().get()))
            .bind(spec.start_time())
            .bind(spec.end_time())
            .bind(serde_json::to_value(terms.discount_type()).ok().and_then(|v| v.as_str().map(str::to_owned)))
            .bind(terms.discount_value())
            .bind(terms.minimum_order_amount().get())
            .bind(terms.maximum_discount_amount().get())
            .bind(spec.coupon_expiry())
            .bind(at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
        AnyEvent::Coupon(CouponEvent::CouponIssued {
            coupon_id,
            user_id,
            expires_at,
            issued_count,
            at,
        }) => {
            sqlx::query(
                "INSERT INTO coupons (coupon_id, policy_id, user_id, state, expires_at, issued_at, updated_at) \
                 VALUES ($1, $2, $3, 'AVAILABLE', $4, $5, $5) ON CONFLICT DO NOTHING",
            )
            .bind(coupon_id)
            .bind(id)
            .bind(user_id.get())
            .bind(expires_at)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            policy_counts(conn, id, version, Some(*issued_count), None).await?;
        }
        AnyEvent::Coupon(CouponEvent::CouponUsed {
            coupon_id,
            order_id,
            order_amount,
            discount,
            used_count,
            at,
            ..
        }) => {
            sqlx::query(
                "UPDATE coupons SET state = 'USED', order_id = $2, order_amount = $3, discount_amount = $4, \
                   used_at = $5, updated_at = $5 WHERE coupon_id = $1",
            )
            .bind(coupon_id)
            .bind(order_id.as_str())
            .bind(order_amount.get())
            .bind(discount.get())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            policy_counts(conn, id, version, None, Some(*used_count)).await?;
        }
        AnyEvent::Coupon(CouponEvent::CouponUseCanceled {
            coupon_id,
            used_count,
            at,
            ..
        }) => {
            sqlx::query(
                "UPDATE coupons SET state = 'AVAILABLE', order_id = NULL, order_amount = NULL, \
                   discount_amount = NULL, used_at = NULL, updated_at = $2 WHERE coupon_id = $1",
            )
            .bind(coupon_id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            policy_counts(conn, id, version, None, Some(*used_count)).await?;
        }
        AnyEvent::Coupon(CouponEvent::CouponRevoked { coupon_id, at, .. }) => {
            sqlx::query(
                "UPDATE coupons SET state = 'CANCELED', updated_at = $2 WHERE coupon_id = $1",
            )
            .bind(coupon_id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            policy_counts(conn, id, version, None, None).await?;
        }
        AnyEvent::Point(event) => {
            let (order_id, canceled) = match event {
                PointEvent::Spent { order_id, .. } => {
                    (order_id.as_ref().map(|o| o.as_str().to_owned()), None)
                }
                PointEvent::Canceled {
                    canceled_transaction_id,
                    ..
                } => (None, Some(*canceled_transaction_id)),
                PointEvent::Earned { .. } => (None, None),
            };
            let description = match event {
                PointEvent::Earned { description, .. } | PointEvent::Spent { description, .. } => {
                    description.as_str().to_owned()
                }
                PointEvent::Canceled { .. } => "cancellation".to_owned(),
            };
            sqlx::query(
                "INSERT INTO point_history (transaction_id, user_id, version, type, amount, description, order_id, \
                   canceled_transaction_id, balance_after, occurred_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            )
            .bind(event.transaction_id())
            .bind(event.user_id().get())
            .bind(version)
            .bind(serde_json::to_value(event.kind()).ok().and_then(|v| v.as_str().map(str::to_owned)))
            .bind(event.amount().get())
            .bind(description)
            .bind(order_id)
            .bind(canceled)
            .bind(event.balance_after())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO point_balances (user_id, balance, version, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id) DO UPDATE SET balance = EXCLUDED.balance, version = EXCLUDED.version, \
                   updated_at = EXCLUDED.updated_at WHERE point_balances.version < EXCLUDED.version",
            )
            .bind(event.user_id().get())
            .bind(event.balance_after())
            .bind(version)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        AnyEvent::Product(ProductEvent::ProductCreated { spec, at }) => {
            sqlx::query(
                "INSERT INTO products (product_id, name, price, description, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(spec.name.as_str())
            .bind(spec.price.get())
            .bind(spec.description.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        AnyEvent::TimeSale(TimeSaleEvent::TimeSaleCreated { spec, at }) => {
            sqlx::query(
                "INSERT INTO time_sales (time_sale_id, product_id, product_price, discount_price, quantity, remaining, \
                   start_at, end_at, per_user_limit, created_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(spec.product_id())
            .bind(spec.product_price().get())
            .bind(spec.discount_price().get())
            .bind(i64::from(spec.quantity().get()))
            .bind(spec.start_at())
            .bind(spec.end_at())
            .bind(spec.per_user_limit().map(|l| i64::from(l.get())))
            .bind(at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
        AnyEvent::TimeSale(TimeSaleEvent::OrderPlaced {
            order_id,
            user_id,
            quantity,
            unit_price,
            total_price,
            remaining_after,
            at,
        }) => {
            sqlx::query(
                "INSERT INTO orders (order_id, time_sale_id, user_id, quantity, unit_price, total_price, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'CREATED', $7) ON CONFLICT DO NOTHING",
            )
            .bind(order_id)
            .bind(id)
            .bind(user_id.get())
            .bind(i64::from(quantity.get()))
            .bind(unit_price.get())
            .bind(total_price.get())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            sale_stock(conn, id, version, *remaining_after).await?;
        }
        AnyEvent::TimeSale(TimeSaleEvent::OrderCanceled {
            order_id,
            remaining_after,
            at,
            ..
        }) => {
            sqlx::query(
                "UPDATE orders SET status = 'CANCELED', canceled_at = $2 WHERE order_id = $1",
            )
            .bind(order_id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            sale_stock(conn, id, version, *remaining_after).await?;
        }
    }
    Ok(())
}

async fn policy_counts(
    conn: &mut PgConnection,
    policy_id: Uuid,
    version: i64,
    issued: Option<u32>,
    used: Option<u32>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE coupon_policies SET issued_count = COALESCE($3, issued_count), \
           used_count = COALESCE($4, used_count), version = $2 WHERE policy_id = $1",
    )
    .bind(policy_id)
    .bind(version)
    .bind(issued.map(i64::from))
    .bind(used.map(i64::from))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn sale_stock(
    conn: &mut PgConnection,
    sale_id: Uuid,
    version: i64,
    remaining: u32,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE time_sales SET remaining = $3, version = $2 WHERE time_sale_id = $1")
        .bind(sale_id)
        .bind(version)
        .bind(i64::from(remaining))
        .execute(&mut *conn)
        .await?;
    Ok(())
}
