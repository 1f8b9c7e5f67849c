//! Writing a folded batch: one set-based statement (`unnest` arrays) per table and kind of
//! change, inserts first, then updates of rows that existed before the batch.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::fold::{
    Changes, CouponRow, CouponUse, HoldChange, OrderRow, PolicyCounts, PolicyRow, ReservationRow,
    SaleRow, StockChange,
};

impl Changes {
    /// Writes the folded rows: inserts first, then updates of rows that existed before.
    pub(super) async fn write(
        self,
        conn: &mut PgConnection,
        schema: &str,
    ) -> Result<(), sqlx::Error> {
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
            // The limits and the budget's tally (added by issue 24), set apart from the insert.
            sqlx::query(&format!(
                "UPDATE {schema}.coupon_policies p SET discount_budget = t.budget, \
                   coupons_per_user = t.per_user, discount_granted = t.granted \
                 FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[]) \
                   AS t(id, budget, per_user, granted) \
                 WHERE p.policy_id = t.id",
            ))
            .bind(rows.iter().map(|(id, _)| **id).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|(_, r)| r.discount_budget)
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|(_, r)| r.coupons_per_user)
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|(_, r)| r.counts.granted.unwrap_or(0))
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *conn)
            .await?;
        }
        if !self.policy_counts.is_empty() {
            let rows: Vec<(&Uuid, &PolicyCounts)> = self.policy_counts.iter().collect();
            sqlx::query(&format!(
                "UPDATE {schema}.coupon_policies p SET issued_count = COALESCE(t.issued, p.issued_count), \
                   used_count = COALESCE(t.used, p.used_count), \
                   discount_granted = COALESCE(t.granted, p.discount_granted), version = t.version \
                 FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) \
                   AS t(id, issued, used, version, granted) \
                 WHERE p.policy_id = t.id",
            ))
            .bind(rows.iter().map(|(id, _)| **id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.issued).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.used).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.version).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.granted).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !self.coupons.is_empty() {
            let rows: Vec<(&Uuid, &CouponRow)> = self.coupons.iter().collect();
            sqlx::query(&format!(
                "INSERT INTO {schema}.coupons (coupon_id, policy_id, user_id, state, expires_at, order_id, order_amount, \
                   discount_amount, issued_at, used_at, updated_at, reserved_until) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::timestamptz[], $6::text[], \
                   $7::bigint[], $8::bigint[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[]) \
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
            .bind(rows.iter().map(|(_, r)| r.current.reserved_until).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !self.coupon_uses.is_empty() {
            let rows: Vec<(&Uuid, &CouponUse)> = self.coupon_uses.iter().collect();
            sqlx::query(&format!(
                "UPDATE {schema}.coupons c SET state = t.state, order_id = t.order_id, order_amount = t.order_amount, \
                   discount_amount = t.discount_amount, used_at = t.used_at, updated_at = t.updated_at, \
                   reserved_until = t.reserved_until \
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::timestamptz[], \
                   $7::timestamptz[], $8::timestamptz[]) \
                   AS t(id, state, order_id, order_amount, discount_amount, used_at, updated_at, reserved_until) \
                 WHERE c.coupon_id = t.id",
            ))
            .bind(rows.iter().map(|(id, _)| **id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, u)| u.state).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, u)| u.order_id.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, u)| u.order_amount).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, u)| u.discount_amount).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, u)| u.used_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, u)| u.updated_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, u)| u.reserved_until).collect::<Vec<_>>())
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
                "INSERT INTO {schema}.point_balances AS b (user_id, balance, version, updated_at, expiring, expiring_at) \
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[], $5::bigint[], \
                   $6::timestamptz[]) \
                 ON CONFLICT (user_id) DO UPDATE SET balance = EXCLUDED.balance, version = EXCLUDED.version, \
                   updated_at = EXCLUDED.updated_at, expiring = EXCLUDED.expiring, \
                   expiring_at = EXCLUDED.expiring_at WHERE b.version < EXCLUDED.version",
            ))
            .bind(rows.iter().map(|(u, _)| **u).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, b)| b.balance).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, b)| b.version).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, b)| b.updated_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, b)| b.expiring.map(|e| e.amount)).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, b)| b.expiring.map(|e| e.expires_at)).collect::<Vec<_>>())
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
                   start_at, end_at, per_user_limit, created_at, version, reserved) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], \
                   $7::timestamptz[], $8::timestamptz[], $9::bigint[], $10::timestamptz[], $11::bigint[], $12::bigint[]) \
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
            .bind(rows.iter().map(|(_, r)| r.reserved).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !self.stock.is_empty() {
            let rows: Vec<(&Uuid, &StockChange)> = self.stock.iter().collect();
            sqlx::query(&format!(
                "UPDATE {schema}.time_sales s SET remaining = t.remaining, \
                   reserved = coalesce(t.reserved, s.reserved), version = t.version \
                 FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[]) \
                   AS t(id, remaining, version, reserved) \
                 WHERE s.time_sale_id = t.id",
            ))
            .bind(rows.iter().map(|(id, _)| **id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, s)| s.remaining).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, s)| s.version).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, s)| s.reserved).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !self.reservations.is_empty() {
            let rows: Vec<(&Uuid, &ReservationRow)> = self.reservations.iter().collect();
            sqlx::query(&format!(
                "INSERT INTO {schema}.reservations (reservation_id, time_sale_id, order_id, user_id, quantity, \
                   status, expires_at, created_order_id, created_at, updated_at) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], \
                   $7::timestamptz[], $8::uuid[], $9::timestamptz[], $10::timestamptz[]) \
                 ON CONFLICT DO NOTHING",
            ))
            .bind(rows.iter().map(|(id, _)| **id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.time_sale_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.order_id.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.user_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.quantity).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.end.status).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.expires_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.end.created_order_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.created_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.end.updated_at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !self.hold_changes.is_empty() {
            let rows: Vec<(&Uuid, &HoldChange)> = self.hold_changes.iter().collect();
            sqlx::query(&format!(
                "UPDATE {schema}.reservations r SET status = t.status, \
                   created_order_id = coalesce(t.created_order_id, r.created_order_id), updated_at = t.at \
                 FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::timestamptz[]) \
                   AS t(id, status, created_order_id, at) \
                 WHERE r.reservation_id = t.id",
            ))
            .bind(rows.iter().map(|(id, _)| **id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.status).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.created_order_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.updated_at).collect::<Vec<_>>())
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
