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
        balance_after,
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
        at: at(2),
    }
}

fn earn(tx: u128, amount: i64) -> PointCommand {
    PointCommand::Earn {
        user_id: user(7),
        transaction_id: id(tx),
        amount: pts(amount),
        description: text("purchase"),
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
