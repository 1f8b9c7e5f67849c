//! Folding a batch in memory, with no I/O: every event of the batch becomes the final state of
//! the rows it touches ([`Changes`]) — rows created in the batch with every later change folded
//! in, and updates of rows that existed before it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::coupon::CouponEvent;
use domain::points::PointEvent;
use domain::product::ProductEvent;
use domain::time_sale::TimeSaleEvent;
use eventlog::RecordedEvent;
use uuid::Uuid;

use super::AnyEvent;

impl Changes {
    /// Folds one event into the batch's rows.
    pub(super) fn fold(&mut self, recorded: &RecordedEvent, event: &AnyEvent) {
        match event {
            AnyEvent::Coupon(event) => self.fold_coupon(recorded, event),
            AnyEvent::Point(event) => self.fold_point(recorded, event),
            AnyEvent::Product(event) => self.fold_product(recorded, event),
            AnyEvent::TimeSale(event) => self.fold_sale(recorded, event),
        }
    }

    /// A policy and its coupons: created, issued, used, use canceled, revoked.
    fn fold_coupon(&mut self, recorded: &RecordedEvent, event: &CouponEvent) {
        let id = recorded.stream_id;
        let version = recorded.version;
        match event {
            CouponEvent::PolicyCreated { spec } => {
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
                        discount_budget: spec.discount_budget().map(|b| b.get()),
                        coupons_per_user: i64::from(spec.coupons_per_user().get()),
                        created_at: recorded.recorded_at,
                        counts: PolicyCounts {
                            issued: Some(0),
                            used: Some(0),
                            granted: Some(0),
                            version,
                        },
                    },
                );
            }
            CouponEvent::CouponIssued {
                coupon_id,
                user_id,
                expires_at,
                issued_count,
                at,
            } => {
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
                self.count(id, version, Some(*issued_count), None, None);
            }
            CouponEvent::CouponUsed {
                coupon_id,
                order_id,
                order_amount,
                discount,
                used_count,
                discount_granted,
                at,
                ..
            } => {
                self.coupon_use(
                    *coupon_id,
                    CouponUse {
                        state: "USED",
                        order_id: Some(order_id.as_str().to_owned()),
                        order_amount: Some(order_amount.get()),
                        discount_amount: Some(discount.get()),
                        used_at: Some(*at),
                        reserved_until: None,
                        updated_at: *at,
                    },
                );
                self.count(id, version, None, Some(*used_count), *discount_granted);
            }
            CouponEvent::CouponUseCanceled {
                coupon_id,
                used_count,
                discount_granted,
                at,
                ..
            } => {
                self.coupon_use(*coupon_id, CouponUse::open(*at));
                self.count(id, version, None, Some(*used_count), *discount_granted);
            }
            CouponEvent::CouponReserved {
                coupon_id,
                order_id,
                order_amount,
                discount,
                until,
                discount_granted,
                at,
                ..
            } => {
                self.coupon_use(
                    *coupon_id,
                    CouponUse {
                        state: "RESERVED",
                        order_id: Some(order_id.as_str().to_owned()),
                        order_amount: Some(order_amount.get()),
                        discount_amount: Some(discount.get()),
                        used_at: None,
                        reserved_until: Some(*until),
                        updated_at: *at,
                    },
                );
                self.count(id, version, None, None, Some(*discount_granted));
            }
            CouponEvent::CouponReservationReleased(ended)
            | CouponEvent::CouponReservationExpired(ended) => {
                self.coupon_use(ended.coupon_id, CouponUse::open(ended.at));
                self.count(id, version, None, None, Some(ended.discount_granted));
            }
            CouponEvent::CouponRevoked { coupon_id, at, .. } => {
                // Only an available coupon can be revoked: it has no order to clear.
                self.coupon_use(
                    *coupon_id,
                    CouponUse {
                        state: "CANCELED",
                        ..CouponUse::open(*at)
                    },
                );
                self.count(id, version, None, None, None);
            }
        }
    }

    /// A point transaction: a history row and the balance after it.
    fn fold_point(&mut self, recorded: &RecordedEvent, event: &PointEvent) {
        let version = recorded.version;
        let (order_id, canceled) = match event {
            PointEvent::Spent { order_id, .. } => {
                (order_id.as_ref().map(|o| o.as_str().to_owned()), None)
            }
            PointEvent::Canceled {
                canceled_transaction_id,
                ..
            } => (None, Some(*canceled_transaction_id)),
            PointEvent::Earned { .. } | PointEvent::Expired { .. } => (None, None),
        };
        let description = match event {
            PointEvent::Earned { description, .. } | PointEvent::Spent { description, .. } => {
                description.as_str().to_owned()
            }
            PointEvent::Canceled { .. } => "cancellation".to_owned(),
            PointEvent::Expired { .. } => "expiry".to_owned(),
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
            BalanceRow {
                balance: event.balance_after(),
                version,
                updated_at: recorded.recorded_at,
                expiring: event.next_expiry(),
            },
        );
    }

    /// A product.
    fn fold_product(&mut self, recorded: &RecordedEvent, event: &ProductEvent) {
        let ProductEvent::ProductCreated { spec, at } = event;
        self.products.push((
            recorded.stream_id,
            spec.name.as_str().to_owned(),
            spec.price.get(),
            spec.description.as_str().to_owned(),
            *at,
        ));
    }

    /// A time sale, its orders and its stock.
    fn fold_sale(&mut self, recorded: &RecordedEvent, event: &TimeSaleEvent) {
        let id = recorded.stream_id;
        let version = recorded.version;
        match event {
            TimeSaleEvent::TimeSaleCreated { spec, at } => {
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
                        reserved: 0,
                        version,
                    },
                );
            }
            TimeSaleEvent::OrderPlaced {
                order_id,
                user_id,
                quantity,
                unit_price,
                total_price,
                remaining_after,
                at,
            } => {
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
                self.remaining(id, version, *remaining_after, None);
            }
            TimeSaleEvent::OrderCanceled {
                order_id,
                remaining_after,
                at,
                ..
            } => {
                match self.orders.get_mut(order_id) {
                    Some(order) => order.canceled_at = Some(*at),
                    None => {
                        self.cancels.insert(*order_id, *at);
                    }
                }
                self.remaining(id, version, *remaining_after, None);
            }
            TimeSaleEvent::Reserved {
                reservation_id,
                order_ref,
                user_id,
                quantity,
                expires_at,
                remaining_after,
                reserved_after,
                at,
                ..
            } => {
                self.reservations.insert(
                    *reservation_id,
                    ReservationRow {
                        time_sale_id: id,
                        order_id: order_ref.as_str().to_owned(),
                        user_id: user_id.get(),
                        quantity: i64::from(quantity.get()),
                        expires_at: *expires_at,
                        created_at: *at,
                        end: HoldChange {
                            status: "HELD",
                            created_order_id: None,
                            updated_at: *at,
                        },
                    },
                );
                self.remaining(id, version, *remaining_after, Some(*reserved_after));
            }
            TimeSaleEvent::ReservationConfirmed {
                reservation_id,
                order_id,
                user_id,
                quantity,
                unit_price,
                total_price,
                remaining_after,
                reserved_after,
                at,
            } => {
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
                self.hold_change(
                    *reservation_id,
                    HoldChange {
                        status: "CONFIRMED",
                        created_order_id: Some(*order_id),
                        updated_at: *at,
                    },
                );
                self.remaining(id, version, *remaining_after, Some(*reserved_after));
            }
            TimeSaleEvent::ReservationReleased(ended)
            | TimeSaleEvent::ReservationExpired(ended) => {
                let status = if matches!(event, TimeSaleEvent::ReservationReleased(_)) {
                    "RELEASED"
                } else {
                    "EXPIRED"
                };
                self.hold_change(
                    ended.reservation_id,
                    HoldChange {
                        status,
                        created_order_id: None,
                        updated_at: ended.at,
                    },
                );
                self.remaining(
                    id,
                    version,
                    ended.remaining_after,
                    Some(ended.reserved_after),
                );
            }
        }
    }

    fn hold_change(&mut self, reservation: Uuid, change: HoldChange) {
        match self.reservations.get_mut(&reservation) {
            Some(row) => row.end = change,
            None => {
                self.hold_changes.insert(reservation, change);
            }
        }
    }

    /// Changes of a row created in this batch go into its insert; others become updates.
    fn count(
        &mut self,
        policy: Uuid,
        version: i64,
        issued: Option<u32>,
        used: Option<u32>,
        granted: Option<domain::values::Money>,
    ) {
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
        if let Some(granted) = granted {
            counts.granted = Some(granted.get());
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

    /// The sale's stock after an event: what anyone can buy, and (when the event says) what
    /// open holds keep.
    fn remaining(&mut self, sale: Uuid, version: i64, remaining: u32, reserved: Option<u32>) {
        let remaining = i64::from(remaining);
        let reserved = reserved.map(i64::from);
        match self.sales.get_mut(&sale) {
            Some(row) => {
                row.remaining = remaining;
                row.reserved = reserved.unwrap_or(row.reserved);
                row.version = version;
            }
            None => {
                let entry = self.stock.entry(sale).or_insert(StockChange {
                    remaining,
                    reserved: None,
                    version,
                });
                entry.remaining = remaining;
                entry.reserved = reserved.or(entry.reserved);
                entry.version = version;
            }
        }
    }
}

fn text_of<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
pub(super) struct PolicyRow {
    pub(super) title: String,
    pub(super) description: String,
    pub(super) total_quantity: i64,
    pub(super) start_time: DateTime<Utc>,
    pub(super) end_time: DateTime<Utc>,
    pub(super) discount_type: String,
    pub(super) discount_value: i64,
    pub(super) minimum_order_amount: i64,
    pub(super) maximum_discount_amount: i64,
    pub(super) coupon_expires_at: DateTime<Utc>,
    pub(super) discount_budget: Option<i64>,
    pub(super) coupons_per_user: i64,
    pub(super) created_at: DateTime<Utc>,
    pub(super) counts: PolicyCounts,
}

/// The mutable part of a policy row.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PolicyCounts {
    pub(super) issued: Option<i64>,
    pub(super) used: Option<i64>,
    /// The budget's tally, when an event of the batch stated it.
    pub(super) granted: Option<i64>,
    pub(super) version: i64,
}

#[derive(Debug, Clone)]
pub(super) struct CouponRow {
    pub(super) policy_id: Uuid,
    pub(super) user_id: i64,
    pub(super) expires_at: DateTime<Utc>,
    pub(super) issued_at: DateTime<Utc>,
    pub(super) current: CouponUse,
}

/// The mutable part of a coupon row (every column is set: a revoked or re-opened coupon has
/// no order).
#[derive(Debug, Clone)]
pub(super) struct CouponUse {
    pub(super) state: &'static str,
    pub(super) order_id: Option<String>,
    pub(super) order_amount: Option<i64>,
    pub(super) discount_amount: Option<i64>,
    pub(super) used_at: Option<DateTime<Utc>>,
    /// Until when a held coupon is held.
    pub(super) reserved_until: Option<DateTime<Utc>>,
    pub(super) updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(super) struct HistoryRow {
    pub(super) transaction_id: Uuid,
    pub(super) user_id: i64,
    pub(super) version: i64,
    pub(super) kind: String,
    pub(super) amount: i64,
    pub(super) description: String,
    pub(super) order_id: Option<String>,
    pub(super) canceled_transaction_id: Option<Uuid>,
    pub(super) balance_after: i64,
    pub(super) occurred_at: DateTime<Utc>,
}

/// A user's balance after a batch, with what expires next.
#[derive(Debug, Clone)]
pub(super) struct BalanceRow {
    pub(super) balance: i64,
    pub(super) version: i64,
    pub(super) updated_at: DateTime<Utc>,
    pub(super) expiring: Option<domain::points::NextExpiry>,
}

#[derive(Debug, Clone)]
pub(super) struct SaleRow {
    pub(super) product_id: Uuid,
    pub(super) product_price: i64,
    pub(super) discount_price: i64,
    pub(super) quantity: i64,
    pub(super) start_at: DateTime<Utc>,
    pub(super) end_at: DateTime<Utc>,
    pub(super) per_user_limit: Option<i64>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) remaining: i64,
    pub(super) reserved: i64,
    pub(super) version: i64,
}

/// A sale's stock changed by a batch, for a sale created before it.
#[derive(Debug, Clone)]
pub(super) struct StockChange {
    pub(super) remaining: i64,
    /// `None` when no event of the batch held or ended a hold.
    pub(super) reserved: Option<i64>,
    pub(super) version: i64,
}

#[derive(Debug, Clone)]
pub(super) struct ReservationRow {
    pub(super) time_sale_id: Uuid,
    pub(super) order_id: String,
    pub(super) user_id: i64,
    pub(super) quantity: i64,
    pub(super) expires_at: DateTime<Utc>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) end: HoldChange,
}

/// Where a hold stands after a batch.
#[derive(Debug, Clone)]
pub(super) struct HoldChange {
    pub(super) status: &'static str,
    pub(super) created_order_id: Option<Uuid>,
    pub(super) updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(super) struct OrderRow {
    pub(super) time_sale_id: Uuid,
    pub(super) user_id: i64,
    pub(super) quantity: i64,
    pub(super) unit_price: i64,
    pub(super) total_price: i64,
    pub(super) created_at: DateTime<Utc>,
    pub(super) canceled_at: Option<DateTime<Utc>>,
}

/// The net effect of a batch on every row it touches: rows created in the batch (with every
/// later change of the batch folded in) and updates of rows that existed before it.
#[derive(Debug, Default)]
pub(super) struct Changes {
    pub(super) policies: HashMap<Uuid, PolicyRow>,
    pub(super) policy_counts: HashMap<Uuid, PolicyCounts>,
    pub(super) coupons: HashMap<Uuid, CouponRow>,
    pub(super) coupon_uses: HashMap<Uuid, CouponUse>,
    pub(super) history: Vec<HistoryRow>,
    pub(super) balances: HashMap<i64, BalanceRow>,
    pub(super) products: Vec<(Uuid, String, i64, String, DateTime<Utc>)>,
    pub(super) sales: HashMap<Uuid, SaleRow>,
    pub(super) stock: HashMap<Uuid, StockChange>,
    pub(super) reservations: HashMap<Uuid, ReservationRow>,
    pub(super) hold_changes: HashMap<Uuid, HoldChange>,
    pub(super) orders: HashMap<Uuid, OrderRow>,
    /// order → canceled_at
    pub(super) cancels: HashMap<Uuid, DateTime<Utc>>,
}

impl CouponUse {
    /// An available coupon: no order.
    pub(super) fn open(at: DateTime<Utc>) -> Self {
        CouponUse {
            state: "AVAILABLE",
            order_id: None,
            order_amount: None,
            discount_amount: None,
            used_at: None,
            reserved_until: None,
            updated_at: at,
        }
    }
}
