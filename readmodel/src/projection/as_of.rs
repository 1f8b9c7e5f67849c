//! Reads as of a log position or a time: one aggregate's stream up to then, folded in memory by
//! the projection's own fold ([`Changes`]) — the rows the read models held at that point,
//! computed by the code that built them, so the two cannot disagree.

use chrono::{DateTime, Utc};
use domain::points::NextExpiry;
use eventlog::RecordedEvent;
use uuid::Uuid;

use super::decode;
use super::fold::Changes;
use crate::queries::{CouponRow, HistoryRow, SaleRow};
use crate::ReadModelError;

/// `events` (one stream, from its first version) folded as the projector would.
fn folded(events: &[RecordedEvent]) -> Result<Changes, ReadModelError> {
    let mut changes = Changes::default();
    for recorded in events {
        changes.fold(recorded, &decode(recorded)?);
    }
    Ok(changes)
}

/// A time sale's row as of the end of `events` (its stream); `None` if it did not exist yet.
pub fn time_sale(id: Uuid, events: &[RecordedEvent]) -> Result<Option<SaleRow>, ReadModelError> {
    let changes = folded(events)?;
    Ok(changes.sales.get(&id).map(|row| SaleRow {
        time_sale_id: id,
        product_id: row.product_id,
        product_price: row.product_price,
        discount_price: row.discount_price,
        quantity: row.quantity,
        remaining: row.remaining,
        reserved: row.reserved,
        start_at: row.start_at,
        end_at: row.end_at,
        per_user_limit: row.per_user_limit,
        created_at: row.created_at,
    }))
}

/// A point account as of the end of `events`: the balance, what expires next, and the
/// history newest first.
#[derive(Debug, Clone)]
pub struct AccountAsOf {
    pub balance: i64,
    pub next_expiry: Option<NextExpiry>,
    pub history: Vec<HistoryRow>,
}

pub fn point_account(events: &[RecordedEvent]) -> Result<AccountAsOf, ReadModelError> {
    let changes = folded(events)?;
    let (balance, next_expiry) = changes
        .balances
        .values()
        .next()
        .map_or((0, None), |b| (b.balance, b.expiring));
    let mut history: Vec<HistoryRow> = changes
        .history
        .iter()
        .map(|h| HistoryRow {
            transaction_id: h.transaction_id,
            r#type: h.kind.clone(),
            amount: h.amount,
            description: h.description.clone(),
            order_id: h.order_id.clone(),
            canceled_transaction_id: h.canceled_transaction_id,
            balance_after: h.balance_after,
            occurred_at: h.occurred_at,
        })
        .collect();
    history.reverse();
    Ok(AccountAsOf {
        balance,
        next_expiry,
        history,
    })
}

/// A coupon's row as of the end of `events` (its policy's stream); `None` if not issued yet.
pub fn coupon(id: Uuid, events: &[RecordedEvent]) -> Result<Option<CouponRow>, ReadModelError> {
    let changes = folded(events)?;
    Ok(changes.coupons.get(&id).map(|row| CouponRow {
        coupon_id: id,
        policy_id: row.policy_id,
        user_id: row.user_id,
        state: row.current.state.to_owned(),
        expires_at: row.expires_at,
        order_id: row.current.order_id.clone(),
        order_amount: row.current.order_amount,
        discount_amount: row.current.discount_amount,
        issued_at: row.issued_at,
        used_at: row.current.used_at,
        reserved_until: row.current.reserved_until,
    }))
}

/// The time of the last of `events`, and its position: what an as-of answer reflects.
pub fn last(events: &[RecordedEvent]) -> Option<(i64, DateTime<Utc>)> {
    events.last().map(|e| (e.position, e.recorded_at))
}
