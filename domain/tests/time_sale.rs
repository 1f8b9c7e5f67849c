//! Given / when / then for products, time sales and orders (docs/product.md, "Time sales").
#![allow(clippy::unwrap_used)] // fixtures and samples panic on bad test data, by design

mod common;

use common::*;
use cqrs_es::test::TestFramework;
use domain::product::{Product, ProductCommand, ProductEvent, ProductSpec};
use domain::time_sale::{
    HoldEnded, TimeSale, TimeSaleCommand, TimeSaleEvent, TimeSaleSpec, TimeSaleStatus,
};
use domain::DomainError;

type Given = TestFramework<TimeSale>;

fn created(stock: i64, limit: Option<i64>) -> TimeSaleEvent {
    TimeSaleEvent::TimeSaleCreated {
        spec: sale(stock, limit),
        at: at(-1),
    }
}

fn placed(order: u128, user_id: i64, quantity: i64, remaining_after: u32) -> TimeSaleEvent {
    TimeSaleEvent::OrderPlaced {
        order_id: id(order),
        user_id: user(user_id),
        quantity: qty(quantity),
        unit_price: money(7_000),
        total_price: money(7_000 * quantity),
        remaining_after,
        at: at(1),
    }
}

fn order(order: u128, user_id: i64, quantity: i64, hours: i64) -> TimeSaleCommand {
    TimeSaleCommand::PlaceOrder {
        order_id: id(order),
        user_id: user(user_id),
        quantity: qty(quantity),
        now: at(hours),
    }
}

fn cancel(order: u128, acting: Option<i64>) -> TimeSaleCommand {
    TimeSaleCommand::CancelOrder {
        order_id: id(order),
        acting_user: acting.map(user),
        now: at(1),
    }
}

// ---- products ----

#[test]
fn creating_a_product_records_it_once() {
    TestFramework::<Product>::with(())
        .given_no_previous_events()
        .when(ProductCommand::CreateProduct {
            spec: product(),
            now: at(0),
        })
        .then_expect_events(vec![ProductEvent::ProductCreated {
            spec: product(),
            at: at(0),
        }]);
    TestFramework::<Product>::with(())
        .given(vec![ProductEvent::ProductCreated {
            spec: product(),
            at: at(0),
        }])
        .when(ProductCommand::CreateProduct {
            spec: product(),
            now: at(1),
        })
        .then_expect_error(DomainError::ProductAlreadyExists);
}

#[test]
fn a_product_price_must_be_positive() {
    assert!(ProductSpec::new(text("x"), money(0), text("d")).is_err());
}

// ---- creating a sale ----

#[test]
fn creating_a_time_sale_records_it() {
    Given::with(())
        .given_no_previous_events()
        .when(TimeSaleCommand::CreateTimeSale {
            spec: sale(10, None),
            now: at(-1),
        })
        .then_expect_events(vec![created(10, None)]);
}

#[test]
fn a_discount_price_must_be_below_the_product_price() {
    let spec = |discount| {
        TimeSaleSpec::new(
            id(900),
            money(10_000),
            money(discount),
            qty(1),
            at(0),
            at(1),
            None,
        )
    };
    assert!(spec(10_000).is_err());
    assert!(spec(0).is_err());
    assert!(spec(9_999).is_ok());
}

#[test]
fn a_sale_window_must_end_after_it_starts() {
    assert!(TimeSaleSpec::new(id(900), money(10), money(5), qty(1), at(1), at(1), None).is_err());
}

// ---- status ----

#[test]
fn the_status_is_derived_from_the_time_and_the_stock() {
    assert_eq!(
        TimeSaleStatus::at(at(0), at(2), 5, at(-1)),
        TimeSaleStatus::Scheduled
    );
    assert_eq!(
        TimeSaleStatus::at(at(0), at(2), 5, at(0)),
        TimeSaleStatus::Active
    );
    assert_eq!(
        TimeSaleStatus::at(at(0), at(2), 0, at(1)),
        TimeSaleStatus::SoldOut
    );
    assert_eq!(
        TimeSaleStatus::at(at(0), at(2), 5, at(2)),
        TimeSaleStatus::Ended
    );
    assert_eq!(
        TimeSaleStatus::at(at(0), at(2), 0, at(3)),
        TimeSaleStatus::Ended
    );
}

// ---- ordering ----

#[test]
fn an_order_takes_units_from_the_stock_at_the_discount_price() {
    Given::with(())
        .given(vec![created(10, None)])
        .when(order(1, 7, 3, 1))
        .then_expect_events(vec![placed(1, 7, 3, 7)]);
}

#[test]
fn ordering_before_the_sale_starts_is_refused() {
    Given::with(())
        .given(vec![created(10, None)])
        .when(order(1, 7, 1, -1))
        .then_expect_error(DomainError::TimeSaleNotStarted);
}

#[test]
fn ordering_after_the_sale_ends_is_refused() {
    Given::with(())
        .given(vec![created(10, None)])
        .when(order(1, 7, 1, 2))
        .then_expect_error(DomainError::TimeSaleEnded);
}

#[test]
fn ordering_from_a_sold_out_sale_is_refused() {
    Given::with(())
        .given(vec![created(2, None), placed(1, 7, 2, 0)])
        .when(order(2, 8, 1, 1))
        .then_expect_error(DomainError::SoldOut);
}

#[test]
fn ordering_more_than_the_remaining_stock_is_refused() {
    Given::with(())
        .given(vec![created(5, None), placed(1, 7, 3, 2)])
        .when(order(2, 8, 3, 1))
        .then_expect_error(DomainError::InsufficientStock);
}

#[test]
fn a_user_cannot_buy_more_than_the_per_user_limit_across_orders() {
    Given::with(())
        .given(vec![created(10, Some(2)), placed(1, 7, 1, 9)])
        .when(order(2, 7, 2, 1))
        .then_expect_error(DomainError::PerUserLimitExceeded);
}

#[test]
fn another_user_is_not_held_by_someone_elses_limit() {
    Given::with(())
        .given(vec![created(10, Some(2)), placed(1, 7, 2, 8)])
        .when(order(2, 8, 2, 1))
        .then_expect_events(vec![placed(2, 8, 2, 6)]);
}

#[test]
fn an_order_id_is_never_reused() {
    Given::with(())
        .given(vec![created(10, None), placed(1, 7, 1, 9)])
        .when(order(1, 8, 1, 1))
        .then_expect_error(DomainError::OrderIdTaken);
}

#[test]
fn ordering_from_an_unknown_sale_is_refused() {
    Given::with(())
        .given_no_previous_events()
        .when(order(1, 7, 1, 1))
        .then_expect_error(DomainError::TimeSaleNotFound);
}

// ---- cancelling ----

#[test]
fn cancelling_an_order_returns_its_units_to_stock() {
    Given::with(())
        .given(vec![created(10, None), placed(1, 7, 3, 7)])
        .when(cancel(1, Some(7)))
        .then_expect_events(vec![TimeSaleEvent::OrderCanceled {
            order_id: id(1),
            user_id: user(7),
            quantity: qty(3),
            remaining_after: 10,
            at: at(1),
        }]);
}

#[test]
fn a_cancelled_order_frees_the_users_limit_and_a_sold_out_sale_sells_again() {
    let canceled = TimeSaleEvent::OrderCanceled {
        order_id: id(1),
        user_id: user(7),
        quantity: qty(2),
        remaining_after: 2,
        at: at(1),
    };
    Given::with(())
        .given(vec![created(2, Some(2)), placed(1, 7, 2, 0), canceled])
        .when(order(2, 7, 2, 1))
        .then_expect_events(vec![placed(2, 7, 2, 0)]);
}

#[test]
fn an_order_is_cancelled_at_most_once() {
    let canceled = TimeSaleEvent::OrderCanceled {
        order_id: id(1),
        user_id: user(7),
        quantity: qty(3),
        remaining_after: 10,
        at: at(1),
    };
    Given::with(())
        .given(vec![created(10, None), placed(1, 7, 3, 7), canceled])
        .when(cancel(1, None))
        .then_expect_error(DomainError::OrderAlreadyCanceled);
}

#[test]
fn cancelling_another_users_order_is_refused() {
    Given::with(())
        .given(vec![created(10, None), placed(1, 7, 3, 7)])
        .when(cancel(1, Some(8)))
        .then_expect_error(DomainError::NotOrderOwner);
}

#[test]
fn cancelling_an_unknown_order_is_refused() {
    Given::with(())
        .given(vec![created(10, None)])
        .when(cancel(1, None))
        .then_expect_error(DomainError::OrderNotFound);
}

// ---- checkout holds ----

fn reserve(n: u128, order_ref: &str, user_id: i64, quantity: i64) -> TimeSaleCommand {
    TimeSaleCommand::Reserve {
        reservation_id: id(n),
        order_ref: domain::values::Text::parse_reference(order_ref, "orderId").unwrap(),
        user_id: user(user_id),
        quantity: qty(quantity),
        expires_at: at(1) + chrono::Duration::minutes(2),
        now: at(1),
    }
}

fn reserved(
    n: u128,
    order_ref: &str,
    user_id: i64,
    quantity: i64,
    left: u32,
    held: u32,
) -> TimeSaleEvent {
    TimeSaleEvent::Reserved {
        reservation_id: id(n),
        order_ref: domain::values::Text::parse_reference(order_ref, "orderId").unwrap(),
        user_id: user(user_id),
        quantity: qty(quantity),
        unit_price: money(7_000),
        expires_at: at(1) + chrono::Duration::minutes(2),
        remaining_after: left,
        reserved_after: held,
        at: at(1),
    }
}

fn ended(
    n: u128,
    user_id: i64,
    quantity: i64,
    left: u32,
    held: u32,
    when: chrono::DateTime<chrono::Utc>,
) -> HoldEnded {
    HoldEnded {
        reservation_id: id(n),
        user_id: user(user_id),
        quantity: qty(quantity),
        remaining_after: left,
        reserved_after: held,
        at: when,
    }
}

fn after_two_minutes() -> chrono::DateTime<chrono::Utc> {
    at(1) + chrono::Duration::minutes(2)
}

#[test]
fn a_hold_takes_units_out_of_stock_for_everyone_else() {
    Given::with(())
        .given(vec![created(3, None), reserved(1, "co-1", 7, 2, 1, 2)])
        .when(order(5, 8, 2, 1))
        .then_expect_error(DomainError::InsufficientStock);
    Given::with(())
        .given(vec![created(2, None), reserved(1, "co-1", 7, 2, 0, 2)])
        .when(reserve(2, "co-2", 8, 1))
        .then_expect_error(DomainError::SoldOut);
    Given::with(())
        .given(vec![created(3, None)])
        .when(reserve(1, "co-1", 7, 2))
        .then_expect_events(vec![reserved(1, "co-1", 7, 2, 1, 2)]);
}

#[test]
fn one_hold_per_order_and_the_buyer_limit_counts_holds() {
    Given::with(())
        .given(vec![created(10, None), reserved(1, "co-1", 7, 2, 8, 2)])
        .when(reserve(2, "co-1", 7, 2))
        .then_expect_error(DomainError::ReservationExists);
    Given::with(())
        .given(vec![created(10, Some(2)), reserved(1, "co-1", 7, 2, 8, 2)])
        .when(order(5, 7, 1, 1))
        .then_expect_error(DomainError::PerUserLimitExceeded);
}

#[test]
fn a_confirmed_hold_becomes_an_order_the_stock_unchanged() {
    Given::with(())
        .given(vec![created(3, None), reserved(1, "co-1", 7, 2, 1, 2)])
        .when(TimeSaleCommand::ConfirmReservation {
            reservation_id: id(1),
            order_id: id(50),
            acting_user: Some(user(7)),
            now: at(1),
        })
        .then_expect_events(vec![TimeSaleEvent::ReservationConfirmed {
            reservation_id: id(1),
            order_id: id(50),
            user_id: user(7),
            quantity: qty(2),
            unit_price: money(7_000),
            total_price: money(14_000),
            remaining_after: 1,
            reserved_after: 0,
            at: at(1),
        }]);
    Given::with(())
        .given(vec![created(3, None), reserved(1, "co-1", 7, 2, 1, 2)])
        .when(TimeSaleCommand::ConfirmReservation {
            reservation_id: id(1),
            order_id: id(50),
            acting_user: Some(user(8)),
            now: at(1),
        })
        .then_expect_error(DomainError::NotReservationOwner);
}

#[test]
fn a_released_hold_is_back_in_stock_at_once_and_ends_for_good() {
    let release = |n| TimeSaleCommand::ReleaseReservation {
        reservation_id: id(n),
        acting_user: None,
        now: at(1),
    };
    Given::with(())
        .given(vec![created(3, None), reserved(1, "co-1", 7, 2, 1, 2)])
        .when(release(1))
        .then_expect_events(vec![TimeSaleEvent::ReservationReleased(ended(
            1,
            7,
            2,
            3,
            0,
            at(1),
        ))]);
    Given::with(())
        .given(vec![
            created(3, None),
            reserved(1, "co-1", 7, 2, 1, 2),
            TimeSaleEvent::ReservationReleased(ended(1, 7, 2, 3, 0, at(1))),
        ])
        .when(release(1))
        .then_expect_error(DomainError::ReservationClosed);
    // Released units sell again at once.
    Given::with(())
        .given(vec![
            created(2, None),
            reserved(1, "co-1", 7, 2, 0, 2),
            TimeSaleEvent::ReservationReleased(ended(1, 7, 2, 2, 0, at(1))),
        ])
        .when(order(5, 8, 2, 1))
        .then_expect_events(vec![placed(5, 8, 2, 0)]);
}

#[test]
fn a_hold_expires_once_and_only_when_due() {
    let expire = |now| TimeSaleCommand::ExpireReservation {
        reservation_id: id(1),
        now,
    };
    Given::with(())
        .given(vec![created(3, None), reserved(1, "co-1", 7, 2, 1, 2)])
        .when(expire(at(1)))
        .then_expect_error(DomainError::ReservationNotDue);
    Given::with(())
        .given(vec![created(3, None), reserved(1, "co-1", 7, 2, 1, 2)])
        .when(expire(after_two_minutes()))
        .then_expect_events(vec![TimeSaleEvent::ReservationExpired(ended(
            1,
            7,
            2,
            3,
            0,
            after_two_minutes(),
        ))]);
    Given::with(())
        .given(vec![
            created(3, None),
            reserved(1, "co-1", 7, 2, 1, 2),
            TimeSaleEvent::ReservationExpired(ended(1, 7, 2, 3, 0, after_two_minutes())),
        ])
        .when(expire(after_two_minutes()))
        .then_expect_error(DomainError::ReservationClosed);
}

#[test]
fn a_hold_past_its_expiry_cannot_be_confirmed_even_before_the_deadline_fires() {
    Given::with(())
        .given(vec![created(3, None), reserved(1, "co-1", 7, 2, 1, 2)])
        .when(TimeSaleCommand::ConfirmReservation {
            reservation_id: id(1),
            order_id: id(50),
            acting_user: None,
            now: after_two_minutes(),
        })
        .then_expect_error(DomainError::ReservationExpired);
}
