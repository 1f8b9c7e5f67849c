//! Property tests: random command sequences never break the invariants, whatever the order.
#![allow(clippy::unwrap_used)] // fixtures and samples panic on bad test data, by design
//! Each sequence is decided and applied the way the command side does it; after every step the
//! invariants are checked, and every decided event must survive the wire round trip.

mod common;

use std::collections::HashMap;

use common::*;
use domain::coupon::{CouponCommand, CouponPolicy, CouponState};
use domain::points::{PointAccount, PointCommand, PointEvent, TransactionKind};
use domain::time_sale::{OrderStatus, TimeSale, TimeSaleCommand};
use domain::values::Points;
use domain::wire::WireCodec;
use proptest::prelude::*;

/// Decides `command` and applies what it decided; returns the events.
fn step<E, S>(
    state: &mut S,
    decide: impl Fn(&S) -> Result<Vec<E>, domain::DomainError>,
    apply: impl Fn(&mut S, E),
) -> Vec<E>
where
    E: Clone,
{
    let events = decide(state).unwrap_or_default();
    for e in events.clone() {
        apply(state, e);
    }
    events
}

fn round_trips<
    E: WireCodec + PartialEq + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
>(
    event: &E,
) {
    let wire = event.to_wire();
    assert_eq!(&E::from_wire(&wire).unwrap(), event);
    let json = serde_json::to_string(event).unwrap();
    assert_eq!(&serde_json::from_str::<E>(&json).unwrap(), event);
}

// ---- coupons ----

#[derive(Debug, Clone)]
enum CouponOp {
    Issue {
        user: i64,
        hour: i64,
    },
    Use {
        coupon: u128,
        user: Option<i64>,
        amount: i64,
        hour: i64,
    },
    CancelUse {
        coupon: u128,
    },
    Revoke {
        coupon: u128,
    },
}

fn coupon_op() -> impl Strategy<Value = CouponOp> {
    prop_oneof![
        4 => (1..40i64, -2..30i64).prop_map(|(user, hour)| CouponOp::Issue { user, hour }),
        2 => (0..40u128, proptest::option::of(1..40i64), 0..5_000i64, 0..900i64)
            .prop_map(|(coupon, user, amount, hour)| CouponOp::Use { coupon, user, amount, hour }),
        1 => (0..40u128).prop_map(|coupon| CouponOp::CancelUse { coupon }),
        1 => (0..40u128).prop_map(|coupon| CouponOp::Revoke { coupon }),
    ]
}

proptest! {
    #[test]
    fn coupons_are_never_over_issued_nor_issued_twice_to_a_user(
        total in 1..25i64,
        ops in proptest::collection::vec(coupon_op(), 1..150),
    ) {
        let mut policy = CouponPolicy::default();
        let mut log = vec![];
        log.extend(step(&mut policy, |p| p.decide(CouponCommand::CreatePolicy { spec: common::policy(total, percent(10, 1_000, 500)) }), CouponPolicy::apply_event));
        let mut next_coupon = 0u128;
        for op in ops {
            let command = match op {
                CouponOp::Issue { user: u, hour } => {
                    next_coupon += 1;
                    CouponCommand::IssueCoupon { coupon_id: id(next_coupon), user_id: user(u), now: at(hour) }
                }
                CouponOp::Use { coupon, user: u, amount, hour } => CouponCommand::UseCoupon {
                    coupon_id: id(coupon), acting_user: u.map(user), order_id: text("o"), order_amount: money(amount), now: at(hour),
                },
                CouponOp::CancelUse { coupon } => CouponCommand::CancelCouponUse { coupon_id: id(coupon), acting_user: None, now: at(5) },
                CouponOp::Revoke { coupon } => CouponCommand::RevokeCoupon { coupon_id: id(coupon), now: at(5) },
            };
            let events = step(&mut policy, |p| p.decide(command.clone()), CouponPolicy::apply_event);
            log.extend(events);

            let coupons: Vec<_> = policy.coupons().collect();
            prop_assert!(coupons.len() as i64 <= total, "issued {} of {}", coupons.len(), total);
            prop_assert_eq!(policy.issued_count() as usize, coupons.len());
            let mut per_user: HashMap<_, usize> = HashMap::new();
            for (_, c) in &coupons {
                *per_user.entry(c.user_id).or_default() += 1;
            }
            prop_assert!(per_user.values().all(|n| *n == 1));
            let used = coupons.iter().filter(|(_, c)| matches!(c.state, CouponState::Used { .. })).count();
            prop_assert_eq!(policy.used_count() as usize, used);
        }
        // Replaying the log rebuilds exactly the state the decisions produced.
        let mut replayed = CouponPolicy::default();
        for e in &log {
            round_trips(e);
            replayed.apply_event(e.clone());
        }
        prop_assert_eq!(replayed, policy);
    }
}

// ---- time sales ----

#[derive(Debug, Clone)]
enum SaleOp {
    Order { user: i64, quantity: i64, hour: i64 },
    Cancel { order: u128, user: Option<i64> },
}

fn sale_op() -> impl Strategy<Value = SaleOp> {
    prop_oneof![
        4 => (1..15i64, 1..6i64, -1..3i64).prop_map(|(user, quantity, hour)| SaleOp::Order { user, quantity, hour }),
        1 => (0..60u128, proptest::option::of(1..15i64)).prop_map(|(order, user)| SaleOp::Cancel { order, user }),
    ]
}

proptest! {
    #[test]
    fn confirmed_orders_never_exceed_the_stock_nor_a_users_limit(
        stock in 1..40i64,
        limit in proptest::option::of(1..8i64),
        ops in proptest::collection::vec(sale_op(), 1..200),
    ) {
        let mut sale_state = TimeSale::default();
        let mut log = vec![];
        log.extend(step(&mut sale_state, |s| s.decide(TimeSaleCommand::CreateTimeSale { spec: sale(stock, limit), now: at(-1) }), TimeSale::apply_event));
        let mut next_order = 0u128;
        for op in ops {
            let command = match op {
                SaleOp::Order { user: u, quantity, hour } => {
                    next_order += 1;
                    TimeSaleCommand::PlaceOrder { order_id: id(next_order), user_id: user(u), quantity: qty(quantity), now: at(hour) }
                }
                SaleOp::Cancel { order, user: u } => TimeSaleCommand::CancelOrder { order_id: id(order), acting_user: u.map(user), now: at(1) },
            };
            log.extend(step(&mut sale_state, |s| s.decide(command.clone()), TimeSale::apply_event));

            let mut sold = 0u64;
            let mut per_user: HashMap<_, u64> = HashMap::new();
            for (_, o) in sale_state.orders().filter(|(_, o)| o.status == OrderStatus::Created) {
                sold += u64::from(o.quantity.get());
                *per_user.entry(o.user_id).or_default() += u64::from(o.quantity.get());
            }
            prop_assert!(sold <= stock as u64, "sold {} of {}", sold, stock);
            prop_assert_eq!(sold + u64::from(sale_state.remaining()), stock as u64);
            if let Some(limit) = limit {
                prop_assert!(per_user.values().all(|n| *n <= limit as u64));
            }
            for (u, n) in per_user {
                prop_assert_eq!(u64::from(sale_state.bought_by(u)), n);
            }
        }
        let mut replayed = TimeSale::default();
        for e in &log {
            round_trips(e);
            replayed.apply_event(e.clone());
        }
        prop_assert_eq!(replayed, sale_state);
    }
}

// ---- points ----

#[derive(Debug, Clone)]
enum PointOp {
    /// An amount, and maybe hours until the points expire.
    Earn(i64, Option<i64>),
    Use(i64),
    Cancel(u128),
    /// Hours pass.
    Tick(i64),
    /// The system expires an earlier transaction's lot (refused unless due and holding some).
    Expire(u128),
}

fn point_op() -> impl Strategy<Value = PointOp> {
    prop_oneof![
        3 => (1..500i64, proptest::option::of(1..6i64)).prop_map(|(v, e)| PointOp::Earn(v, e)),
        3 => (1..500i64).prop_map(PointOp::Use),
        2 => (1..80u128).prop_map(PointOp::Cancel),
        1 => (1..3i64).prop_map(PointOp::Tick),
        2 => (1..80u128).prop_map(PointOp::Expire),
    ]
}

proptest! {
    #[test]
    fn a_balance_never_goes_negative_always_equals_its_history_and_what_its_lots_hold(
        ops in proptest::collection::vec(point_op(), 1..200),
    ) {
        let mut account = PointAccount::default();
        let mut history: Vec<PointEvent> = vec![];
        let mut hours = 1;
        let mut earns = vec![];
        for (n, op) in ops.into_iter().enumerate() {
            let tx = id(n as u128 + 1);
            let pts = |v| Points::parse(v, "amount").unwrap();
            let now = at(hours);
            let command = match op {
                PointOp::Earn(v, expiry) => {
                    earns.push(tx);
                    PointCommand::Earn { user_id: user(7), transaction_id: tx, amount: pts(v), description: text("e"), expires_at: expiry.map(|h| at(hours + h)), now }
                }
                PointOp::Use(v) => PointCommand::Use { user_id: user(7), transaction_id: tx, amount: pts(v), description: text("u"), order_id: None, now },
                PointOp::Cancel(t) => PointCommand::Cancel { user_id: user(7), transaction_id: tx, canceled_transaction_id: id(t), now },
                PointOp::Tick(h) => {
                    hours += h;
                    continue;
                }
                PointOp::Expire(t) => PointCommand::ExpireLot { lot_id: id(t), transaction_id: tx, now },
            };
            let before = account.balance();
            let events = step(&mut account, |a| a.decide(command.clone()), PointAccount::apply_event);
            for e in &events {
                round_trips(e);
                // A cancelled use restores exactly what it took; a cancelled earn takes back
                // exactly what it gave.
                if let PointEvent::Canceled { canceled_transaction_id, canceled_kind, amount, balance_after, .. } = e {
                    let original = history.iter().find(|h| match h {
                        PointEvent::Earned { transaction_id, .. } | PointEvent::Spent { transaction_id, .. } => transaction_id == canceled_transaction_id,
                        _ => false,
                    });
                    let original_amount = match original {
                        Some(PointEvent::Earned { amount, .. }) | Some(PointEvent::Spent { amount, .. }) => *amount,
                        _ => panic!("cancelled a transaction that is not in the history"),
                    };
                    prop_assert_eq!(*amount, original_amount);
                    let expected = match canceled_kind {
                        TransactionKind::Use => before + original_amount.get(),
                        _ => before - original_amount.get(),
                    };
                    prop_assert_eq!(*balance_after, expected);
                }
                // An expiry happens only at or after its lot's due time.
                if let PointEvent::Expired { lot_id, at: when, .. } = e {
                    let due = history.iter().find_map(|h| match h {
                        PointEvent::Earned { transaction_id, expires_at, .. } if transaction_id == lot_id => *expires_at,
                        _ => None,
                    });
                    prop_assert!(due.is_some_and(|due| *when >= due), "expired before due");
                }
            }
            history.extend(events);

            prop_assert!(account.balance() >= 0);
            let sum: i64 = history.iter().map(PointEvent::balance_change).sum();
            prop_assert_eq!(account.balance(), sum);
            let mut running = 0;
            for e in &history {
                running += e.balance_change();
                prop_assert_eq!(e.balance_after(), running, "balance snapshot is the balance after the entry");
            }
            // The balance is what the lots hold; none holds less than nothing; expired lots
            // hold nothing; what may be spent never exceeds the balance.
            let held: i64 = earns.iter().filter_map(|e| account.lot(e)).map(|lot| lot.left).sum();
            prop_assert_eq!(account.balance(), held);
            for lot in earns.iter().filter_map(|e| account.lot(e)) {
                prop_assert!(lot.left >= 0);
                prop_assert!(!lot.expired || lot.left == 0, "an expired lot holds {}", lot.left);
            }
            prop_assert!(account.spendable(at(hours)) <= account.balance());
        }
    }
}
