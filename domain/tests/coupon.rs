//! Given / when / then for coupon policies and their coupons (docs/product.md, "Coupons").
#![allow(clippy::unwrap_used)] // fixtures and samples panic on bad test data, by design

mod common;

use chrono::Duration;
use common::*;
use cqrs_es::test::TestFramework;
use domain::coupon::{
    check_applicable, Coupon, CouponCommand, CouponEvent, CouponPolicy, CouponState, CouponStatus,
    DiscountTerms, DiscountType, PolicySpec,
};
use domain::DomainError;

type Given = TestFramework<CouponPolicy>;

fn created(total: i64) -> CouponEvent {
    CouponEvent::PolicyCreated {
        spec: policy(total, percent(10, 1_000, 500)),
    }
}

fn issued(coupon: u128, user_id: i64, count: u32) -> CouponEvent {
    CouponEvent::CouponIssued {
        coupon_id: id(coupon),
        user_id: user(user_id),
        expires_at: at(24) + Duration::days(30),
        issued_count: count,
        at: at(1),
    }
}

fn used(coupon: u128, user_id: i64) -> CouponEvent {
    CouponEvent::CouponUsed {
        coupon_id: id(coupon),
        user_id: user(user_id),
        order_id: text("order-1"),
        order_amount: money(3_000),
        discount: money(300),
        used_count: 1,
        discount_granted: Some(money(300)),
        at: at(2),
    }
}

fn issue(coupon: u128, user_id: i64, hours: i64) -> CouponCommand {
    CouponCommand::IssueCoupon {
        coupon_id: id(coupon),
        user_id: user(user_id),
        now: at(hours),
    }
}

fn use_coupon(coupon: u128, acting: Option<i64>, amount: i64, hours: i64) -> CouponCommand {
    CouponCommand::UseCoupon {
        coupon_id: id(coupon),
        acting_user: acting.map(user),
        order_id: text("order-1"),
        order_amount: money(amount),
        now: at(hours),
    }
}

// ---- creating a policy ----

#[test]
fn creating_a_policy_records_it() {
    let spec = policy(100, percent(10, 1_000, 500));
    Given::with(())
        .given_no_previous_events()
        .when(CouponCommand::CreatePolicy { spec: spec.clone() })
        .then_expect_events(vec![CouponEvent::PolicyCreated { spec }]);
}

#[test]
fn creating_a_policy_twice_is_refused() {
    Given::with(())
        .given(vec![created(100)])
        .when(CouponCommand::CreatePolicy {
            spec: policy(5, fixed(100, 0)),
        })
        .then_expect_error(DomainError::PolicyAlreadyExists);
}

#[test]
fn a_policy_window_must_end_after_it_starts() {
    let result = PolicySpec::new(text("t"), text("d"), qty(1), at(5), at(5), fixed(100, 0));
    assert_eq!(
        result,
        Err(DomainError::unacceptable(
            "endTime",
            "must be after startTime"
        ))
    );
}

#[test]
fn a_percentage_discount_must_be_between_1_and_100() {
    assert!(DiscountTerms::new(DiscountType::Percentage, 101, money(0), money(0)).is_err());
    assert!(DiscountTerms::new(DiscountType::Percentage, 0, money(0), money(0)).is_err());
    assert!(DiscountTerms::new(DiscountType::Percentage, 100, money(0), money(0)).is_ok());
    assert!(DiscountTerms::new(DiscountType::FixedAmount, 0, money(0), money(0)).is_err());
    assert!(DiscountTerms::new(DiscountType::FixedAmount, 5_000, money(0), money(0)).is_ok());
}

// ---- issuing ----

#[test]
fn a_coupon_is_issued_inside_the_window_and_expires_30_days_after_the_end() {
    Given::with(())
        .given(vec![created(100)])
        .when(issue(1, 7, 1))
        .then_expect_events(vec![issued(1, 7, 1)]);
}

#[test]
fn issuing_before_the_window_opens_is_refused() {
    Given::with(())
        .given(vec![created(100)])
        .when(issue(1, 7, -1))
        .then_expect_error(DomainError::IssuanceNotStarted);
}

#[test]
fn issuing_at_or_after_the_end_of_the_window_is_refused() {
    Given::with(())
        .given(vec![created(100)])
        .when(issue(1, 7, 24))
        .then_expect_error(DomainError::IssuanceEnded);
}

#[test]
fn a_user_gets_at_most_one_coupon_per_policy() {
    Given::with(())
        .given(vec![created(100), issued(1, 7, 1)])
        .when(issue(2, 7, 2))
        .then_expect_error(DomainError::CouponAlreadyIssued);
}

#[test]
fn no_coupon_is_issued_beyond_the_total_quantity() {
    Given::with(())
        .given(vec![created(2), issued(1, 7, 1), issued(2, 8, 2)])
        .when(issue(3, 9, 3))
        .then_expect_error(DomainError::CouponsExhausted);
}

#[test]
fn a_coupon_id_is_never_reused() {
    Given::with(())
        .given(vec![created(100), issued(1, 7, 1)])
        .when(issue(1, 8, 2))
        .then_expect_error(DomainError::CouponIdTaken);
}

#[test]
fn issuing_from_an_unknown_policy_is_refused() {
    Given::with(())
        .given_no_previous_events()
        .when(issue(1, 7, 1))
        .then_expect_error(DomainError::PolicyNotFound);
}

// ---- using ----

#[test]
fn using_a_coupon_records_the_order_and_the_capped_percentage_discount() {
    // 10 % of 3,000 = 300, under the cap of 500.
    Given::with(())
        .given(vec![created(100), issued(1, 7, 1)])
        .when(use_coupon(1, Some(7), 3_000, 2))
        .then_expect_events(vec![used(1, 7)]);
}

#[test]
fn using_a_coupon_below_the_minimum_order_amount_is_refused() {
    Given::with(())
        .given(vec![created(100), issued(1, 7, 1)])
        .when(use_coupon(1, Some(7), 999, 2))
        .then_expect_error(DomainError::BelowMinimumOrder);
}

#[test]
fn using_another_users_coupon_is_refused() {
    Given::with(())
        .given(vec![created(100), issued(1, 7, 1)])
        .when(use_coupon(1, Some(8), 3_000, 2))
        .then_expect_error(DomainError::NotCouponOwner);
}

#[test]
fn a_trusted_service_may_use_a_coupon_for_its_owner() {
    let events = Given::with(())
        .given(vec![created(100), issued(1, 7, 1)])
        .when(use_coupon(1, None, 3_000, 2))
        .inspect_result()
        .unwrap();
    assert!(matches!(events[..], [CouponEvent::CouponUsed { user_id, .. }] if user_id == user(7)));
}

#[test]
fn a_used_coupon_cannot_be_used_again() {
    Given::with(())
        .given(vec![created(100), issued(1, 7, 1), used(1, 7)])
        .when(use_coupon(1, Some(7), 3_000, 3))
        .then_expect_error(DomainError::CouponAlreadyUsed);
}

#[test]
fn an_expired_coupon_cannot_be_used() {
    let after_expiry = 24 + 30 * 24;
    Given::with(())
        .given(vec![created(100), issued(1, 7, 1)])
        .when(use_coupon(1, Some(7), 3_000, after_expiry))
        .then_expect_error(DomainError::CouponExpired);
}

#[test]
fn a_coupon_stays_usable_after_the_issuance_window_until_it_expires() {
    let events = Given::with(())
        .given(vec![created(100), issued(1, 7, 1)])
        .when(use_coupon(1, Some(7), 3_000, 24 + 30 * 24 - 1))
        .inspect_result();
    assert!(events.is_ok());
}

#[test]
fn a_revoked_coupon_cannot_be_used() {
    Given::with(())
        .given(vec![
            created(100),
            issued(1, 7, 1),
            CouponEvent::CouponRevoked {
                coupon_id: id(1),
                user_id: user(7),
                at: at(2),
            },
        ])
        .when(use_coupon(1, Some(7), 3_000, 3))
        .then_expect_error(DomainError::CouponRevoked);
}

#[test]
fn using_an_unknown_coupon_is_refused() {
    Given::with(())
        .given(vec![created(100)])
        .when(use_coupon(1, Some(7), 3_000, 3))
        .then_expect_error(DomainError::CouponNotFound);
}

// ---- discount arithmetic ----

#[test]
fn a_percentage_discount_is_rounded_down() {
    assert_eq!(percent(15, 0, 0).discount_for(money(999)), money(149)); // 149.85
}

#[test]
fn a_percentage_discount_is_capped_by_the_maximum_unless_the_maximum_is_zero() {
    assert_eq!(
        percent(50, 0, 1_000).discount_for(money(10_000)),
        money(1_000)
    );
    assert_eq!(percent(50, 0, 0).discount_for(money(10_000)), money(5_000));
}

#[test]
fn a_discount_never_exceeds_the_order_amount() {
    assert_eq!(fixed(5_000, 0).discount_for(money(1_200)), money(1_200));
    assert_eq!(percent(100, 0, 0).discount_for(money(1_200)), money(1_200));
}

#[test]
fn a_percentage_discount_of_a_huge_order_does_not_overflow() {
    assert_eq!(
        percent(100, 0, 0).discount_for(money(i64::MAX)),
        money(i64::MAX)
    );
}

// ---- cancel use ----

#[test]
fn cancelling_a_use_makes_the_coupon_available_again() {
    Given::with(())
        .given(vec![created(100), issued(1, 7, 1), used(1, 7)])
        .when(CouponCommand::CancelCouponUse {
            coupon_id: id(1),
            acting_user: Some(user(7)),
            now: at(3),
        })
        .then_expect_events(vec![CouponEvent::CouponUseCanceled {
            coupon_id: id(1),
            user_id: user(7),
            order_id: text("order-1"),
            used_count: 0,
            discount_granted: Some(money(0)),
            at: at(3),
        }]);
}

#[test]
fn a_coupon_whose_use_was_cancelled_can_be_used_again() {
    let events = Given::with(())
        .given(vec![
            created(100),
            issued(1, 7, 1),
            used(1, 7),
            CouponEvent::CouponUseCanceled {
                coupon_id: id(1),
                user_id: user(7),
                order_id: text("order-1"),
                used_count: 0,
                // Recorded before budgets (v1): no tally.
                discount_granted: None,
                at: at(3),
            },
        ])
        .when(use_coupon(1, Some(7), 3_000, 4))
        .inspect_result()
        .unwrap();
    assert!(matches!(
        events[..],
        [CouponEvent::CouponUsed { used_count: 1, .. }]
    ));
}

#[test]
fn cancelling_the_use_of_an_unused_coupon_is_refused() {
    Given::with(())
        .given(vec![created(100), issued(1, 7, 1)])
        .when(CouponCommand::CancelCouponUse {
            coupon_id: id(1),
            acting_user: None,
            now: at(3),
        })
        .then_expect_error(DomainError::CouponNotUsed);
}

#[test]
fn cancelling_the_use_of_another_users_coupon_is_refused() {
    Given::with(())
        .given(vec![created(100), issued(1, 7, 1), used(1, 7)])
        .when(CouponCommand::CancelCouponUse {
            coupon_id: id(1),
            acting_user: Some(user(8)),
            now: at(3),
        })
        .then_expect_error(DomainError::NotCouponOwner);
}

#[test]
fn a_coupon_whose_use_is_cancelled_after_expiry_is_expired_not_available() {
    let mut policy = CouponPolicy::default();
    for e in [created(100), issued(1, 7, 1), used(1, 7)] {
        policy.apply_event(e);
    }
    let late = at(24 + 31 * 24);
    let events = policy
        .decide(CouponCommand::CancelCouponUse {
            coupon_id: id(1),
            acting_user: None,
            now: late,
        })
        .unwrap();
    for e in events {
        policy.apply_event(e);
    }
    let coupon = policy.coupon(&id(1)).unwrap();
    assert_eq!(
        CouponStatus::at(&coupon.state, coupon.expires_at, late),
        CouponStatus::Expired
    );
}

// ---- revoke ----

#[test]
fn revoking_an_available_coupon_cancels_it_for_good() {
    Given::with(())
        .given(vec![created(100), issued(1, 7, 1)])
        .when(CouponCommand::RevokeCoupon {
            coupon_id: id(1),
            now: at(2),
        })
        .then_expect_events(vec![CouponEvent::CouponRevoked {
            coupon_id: id(1),
            user_id: user(7),
            at: at(2),
        }]);
}

#[test]
fn revoking_a_used_coupon_is_refused() {
    Given::with(())
        .given(vec![created(100), issued(1, 7, 1), used(1, 7)])
        .when(CouponCommand::RevokeCoupon {
            coupon_id: id(1),
            now: at(3),
        })
        .then_expect_error(DomainError::CouponAlreadyUsed);
}

#[test]
fn revoking_twice_is_refused() {
    Given::with(())
        .given(vec![
            created(100),
            issued(1, 7, 1),
            CouponEvent::CouponRevoked {
                coupon_id: id(1),
                user_id: user(7),
                at: at(2),
            },
        ])
        .when(CouponCommand::RevokeCoupon {
            coupon_id: id(1),
            now: at(3),
        })
        .then_expect_error(DomainError::CouponRevoked);
}

#[test]
fn cancelling_the_use_of_a_revoked_coupon_is_refused() {
    Given::with(())
        .given(vec![
            created(100),
            issued(1, 7, 1),
            CouponEvent::CouponRevoked {
                coupon_id: id(1),
                user_id: user(7),
                at: at(2),
            },
        ])
        .when(CouponCommand::CancelCouponUse {
            coupon_id: id(1),
            acting_user: None,
            now: at(3),
        })
        .then_expect_error(DomainError::CouponRevoked);
}

// ---- quote ----

fn coupon(state: CouponState) -> Coupon {
    Coupon {
        user_id: user(7),
        expires_at: at(100),
        state,
    }
}

#[test]
fn a_quote_gives_the_discount_without_changing_anything() {
    let terms = percent(10, 1_000, 500);
    let c = coupon(CouponState::Available);
    assert_eq!(
        check_applicable(Some(&c), &terms, Some(user(7)), money(8_000), at(1)),
        Ok(money(500))
    );
}

#[test]
fn a_quote_names_the_reason_a_coupon_does_not_apply() {
    let terms = percent(10, 1_000, 500);
    let reason = |c: Option<&Coupon>, who: i64, amount: i64, hours: i64| {
        check_applicable(c, &terms, Some(user(who)), money(amount), at(hours))
            .unwrap_err()
            .code()
    };
    let available = coupon(CouponState::Available);
    let used = coupon(CouponState::Used {
        order_id: text("o"),
        order_amount: money(2_000),
        discount: money(200),
    });
    let revoked = coupon(CouponState::Revoked);
    assert_eq!(reason(None, 7, 2_000, 1), "NOT_FOUND");
    assert_eq!(reason(Some(&available), 8, 2_000, 1), "NOT_OWNER");
    assert_eq!(reason(Some(&available), 7, 2_000, 100), "EXPIRED");
    assert_eq!(reason(Some(&used), 7, 2_000, 1), "ALREADY_USED");
    assert_eq!(reason(Some(&revoked), 7, 2_000, 1), "REVOKED");
    assert_eq!(reason(Some(&available), 7, 999, 1), "BELOW_MINIMUM_ORDER");
}

#[test]
fn a_recorded_policy_reads_back_even_where_todays_rules_would_refuse_it() {
    use domain::wire::WireCodec;
    // A campaign recorded before times were bounded (1960) with a title of a BEL character:
    // the log stays readable; only new commands meet the stricter rules.
    let spec = PolicySpec::recorded(
        serde_json::from_str("\"bell \\u0007\"").unwrap(),
        text("old"),
        qty(5),
        chrono::DateTime::parse_from_rfc3339("1960-01-01T00:00:00Z")
            .unwrap()
            .into(),
        at(24),
        DiscountTerms::recorded(DiscountType::Percentage, 10, money(0), money(0)),
    );
    assert!(PolicySpec::new(
        spec.title().clone(),
        spec.description().clone(),
        qty(5),
        spec.start_time(),
        spec.end_time(),
        spec.terms().clone(),
    )
    .is_err());
    let event = CouponEvent::PolicyCreated { spec };
    assert_eq!(CouponEvent::from_wire(&event.to_wire()).unwrap(), event);
}

// ---- budgets and coupons per user ----

/// A policy of 10 % off (at most 500) with a budget of `budget` and `per_user` coupons a user.
fn limited(budget: Option<i64>, per_user: Option<i64>) -> CouponEvent {
    CouponEvent::PolicyCreated {
        spec: policy(100, percent(10, 1_000, 500))
            .with_limits(budget.map(money), per_user.map(qty)),
    }
}

#[test]
fn a_use_that_would_pass_the_budget_is_refused_and_one_that_fits_is_not() {
    // 300 granted of 500: a use worth 300 more would pass it.
    Given::with(())
        .given(vec![
            limited(Some(500), None),
            issued(1, 7, 1),
            issued(2, 8, 2),
            used(1, 7),
        ])
        .when(use_coupon(2, Some(8), 3_000, 3))
        .then_expect_error(DomainError::BudgetExhausted);
    // One worth 200 fits exactly.
    let events = Given::with(())
        .given(vec![
            limited(Some(500), None),
            issued(1, 7, 1),
            issued(2, 8, 2),
            used(1, 7),
        ])
        .when(use_coupon(2, Some(8), 2_000, 3))
        .inspect_result()
        .unwrap();
    assert!(matches!(
        &events[..],
        [CouponEvent::CouponUsed { discount, discount_granted: Some(granted), .. }]
            if *discount == money(200) && *granted == money(500)
    ));
}

#[test]
fn cancelling_a_use_gives_its_discount_back_to_the_budget() {
    Given::with(())
        .given(vec![
            limited(Some(500), None),
            issued(1, 7, 1),
            issued(2, 8, 2),
            used(1, 7),
            CouponEvent::CouponUseCanceled {
                coupon_id: id(1),
                user_id: user(7),
                order_id: text("order-1"),
                used_count: 0,
                discount_granted: Some(money(0)),
                at: at(3),
            },
        ])
        .when(use_coupon(2, Some(8), 5_000, 4))
        .then_expect_events(vec![CouponEvent::CouponUsed {
            coupon_id: id(2),
            user_id: user(8),
            order_id: text("order-1"),
            order_amount: money(5_000),
            discount: money(500),
            used_count: 1,
            discount_granted: Some(money(500)),
            at: at(4),
        }]);
}

#[test]
fn a_user_may_be_issued_as_many_coupons_as_the_policy_allows() {
    Given::with(())
        .given(vec![limited(None, Some(2)), issued(1, 7, 1)])
        .when(issue(2, 7, 1))
        .then_expect_events(vec![issued(2, 7, 2)]);
    Given::with(())
        .given(vec![
            limited(None, Some(2)),
            issued(1, 7, 1),
            issued(2, 7, 2),
        ])
        .when(issue(3, 7, 2))
        .then_expect_error(DomainError::CouponAlreadyIssued);
}

// ---- coupon holds ----

fn hold(coupon: u128, user_id: i64, amount: i64, hours: i64) -> CouponCommand {
    CouponCommand::ReserveCoupon {
        coupon_id: id(coupon),
        acting_user: Some(user(user_id)),
        order_id: text("checkout-1"),
        order_amount: money(amount),
        until: at(hours) + Duration::minutes(2),
        now: at(hours),
    }
}

fn held(coupon: u128, user_id: i64, discount: i64, granted: i64) -> CouponEvent {
    CouponEvent::CouponReserved {
        coupon_id: id(coupon),
        user_id: user(user_id),
        order_id: text("checkout-1"),
        order_amount: money(discount * 10),
        discount: money(discount),
        until: at(2) + Duration::minutes(2),
        discount_granted: money(granted),
        at: at(2),
    }
}

#[test]
fn a_held_coupon_cannot_be_used_or_held_again_and_its_discount_counts_against_the_budget() {
    Given::with(())
        .given(vec![limited(Some(500), None), issued(1, 7, 1)])
        .when(hold(1, 7, 3_000, 2))
        .then_expect_events(vec![held(1, 7, 300, 300)]);
    Given::with(())
        .given(vec![
            limited(Some(500), None),
            issued(1, 7, 1),
            held(1, 7, 300, 300),
        ])
        .when(use_coupon(1, Some(7), 3_000, 2))
        .then_expect_error(DomainError::CouponReserved);
    Given::with(())
        .given(vec![
            limited(Some(500), None),
            issued(1, 7, 1),
            held(1, 7, 300, 300),
        ])
        .when(hold(1, 7, 3_000, 2))
        .then_expect_error(DomainError::CouponReserved);
    // The held 300 count: another coupon's 300 would pass the 500.
    Given::with(())
        .given(vec![
            limited(Some(500), None),
            issued(1, 7, 1),
            issued(2, 8, 2),
            held(1, 7, 300, 300),
        ])
        .when(use_coupon(2, Some(8), 3_000, 2))
        .then_expect_error(DomainError::BudgetExhausted);
}

#[test]
fn a_confirmed_hold_is_a_use_and_an_expired_one_gives_the_coupon_and_the_budget_back() {
    let confirm = |hours| CouponCommand::ConfirmCouponReservation {
        coupon_id: id(1),
        acting_user: Some(user(7)),
        now: at(hours),
    };
    Given::with(())
        .given(vec![
            limited(Some(500), None),
            issued(1, 7, 1),
            held(1, 7, 300, 300),
        ])
        .when(confirm(2))
        .then_expect_events(vec![CouponEvent::CouponUsed {
            coupon_id: id(1),
            user_id: user(7),
            order_id: text("checkout-1"),
            order_amount: money(3_000),
            discount: money(300),
            used_count: 1,
            discount_granted: Some(money(300)),
            at: at(2),
        }]);
    // Past the hold's end: not confirmed; the system expires it, not before, and once.
    Given::with(())
        .given(vec![
            limited(Some(500), None),
            issued(1, 7, 1),
            held(1, 7, 300, 300),
        ])
        .when(confirm(3))
        .then_expect_error(DomainError::ReservationExpired);
    let expire = |hours| CouponCommand::ExpireCouponReservation {
        coupon_id: id(1),
        now: at(hours),
    };
    Given::with(())
        .given(vec![
            limited(Some(500), None),
            issued(1, 7, 1),
            held(1, 7, 300, 300),
        ])
        .when(expire(2))
        .then_expect_error(DomainError::ReservationNotDue);
    let ended = CouponEvent::CouponReservationExpired(domain::coupon::CouponHoldEnded {
        coupon_id: id(1),
        user_id: user(7),
        order_id: text("checkout-1"),
        discount_granted: money(0),
        at: at(3),
    });
    Given::with(())
        .given(vec![
            limited(Some(500), None),
            issued(1, 7, 1),
            held(1, 7, 300, 300),
        ])
        .when(expire(3))
        .then_expect_events(vec![ended.clone()]);
    Given::with(())
        .given(vec![
            limited(Some(500), None),
            issued(1, 7, 1),
            held(1, 7, 300, 300),
            ended.clone(),
        ])
        .when(expire(3))
        .then_expect_error(DomainError::ReservationClosed);
    // Available again, with the whole budget.
    let events = Given::with(())
        .given(vec![
            limited(Some(500), None),
            issued(1, 7, 1),
            held(1, 7, 300, 300),
            ended,
        ])
        .when(use_coupon(1, Some(7), 5_000, 4))
        .inspect_result()
        .unwrap();
    assert!(
        matches!(&events[..], [CouponEvent::CouponUsed { discount_granted: Some(g), .. }] if *g == money(500))
    );
}
