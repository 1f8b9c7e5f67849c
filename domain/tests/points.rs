//! Given / when / then for point accounts (docs/product.md, "Loyalty points").
#![allow(clippy::unwrap_used)] // fixtures and samples panic on bad test data, by design

mod common;

use common::*;
use cqrs_es::test::TestFramework;
use domain::points::{point_account_id, PointAccount, PointCommand, PointEvent, TransactionKind};
use domain::values::Points;
use domain::DomainError;

type Given = TestFramework<PointAccount>;

fn pts(v: i64) -> Points {
    Points::parse(v, "amount").unwrap()
}

fn earned(tx: u128, amount: i64, balance_after: i64) -> PointEvent {
    PointEvent::Earned {
        user_id: user(7),
        transaction_id: id(tx),
        amount: pts(amount),
        description: text("purchase"),
        expires_at: None,
        balance_after,
        next_expiry: None,
        at: at(1),
    }
}

fn spent(tx: u128, amount: i64, balance_after: i64) -> PointEvent {
    PointEvent::Spent {
        user_id: user(7),
        transaction_id: id(tx),
        amount: pts(amount),
        description: text("checkout"),
        order_id: Some(text("order-9")),
        balance_after,
        next_expiry: None,
        at: at(2),
    }
}

fn earn(tx: u128, amount: i64) -> PointCommand {
    PointCommand::Earn {
        user_id: user(7),
        transaction_id: id(tx),
        amount: pts(amount),
        description: text("purchase"),
        expires_at: None,
        now: at(1),
    }
}

fn spend(tx: u128, amount: i64) -> PointCommand {
    PointCommand::Use {
        user_id: user(7),
        transaction_id: id(tx),
        amount: pts(amount),
        description: text("checkout"),
        order_id: Some(text("order-9")),
        now: at(2),
    }
}

fn cancel(tx: u128, canceled: u128) -> PointCommand {
    PointCommand::Cancel {
        user_id: user(7),
        transaction_id: id(tx),
        canceled_transaction_id: id(canceled),
        now: at(3),
    }
}

#[test]
fn earning_grows_the_balance_and_records_it_after_the_entry() {
    Given::with(())
        .given(vec![earned(1, 100, 100)])
        .when(earn(2, 50))
        .then_expect_events(vec![earned(2, 50, 150)]);
}

#[test]
fn using_points_lowers_the_balance() {
    Given::with(())
        .given(vec![earned(1, 100, 100)])
        .when(spend(2, 30))
        .then_expect_events(vec![spent(2, 30, 70)]);
}

#[test]
fn using_the_whole_balance_leaves_zero() {
    Given::with(())
        .given(vec![earned(1, 100, 100)])
        .when(spend(2, 100))
        .then_expect_events(vec![spent(2, 100, 0)]);
}

#[test]
fn using_more_than_the_balance_is_refused() {
    Given::with(())
        .given(vec![earned(1, 100, 100)])
        .when(spend(2, 101))
        .then_expect_error(DomainError::InsufficientBalance);
}

#[test]
fn using_points_of_an_empty_account_is_refused() {
    Given::with(())
        .given_no_previous_events()
        .when(spend(2, 1))
        .then_expect_error(DomainError::InsufficientBalance);
}

#[test]
fn an_amount_must_be_positive() {
    assert!(Points::parse(0, "amount").is_err());
    assert!(Points::parse(-10, "amount").is_err());
}

#[test]
fn a_transaction_id_is_never_reused() {
    Given::with(())
        .given(vec![earned(1, 100, 100)])
        .when(earn(1, 5))
        .then_expect_error(DomainError::TransactionIdTaken);
}

#[test]
fn earning_beyond_the_largest_balance_is_refused() {
    Given::with(())
        .given(vec![earned(1, i64::MAX, i64::MAX)])
        .when(earn(2, 1))
        .then_expect_error(DomainError::BalanceOverflow);
}

#[test]
fn cancelling_an_earn_takes_the_points_back() {
    Given::with(())
        .given(vec![earned(1, 100, 100)])
        .when(cancel(2, 1))
        .then_expect_events(vec![PointEvent::Canceled {
            user_id: user(7),
            transaction_id: id(2),
            canceled_transaction_id: id(1),
            canceled_kind: TransactionKind::Earn,
            amount: pts(100),
            balance_after: 0,
            next_expiry: None,
            at: at(3),
        }]);
}

#[test]
fn cancelling_an_earn_whose_points_were_spent_is_refused() {
    Given::with(())
        .given(vec![earned(1, 100, 100), spent(2, 60, 40)])
        .when(cancel(3, 1))
        .then_expect_error(DomainError::PointsAlreadySpent);
}

#[test]
fn cancelling_a_use_refunds_the_points() {
    Given::with(())
        .given(vec![earned(1, 100, 100), spent(2, 60, 40)])
        .when(cancel(3, 2))
        .then_expect_events(vec![PointEvent::Canceled {
            user_id: user(7),
            transaction_id: id(3),
            canceled_transaction_id: id(2),
            canceled_kind: TransactionKind::Use,
            amount: pts(60),
            balance_after: 100,
            next_expiry: None,
            at: at(3),
        }]);
}

#[test]
fn a_transaction_is_cancelled_at_most_once() {
    let cancel_use = PointEvent::Canceled {
        user_id: user(7),
        transaction_id: id(3),
        canceled_transaction_id: id(2),
        canceled_kind: TransactionKind::Use,
        amount: pts(60),
        balance_after: 100,
        next_expiry: None,
        at: at(3),
    };
    Given::with(())
        .given(vec![earned(1, 100, 100), spent(2, 60, 40), cancel_use])
        .when(cancel(4, 2))
        .then_expect_error(DomainError::TransactionAlreadyCanceled);
}

#[test]
fn a_cancellation_cannot_itself_be_cancelled() {
    let cancel_use = PointEvent::Canceled {
        user_id: user(7),
        transaction_id: id(3),
        canceled_transaction_id: id(2),
        canceled_kind: TransactionKind::Use,
        amount: pts(60),
        balance_after: 100,
        next_expiry: None,
        at: at(3),
    };
    Given::with(())
        .given(vec![earned(1, 100, 100), spent(2, 60, 40), cancel_use])
        .when(cancel(4, 3))
        .then_expect_error(DomainError::TransactionNotCancelable);
}

#[test]
fn cancelling_an_unknown_transaction_is_refused() {
    Given::with(())
        .given(vec![earned(1, 100, 100)])
        .when(cancel(2, 99))
        .then_expect_error(DomainError::TransactionNotFound);
}

#[test]
fn a_users_account_id_is_stable_and_distinct_per_user() {
    assert_eq!(point_account_id(user(7)), point_account_id(user(7)));
    assert_ne!(point_account_id(user(7)), point_account_id(user(8)));
}

// ---- lots that expire ----

/// Decides `command` on `account` and applies what it decided; the events.
fn run(account: &mut PointAccount, command: PointCommand) -> Result<Vec<PointEvent>, DomainError> {
    let events = account.decide(command)?;
    for event in &events {
        account.apply_event(event.clone());
    }
    Ok(events)
}

fn earn_until(tx: u128, amount: i64, expires: chrono::DateTime<chrono::Utc>) -> PointCommand {
    PointCommand::Earn {
        user_id: user(7),
        transaction_id: id(tx),
        amount: pts(amount),
        description: text("promo"),
        expires_at: Some(expires),
        now: at(0),
    }
}

fn day(n: i64) -> chrono::DateTime<chrono::Utc> {
    at(24 * n)
}

#[test]
fn earn_100_for_a_day_and_100_for_three_spend_150_cancel_it_and_the_first_day_expires() {
    let mut account = PointAccount::default();
    run(&mut account, earn_until(1, 100, day(1))).unwrap();
    let events = run(&mut account, earn_until(2, 100, day(3))).unwrap();
    assert_eq!(account.balance(), 200);
    assert!(
        matches!(events[..], [PointEvent::Earned { next_expiry: Some(n), .. }]
        if n.amount == 100 && n.expires_at == day(1))
    );

    // The use takes the points that expire first: all of day 1's, 50 of day 3's.
    let spend = PointCommand::Use {
        user_id: user(7),
        transaction_id: id(3),
        amount: pts(150),
        description: text("checkout"),
        order_id: None,
        now: at(1),
    };
    let events = run(&mut account, spend).unwrap();
    assert_eq!(account.balance(), 50);
    assert_eq!(
        (
            account.lot(&id(1)).unwrap().left,
            account.lot(&id(2)).unwrap().left
        ),
        (0, 50)
    );
    assert!(
        matches!(events[..], [PointEvent::Spent { balance_after: 50, next_expiry: Some(n), .. }]
        if n.amount == 50 && n.expires_at == day(3))
    );

    // Cancelled: each lot gets back what it gave.
    let cancel = PointCommand::Cancel {
        user_id: user(7),
        transaction_id: id(4),
        canceled_transaction_id: id(3),
        now: at(2),
    };
    run(&mut account, cancel).unwrap();
    assert_eq!(account.balance(), 200);
    assert_eq!(
        (
            account.lot(&id(1)).unwrap().left,
            account.lot(&id(2)).unwrap().left
        ),
        (100, 100)
    );

    // Day 1: not before; then what is left of the first lot leaves, once.
    let expire = |tx, now| PointCommand::ExpireLot {
        lot_id: id(1),
        transaction_id: id(tx),
        now,
    };
    assert_eq!(
        run(&mut account, expire(5, at(23))),
        Err(DomainError::LotNotDue)
    );
    let events = run(&mut account, expire(5, day(1))).unwrap();
    assert!(
        matches!(&events[..], [PointEvent::Expired { amount, balance_after: 100, next_expiry: Some(n), .. }]
        if amount.get() == 100 && n.amount == 100 && n.expires_at == day(3))
    );
    assert_eq!(account.balance(), 100);
    assert_eq!(
        run(&mut account, expire(6, day(1))),
        Err(DomainError::LotClosed)
    );
    assert_eq!(
        account.transaction(&id(5)).unwrap().kind,
        TransactionKind::Expire
    );
}

#[test]
fn points_past_their_expiry_are_not_spent_even_before_the_expiry_is_recorded() {
    let mut account = PointAccount::default();
    run(&mut account, earn_until(1, 100, day(1))).unwrap();
    let spend = |now| PointCommand::Use {
        user_id: user(7),
        transaction_id: id(2),
        amount: pts(10),
        description: text("late"),
        order_id: None,
        now,
    };
    assert_eq!(
        run(&mut account, spend(day(1))),
        Err(DomainError::InsufficientBalance)
    );
    assert!(run(&mut account, spend(at(23))).is_ok());
}

#[test]
fn a_use_cancelled_after_its_lot_expired_gives_the_points_back_and_they_expire_at_once() {
    let mut account = PointAccount::default();
    run(&mut account, earn_until(1, 100, day(1))).unwrap();
    let spend = PointCommand::Use {
        user_id: user(7),
        transaction_id: id(2),
        amount: pts(60),
        description: text("checkout"),
        order_id: None,
        now: at(1),
    };
    run(&mut account, spend).unwrap();
    let cancel = PointCommand::Cancel {
        user_id: user(7),
        transaction_id: id(3),
        canceled_transaction_id: id(2),
        now: day(2),
    };
    // The lot's own 40 were never expired by the deadline: they and the 60 leave now.
    let events = run(&mut account, cancel).unwrap();
    assert!(matches!(&events[..], [
        PointEvent::Canceled { balance_after: 100, .. },
        PointEvent::Expired { amount, balance_after: 0, .. },
    ] if amount.get() == 100));
    assert_eq!(account.balance(), 0);
}

#[test]
fn an_earn_is_taken_back_only_whole_and_before_its_expiry() {
    let mut account = PointAccount::default();
    run(&mut account, earn_until(1, 100, day(1))).unwrap();
    let cancel = |tx, now| PointCommand::Cancel {
        user_id: user(7),
        transaction_id: id(tx),
        canceled_transaction_id: id(1),
        now,
    };
    assert_eq!(
        run(&mut account.clone(), cancel(2, day(1))),
        Err(DomainError::PointsAlreadySpent)
    );
    assert!(run(&mut account, cancel(2, at(1))).is_ok());
    assert_eq!(account.balance(), 0);
}
