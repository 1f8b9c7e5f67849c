//! Applying events to the PostgreSQL read models. Idempotent: an event whose aggregate version
//! is not above the version the read models already reflect is skipped, so redelivery and
//! replay change nothing. Every write of a batch commits in the caller's transaction, with
//! the watermark it moves.
//!
//! A batch is first folded in memory into the final state of each row it touches
//! ([`Changes`]), then written with one set-based statement per table and kind of change
//! (`unnest` arrays), so a batch of 10,000 events costs about a dozen round trips, not
//! 20,000. The live projector and replay-tools' rebuild run this same code.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::coupon::CouponEvent;
use domain::points::PointEvent;
use domain::product::ProductEvent;
use domain::time_sale::TimeSaleEvent;
use domain::wire::{WireCodec, WireEvent};
use eventlog::RecordedEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ReadModelError;

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

/// A decoded event of any aggregate.
#[derive(Debug, Clone)]
pub enum AnyEvent {
    Coupon(CouponEvent),
    Point(PointEvent),
    Product(ProductEvent),
    TimeSale(TimeSaleEvent),
}

/// An event of the log with its decoded (upcast) domain event: what a batch applies.
pub type Decoded = (RecordedEvent, AnyEvent);

/// The domain event inside a recorded one, upcast from older versions.
pub fn decode(event: &RecordedEvent) -> Result<AnyEvent, ReadModelError> {
    let version = u16::try_from(event.schema_version).map_err(|_| {
        ReadModelError::Undecodable(format!("schema version {}", event.schema_version))
    })?;
    let wire = WireEvent {
        event_type: event.event_type.clone(),
        version,
        data: event.data.clone(),
    };
    let decoded = match event.category.as_str() {
        "coupon" => CouponEvent::from_wire(&wire).map(AnyEvent::Coupon),
        "point" => PointEvent::from_wire(&wire).map(AnyEvent::Point),
        "product" => ProductEvent::from_wire(&wire).map(AnyEvent::Product),
        "timesale" => TimeSaleEvent::from_wire(&wire).map(AnyEvent::TimeSale),
        other => return Err(ReadModelError::UnknownCategory(other.to_owned())),
    };
    decoded.map_err(|e| ReadModelError::Undecodable(e.to_string()))
}

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Events that changed the read models (the others were there already).
    pub applied: usize,
}

/// Applies a batch (in log order) on `conn`, inside the caller's transaction, into `schema`.
pub async fn apply_batch(
    conn: &mut PgConnection,
    schema: &str,
    batch: &[Decoded],
) -> Result<Applied, ReadModelError> {
    let schema = checked_schema(schema)?;
    let mut ids: Vec<Uuid> = batch.iter().map(|(e, _)| e.stream_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(&format!(
        "SELECT aggregate_id, version FROM {schema}.aggregate_versions WHERE aggregate_id = ANY($1)",
    ))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut versions: HashMap<Uuid, i64> = rows.into_iter().collect();
    let mut changed: HashMap<Uuid, (&str, i64)> = HashMap::new();
    let mut changes = Changes::default();
    let mut outcome = Applied::default();

    for (recorded, event) in batch {
        let current = versions.get(&recorded.stream_id).copied().unwrap_or(0);
        if recorded.version <= current {
            continue;
        }
        changes.fold(recorded, event);
        versions.insert(recorded.stream_id, recorded.version);
        changed.insert(
            recorded.stream_id,
            (recorded.category.as_str(), recorded.version),
        );
        outcome.applied += 1;
    }
    changes.write(conn, schema).await?;

    if !changed.is_empty() {
        let (ids, rest): (Vec<Uuid>, Vec<(&str, i64)>) = changed.into_iter().unzip();
        let (categories, versions): (Vec<&str>, Vec<i64>) = rest.into_iter().unzip();
        sqlx::query(&format!(
            "INSERT INTO {schema}.aggregate_versions AS v (aggregate_id, category, version) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[]) \
             ON CONFLICT (aggregate_id) DO UPDATE SET version = GREATEST(v.version, EXCLUDED.version)",
            ))
        .bind(&ids)
        .bind(&categories)
        .bind(&versions)
        .execute(&mut *conn)
        .await?;
    }
    Ok(outcome)
}

fn text_of<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
struct PolicyRow {
    title: String,
    description: String,
    total_quantity: i64,
    start_time: DateTime<Utc>,
    end_time: DateTime<Utc>,
    discount_type: String,
    discount_value: i64,
    minimum_order_amount: i64,
    maximum_discount_amount: i64,
    coupon_expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    counts: PolicyCounts,
}

/// The mutable part of a policy row.
#[derive(Debug, Clone, Copy, Default)]
struct PolicyCounts {
    issued: Option<i64>,
    used: Option<i64>,
    version: i64,
}

#[derive(Debug, Clone)]
struct CouponRow {
    policy_id: Uuid,
    user_id: i64,
    expires_at: DateTime<Utc>,
    issued_at: DateTime<Utc>,
    current: CouponUse,
}

/// The mutable part of a coupon row (every column is set: a revoked or re-opened coupon has
/// no order).
#[derive(Debug, Clone)]
struct CouponUse {
    state: &'static str,
    order_id: Option<String>,
    order_amount: Option<i64>,
    discount_amount: Option<i64>,
    used_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct HistoryRow {
    transaction_id: Uuid,
    user_id: i64,
    version: i64,
    kind: String,
    amount: i64,
    description: String,
    order_id: Option<String>,
    canceled_transaction_id: Option<Uuid>,
    balance_after: i64,
    occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct SaleRow {
    product_id: Uuid,
    product_price: i64,
    discount_price: i64,
    quantity: i64,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    per_user_limit: Option<i64>,
    created_at: DateTime<Utc>,
    remaining: i64,
    version: i64,
}

#[derive(Debug, Clone)]
struct OrderRow {
    time_sale_id: Uuid,
    user_id: i64,
    quantity: i64,
    unit_price: i64,
    total_price: i64,
    created_at: DateTime<Utc>,
    canceled_at: Option<DateTime<Utc>>,
}

/// The net effect of a batch on every row it touches: rows created in the batch (with every
/// later change of the batch folded in) and updates of rows that existed before it.
#[derive(Debug, Default)]
struct Changes {
    policies: HashMap<Uuid, PolicyRow>,
    policy_counts: HashMap<Uuid, PolicyCounts>,
    coupons: HashMap<Uuid, CouponRow>,
    coupon_uses: HashMap<Uuid, CouponUse>,
    history: Vec<HistoryRow>,
    /// user → (balance, version, updated_at)
    balances: HashMap<i64, (i64, i64, DateTime<Utc>)>,
    products: Vec<(Uuid, String, i64, String, DateTime<Utc>)>,
    sales: HashMap<Uuid, SaleRow>,
    /// sale → (remaining, version)
    stock: HashMap<Uuid, (i64, i64)>,
    orders: HashMap<Uuid, OrderRow>,
    /// order → canceled_at
    cancels: HashMap<Uuid, DateTime<Utc>>,
}

impl Changes {
    fn fold(&mut self, recorded: &RecordedEvent, event: &AnyEvent) {
        let id = recorded.stream_id;
        let version = recorded.version;
        match event {
            AnyEvent::Coupon(CouponEvent::PolicyCreated { spec }) => {
                let terms = spec.terms();
                self.policies.insert(
                    id,
                    PolicyRow {
                        title: spec.title().as_str().to_owned(),
                        description: spec.description().as_str().to_owned(),
                        total_quantity: i64::from(spec.total_quantity().get()),
                        start_time: spec.start_time(),
                        end_time: spec.end_time(),
                        discount_type: text_of(&terms.discount_type()),
                        discount_value: terms.discount_value(),
                        minimum_order_amount: terms.minimum_order_amount().get(),
                        maximum_discount_amount: terms.maximum_discount_amount().get(),
                        coupon_expires_at: spec.coupon_expiry(),
                        created_at: recorded.recorded_at,
                        counts: PolicyCounts {
                            issued: Some(0),
                            used: Some(0),
                            version,
                        },
                    },
                );
            }
            AnyEvent::Coupon(CouponEvent::CouponIssued {
                coupon_id,
                user_id,
                expires_at,
                issued_count,
                at,
            }) => {
                self.coupons.insert(
                    *coupon_id,
                    CouponRow {
                        policy_id: id,
                        user_id: user_id.get(),
                        expires_at: *expires_at,
                        issued_at: *at,
                        current: CouponUse::open(*at),
                    },
                );
                self.count(id, version, Some(*issued_count), None);
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
                self.coupon_use(
                    *coupon_id,
                    CouponUse {
                        state: "USED",
                        order_id: Some(order_id.as_str().to_owned()),
                        order_amount: Some(order_amount.get()),
                        discount_amount: Some(discount.get()),
                        used_at: Some(*at),
                        updated_at: *at,
                    },
                );
                self.count(id, version, None, Some(*used_count));
            }
            AnyEvent::Coupon(CouponEvent::CouponUseCanceled {
                coupon_id,
                used_count,
                at,
                ..
            }) => {
                self.coupon_use(*coupon_id, CouponUse::open(*at));
                self.count(id, version, None, Some(*used_count));
            }
            AnyEvent::Coupon(CouponEvent::CouponRevoked { coupon_id, at, .. }) => {
                // Only an available coupon can be revoked: it has no order to clear.
                self.coupon_use(
                    *coupon_id,
                    CouponUse {
                        state: "CANCELED",
                        ..CouponUse::open(*at)
                    },
                );
                self.count(id, version, None, None);
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
                    PointEvent::Earned { description, .. }
                    | PointEvent::Spent { description, .. } => description.as_str().to_owned(),
                    PointEvent::Canceled { .. } => "cancellation".to_owned(),
                };
                let user_id = event.user_id().get();
                self.history.push(HistoryRow {
                    transaction_id: event.transaction_id(),
                    user_id,
                    version,
                    kind: text_of(&event.kind()),
                    amount: event.amount().get(),
                    description,
                    order_id,
                    canceled_transaction_id: canceled,
                    balance_after: event.balance_after(),
                    occurred_at: recorded.recorded_at,
                });
                self.balances.insert(
                    user_id,
                    (event.balance_after(), version, recorded.recorded_at),
                );
            }
            AnyEvent::Product(ProductEvent::ProductCreated { spec, at }) => {
                self.products.push((
                    id,
                    spec.name.as_str().to_owned(),
                    spec.price.get(),
                    spec.description.as_str().to_owned(),
                    *at,
                ));
            }
            AnyEvent::TimeSale(TimeSaleEvent::TimeSaleCreated { spec, at }) => {
                self.sales.insert(
                    id,
                    SaleRow {
                        product_id: spec.product_id(),
                        product_price: spec.product_price().get(),
                        discount_price: spec.discount_price().get(),
                        quantity: i64::from(spec.quantity().get()),
                        start_at: spec.start_at(),
                        end_at: spec.end_at(),
                        per_user_limit: spec.per_user_limit().map(|l| i64::from(l.get())),
                        created_at: *at,
                        remaining: i64::from(spec.quantity().get()),
                        version,
                    },
                );
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
                self.orders.insert(
                    *order_id,
                    OrderRow {
                        time_sale_id: id,
                        user_id: user_id.get(),
                        quantity: i64::from(quantity.get()),
                        unit_price: unit_price.get(),
                        total_price: total_price.get(),
                        created_at: *at,
                        canceled_at: None,
                    },
                );
                self.remaining(id, version, *remaining_after);
            }
            AnyEvent::TimeSale(TimeSaleEvent::OrderCanceled {
                order_id,
                remaining_after,
                at,
                ..
            }) => {
                match self.orders.get_mut(order_id) {
                    Some(order) => order.canceled_at = Some(*at),
                    None => {
                        self.cancels.insert(*order_id, *at);
                    }
                }
                self.remaining(id, version, *remaining_after);
            }
        }
    }

    /// Changes of a row created in this batch go into its insert; others become updates.
    fn count(&mut self, policy: Uuid, version: i64, issued: Option<u32>, used: Option<u32>) {
        let counts = match self.policies.get_mut(&policy) {
            Some(row) => &mut row.counts,
            None => self.policy_counts.entry(policy).or_default(),
        };
        counts.version = version;
        if let Some(issued) = issued {
            counts.issued = Some(i64::from(issued));
        }
        if let Some(used) = used {
            counts.used = Some(i64::from(used));
        }
    }

    fn coupon_use(&mut self, coupon: Uuid, change: CouponUse) {
        match self.coupons.get_mut(&coupon) {
            Some(row) => row.current = change,
            None => {
                self.coupon_uses.insert(coupon, change);
            }
        }
    }

    fn remaining(&mut self, sale: Uuid, version: i64, remaining: u32) {
        let remaining = i64::from(remaining);
        match self.sales.get_mut(&sale) {
            Some(row) => {
                row.remaining = remaining;
                row.version = version;
            }
            None => {
                self.stock.insert(sale, (remaining, version));
            }
        }
    }

    /// Writes the folded rows: inserts first, then updates of rows that existed before.
    async fn write(self, conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
        self.write_coupons(conn, schema).await?;
        self.write_points(conn, schema).await?;
        self.write_sales(conn, schema).await
    }

    async fn write_coupons(
        &self,
        conn: &mut PgConnection,
        schema: &str,
    ) -> Result<(), sqlx::Error> {
        if !self.policies.is_empty() {
            let rows: Vec<(&Uuid, &PolicyRow)> = self.policies.iter().collect();
            sqlx::query(&format!(
                "INSERT INTO {schema}.coupon_policies (policy_id, title, description, total_quantity, start_time, end_time, \
                   discount_type, discount_value, minimum_order_amount, maximum_discount_amount, coupon_expires_at, \
                   issued_count, used_count, created_at, version) \
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::timestamptz[], \
                   $6::timestamptz[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], $11::timestamptz[], \
                   $12::bigint[], $13::bigint[], $14::timestamptz[], $15::bigint[]) \
                 ON CONFLICT DO NOTHING",
            ))
            .bind(rows.iter().map(|(id, _)| **id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.title.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.description.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.total_quantity).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.start_time).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.end_time).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.discount_type.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.discount_value).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.minimum_order_amount).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.maximum_discount_amount).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.coupon_expires_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.counts.issued.unwrap_or(0)).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.counts.used.unwrap_or(0)).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.created_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.counts.version).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !self.policy_counts.is_empty() {
            let rows: Vec<(&Uuid, &PolicyCounts)> = self.policy_counts.iter().collect();
            sqlx::query(&format!(
                "UPDATE {schema}.coupon_policies p SET issued_count = COALESCE(t.issued, p.issued_count), \
                   used_count = COALESCE(t.used, p.used_count), version = t.version \
                 FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[]) AS t(id, issued, used, version) \
                 WHERE p.policy_id = t.id",
            ))
            .bind(rows.iter().map(|(id, _)| **id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.issued).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.used).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.version).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !self.coupons.is_empty() {
            let rows: Vec<(&Uuid, &CouponRow)> = self.coupons.iter().collect();
            sqlx::query(&format!(
                "INSERT INTO {schema}.coupons (coupon_id, policy_id, user_id, state, expires_at, order_id, order_amount, \
                   discount_amount, issued_at, used_at, updated_at) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::timestamptz[], $6::text[], \
                   $7::bigint[], $8::bigint[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[]) \
                 ON CONFLICT DO NOTHING",
            ))
            .bind(rows.iter().map(|(id, _)| **id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.policy_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.user_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.current.state).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.expires_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.current.order_id.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.current.order_amount).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.current.discount_amount).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.issued_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.current.used_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.current.updated_at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !self.coupon_uses.is_empty() {
            let rows: Vec<(&Uuid, &CouponUse)> = self.coupon_uses.iter().collect();
            sqlx::query(&format!(
                "UPDATE {schema}.coupons c SET state = t.state, order_id = t.order_id, order_amount = t.order_amount, \
                   discount_amount = t.discount_amount, used_at = t.used_at, updated_at = t.updated_at \
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::timestamptz[], \
                   $7::timestamptz[]) AS t(id, state, order_id, order_amount, discount_amount, used_at, updated_at) \
                 WHERE c.coupon_id = t.id",
            ))
            .bind(rows.iter().map(|(id, _)| **id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, u)| u.state).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, u)| u.order_id.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, u)| u.order_amount).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, u)| u.discount_amount).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, u)| u.used_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, u)| u.updated_at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    async fn write_points(&self, conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
        if !self.history.is_empty() {
            let rows = &self.history;
            sqlx::query(&format!(
                "INSERT INTO {schema}.point_history (transaction_id, user_id, version, type, amount, description, order_id, \
                   canceled_transaction_id, balance_after, occurred_at) \
                 SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], \
                   $7::text[], $8::uuid[], $9::bigint[], $10::timestamptz[]) \
                 ON CONFLICT DO NOTHING",
            ))
            .bind(rows.iter().map(|r| r.transaction_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.user_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.amount).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.description.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.order_id.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.canceled_transaction_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.balance_after).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !self.balances.is_empty() {
            let rows: Vec<_> = self.balances.iter().collect();
            sqlx::query(&format!(
                "INSERT INTO {schema}.point_balances AS b (user_id, balance, version, updated_at) \
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[]) \
                 ON CONFLICT (user_id) DO UPDATE SET balance = EXCLUDED.balance, version = EXCLUDED.version, \
                   updated_at = EXCLUDED.updated_at WHERE b.version < EXCLUDED.version",
            ))
            .bind(rows.iter().map(|(u, _)| **u).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, b)| b.0).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, b)| b.1).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, b)| b.2).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    async fn write_sales(&self, conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
        if !self.products.is_empty() {
            let rows = &self.products;
            sqlx::query(&format!(
                "INSERT INTO {schema}.products (product_id, name, price, description, created_at) \
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::timestamptz[]) \
                 ON CONFLICT DO NOTHING",
            ))
            .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.3.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.4).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !self.sales.is_empty() {
            let rows: Vec<(&Uuid, &SaleRow)> = self.sales.iter().collect();
            sqlx::query(&format!(
                "INSERT INTO {schema}.time_sales (time_sale_id, product_id, product_price, discount_price, quantity, remaining, \
                   start_at, end_at, per_user_limit, created_at, version) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], \
                   $7::timestamptz[], $8::timestamptz[], $9::bigint[], $10::timestamptz[], $11::bigint[]) \
                 ON CONFLICT DO NOTHING",
            ))
            .bind(rows.iter().map(|(id, _)| **id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.product_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.product_price).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.discount_price).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.quantity).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.remaining).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.start_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.end_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.per_user_limit).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.created_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.version).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !self.stock.is_empty() {
            let rows: Vec<(&Uuid, &(i64, i64))> = self.stock.iter().collect();
            sqlx::query(&format!(
                "UPDATE {schema}.time_sales s SET remaining = t.remaining, version = t.version \
                 FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS t(id, remaining, version) \
                 WHERE s.time_sale_id = t.id",
            ))
            .bind(rows.iter().map(|(id, _)| **id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, s)| s.0).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, s)| s.1).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !self.orders.is_empty() {
            let rows: Vec<(&Uuid, &OrderRow)> = self.orders.iter().collect();
            sqlx::query(&format!(
                "INSERT INTO {schema}.orders (order_id, time_sale_id, user_id, quantity, unit_price, total_price, status, \
                   created_at, canceled_at) \
                 SELECT id, sale, usr, q, up, tp, CASE WHEN cat IS NULL THEN 'CREATED' ELSE 'CANCELED' END, ca, cat \
                 FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], \
                   $7::timestamptz[], $8::timestamptz[]) AS t(id, sale, usr, q, up, tp, ca, cat) \
                 ON CONFLICT DO NOTHING",
            ))
            .bind(rows.iter().map(|(id, _)| **id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.time_sale_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.user_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.quantity).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.unit_price).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.total_price).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.created_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.canceled_at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !self.cancels.is_empty() {
            let (ids, at): (Vec<Uuid>, Vec<DateTime<Utc>>) =
                self.cancels.iter().map(|(id, at)| (*id, *at)).unzip();
            sqlx::query(&format!(
                "UPDATE {schema}.orders o SET status = 'CANCELED', canceled_at = t.at \
                 FROM unnest($1::uuid[], $2::timestamptz[]) AS t(id, at) WHERE o.order_id = t.id",
            ))
            .bind(&ids)
            .bind(&at)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

impl CouponUse {
    /// An available coupon: no order.
    fn open(at: DateTime<Utc>) -> Self {
        CouponUse {
            state: "AVAILABLE",
            order_id: None,
            order_amount: None,
            discount_amount: None,
            used_at: None,
            updated_at: at,
        }
    }
}
