//! The contract test: every event variant the domain writes has a schema, every schema has a
#![allow(clippy::unwrap_used)] // fixtures and samples panic on bad test data, by design
//! variant, and a sample of every variant (with optional fields both present and absent)
//! validates against its schema. Broken samples must be rejected, so the check can fail.

use std::collections::BTreeSet;

use chrono::{Duration, TimeZone, Utc};
use domain::coupon::{CouponEvent, CouponHoldEnded, DiscountTerms, DiscountType, PolicySpec};
use domain::points::{NextExpiry, PointEvent, TransactionKind};
use domain::product::{ProductEvent, ProductSpec};
use domain::time_sale::{HoldEnded, TimeSaleEvent, TimeSaleSpec};
use domain::values::{Money, Points, Quantity, Text, UserId};
use domain::wire::{upcast, WireCodec, WireEvent, EVENT_TYPES, UPCASTERS};
use schemas::{ContractValidator, SCHEMAS};
use serde_json::{json, Value};
use uuid::Uuid;

/// One sample of every event variant, built through the domain's own constructors.
fn samples() -> Vec<WireEvent> {
    let t = Utc.with_ymd_and_hms(2026, 11, 24, 9, 30, 0).unwrap();
    let user = UserId::parse(42, "userId").unwrap();
    let money = |v| Money::parse(v, "m").unwrap();
    let text = |s| Text::parse(s, "t").unwrap();
    let qty = |v| Quantity::parse(v, "q").unwrap();
    let pts = Points::parse(150, "amount").unwrap();
    let id = Uuid::new_v4;
    let terms = DiscountTerms::new(DiscountType::Percentage, 10, money(1_000), money(500)).unwrap();
    let spec = PolicySpec::new(
        text("Winter"),
        Text::parse_optional("", "description").unwrap(),
        qty(500),
        t,
        t + Duration::days(7),
        terms,
    )
    .unwrap();
    let sale = |limit| {
        TimeSaleSpec::new(
            id(),
            money(10_000),
            money(7_000),
            qty(100),
            t,
            t + Duration::hours(2),
            limit,
        )
        .unwrap()
    };
    let mut out: Vec<WireEvent> = vec![];
    out.extend(
        [
            CouponEvent::PolicyCreated { spec: spec.clone() },
            CouponEvent::PolicyCreated {
                spec: spec.with_limits(Some(money(50_000)), Some(qty(3))),
            },
            CouponEvent::CouponIssued {
                coupon_id: id(),
                user_id: user,
                expires_at: t,
                issued_count: 1,
                at: t,
            },
            CouponEvent::CouponUsed {
                coupon_id: id(),
                user_id: user,
                order_id: text("ORD-1"),
                order_amount: money(3_000),
                discount: money(300),
                used_count: 1,
                discount_granted: Some(money(300)),
                at: t,
            },
            CouponEvent::CouponUsed {
                coupon_id: id(),
                user_id: user,
                order_id: text("ORD-1"),
                order_amount: money(3_000),
                discount: money(300),
                used_count: 1,
                discount_granted: None,
                at: t,
            },
            CouponEvent::CouponUseCanceled {
                coupon_id: id(),
                user_id: user,
                order_id: text("ORD-1"),
                used_count: 0,
                discount_granted: Some(money(0)),
                at: t,
            },
            CouponEvent::CouponUseCanceled {
                coupon_id: id(),
                user_id: user,
                order_id: text("ORD-1"),
                used_count: 0,
                discount_granted: None,
                at: t,
            },
            CouponEvent::CouponReserved {
                coupon_id: id(),
                user_id: user,
                order_id: text("ORD-2"),
                order_amount: money(3_000),
                discount: money(300),
                until: t + Duration::minutes(2),
                discount_granted: money(300),
                at: t,
            },
            CouponEvent::CouponReservationReleased(CouponHoldEnded {
                coupon_id: id(),
                user_id: user,
                order_id: text("ORD-2"),
                discount_granted: money(0),
                at: t,
            }),
            CouponEvent::CouponReservationExpired(CouponHoldEnded {
                coupon_id: id(),
                user_id: user,
                order_id: text("ORD-2"),
                discount_granted: money(0),
                at: t,
            }),
            CouponEvent::CouponRevoked {
                coupon_id: id(),
                user_id: user,
                at: t,
            },
        ]
        .iter()
        .map(WireCodec::to_wire),
    );
    out.extend(
        [
            PointEvent::Earned {
                user_id: user,
                transaction_id: id(),
                amount: pts,
                description: text("signup"),
                expires_at: None,
                balance_after: 150,
                next_expiry: None,
                at: t,
            },
            PointEvent::Earned {
                user_id: user,
                transaction_id: id(),
                amount: pts,
                description: text("promo"),
                expires_at: Some(t + Duration::days(30)),
                balance_after: 150,
                next_expiry: Some(NextExpiry {
                    amount: 150,
                    expires_at: t + Duration::days(30),
                }),
                at: t,
            },
            PointEvent::Expired {
                user_id: user,
                transaction_id: id(),
                lot_id: id(),
                amount: pts,
                balance_after: 0,
                next_expiry: None,
                at: t,
            },
            PointEvent::Expired {
                user_id: user,
                transaction_id: id(),
                lot_id: id(),
                amount: pts,
                balance_after: 10,
                next_expiry: Some(NextExpiry {
                    amount: 10,
                    expires_at: t + Duration::days(3),
                }),
                at: t,
            },
            PointEvent::Spent {
                user_id: user,
                transaction_id: id(),
                amount: pts,
                description: text("checkout"),
                order_id: None,
                balance_after: 0,
                next_expiry: None,
                at: t,
            },
            PointEvent::Spent {
                user_id: user,
                transaction_id: id(),
                amount: pts,
                description: text("checkout"),
                order_id: Some(text("ORD-9")),
                balance_after: 0,
                next_expiry: None,
                at: t,
            },
            PointEvent::Canceled {
                user_id: user,
                transaction_id: id(),
                canceled_transaction_id: id(),
                canceled_kind: TransactionKind::Use,
                amount: pts,
                balance_after: 150,
                next_expiry: None,
                at: t,
            },
        ]
        .iter()
        .map(WireCodec::to_wire),
    );
    out.push(
        ProductEvent::ProductCreated {
            spec: ProductSpec::new(text("Headphones"), money(10_000), text("ANC")).unwrap(),
            at: t,
        }
        .to_wire(),
    );
    out.extend(
        [
            TimeSaleEvent::TimeSaleCreated {
                spec: sale(None),
                at: t,
            },
            TimeSaleEvent::TimeSaleCreated {
                spec: sale(Some(qty(2))),
                at: t,
            },
            TimeSaleEvent::OrderPlaced {
                order_id: id(),
                user_id: user,
                quantity: qty(2),
                unit_price: money(7_000),
                total_price: money(14_000),
                remaining_after: 98,
                at: t,
            },
            TimeSaleEvent::OrderCanceled {
                order_id: id(),
                user_id: user,
                quantity: qty(2),
                remaining_after: 100,
                at: t,
            },
            TimeSaleEvent::Reserved {
                reservation_id: id(),
                order_ref: Text::parse_reference("checkout-7", "orderId").unwrap(),
                user_id: user,
                quantity: qty(2),
                unit_price: money(7_000),
                expires_at: t + Duration::minutes(2),
                remaining_after: 98,
                reserved_after: 2,
                at: t,
            },
            TimeSaleEvent::ReservationConfirmed {
                reservation_id: id(),
                order_id: id(),
                user_id: user,
                quantity: qty(2),
                unit_price: money(7_000),
                total_price: money(14_000),
                remaining_after: 98,
                reserved_after: 0,
                at: t,
            },
            TimeSaleEvent::ReservationReleased(HoldEnded {
                reservation_id: id(),
                user_id: user,
                quantity: qty(2),
                remaining_after: 100,
                reserved_after: 0,
                at: t,
            }),
            TimeSaleEvent::ReservationExpired(HoldEnded {
                reservation_id: id(),
                user_id: user,
                quantity: qty(2),
                remaining_after: 100,
                reserved_after: 0,
                at: t,
            }),
        ]
        .iter()
        .map(WireCodec::to_wire),
    );
    out
}

fn as_json(event: &WireEvent) -> Value {
    serde_json::to_value(event).unwrap()
}

#[test]
fn every_event_type_has_a_schema_and_every_schema_an_event_type() {
    // Written today, or still read (and upcast) from older logs.
    let written: BTreeSet<(&str, u16)> = EVENT_TYPES
        .iter()
        .map(|t| (t.name, t.version))
        .chain(UPCASTERS.iter().map(|u| (u.event_type, u.from)))
        .collect();
    let described: BTreeSet<(&str, u16)> =
        SCHEMAS.iter().map(|s| (s.event_type, s.version)).collect();
    assert_eq!(
        written, described,
        "event types without schema, or schemas without event type"
    );
}

#[test]
fn the_samples_cover_every_event_type() {
    let sampled: BTreeSet<(String, u16)> = samples()
        .iter()
        .map(|e| (e.event_type.clone(), e.version))
        .collect();
    let written: BTreeSet<(String, u16)> = EVENT_TYPES
        .iter()
        .map(|t| (t.name.to_owned(), t.version))
        .collect();
    assert_eq!(sampled, written);
}

#[test]
fn every_sample_matches_its_schema() {
    let validator = ContractValidator::new().unwrap();
    for sample in samples() {
        let json = as_json(&sample);
        if let Err(e) = validator.validate(&json) {
            panic!("{e}\n{json:#}");
        }
    }
}

#[test]
fn every_schema_declares_draft_2020_12_and_names_its_own_type() {
    for schema in SCHEMAS {
        let value: Value = serde_json::from_str(schema.json).unwrap();
        assert_eq!(
            value["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(value["properties"]["type"]["const"], schema.event_type);
        assert_eq!(value["properties"]["version"]["const"], schema.version);
    }
}

fn first_of(event_type: &str) -> Value {
    as_json(
        &samples()
            .into_iter()
            .find(|e| e.event_type == event_type)
            .unwrap(),
    )
}

#[test]
fn a_sample_missing_a_required_field_is_rejected() {
    let validator = ContractValidator::new().unwrap();
    let mut event = first_of("coupon.issued");
    event["data"].as_object_mut().unwrap().remove("userId");
    assert!(validator.validate(&event).is_err());
}

#[test]
fn a_sample_with_an_unknown_field_is_rejected() {
    let validator = ContractValidator::new().unwrap();
    let mut event = first_of("order.created");
    event["data"]["surprise"] = json!(1);
    assert!(validator.validate(&event).is_err());
}

#[test]
fn a_sample_with_a_badly_formatted_value_is_rejected() {
    let validator = ContractValidator::new().unwrap();
    let mut bad_uuid = first_of("point.earned");
    bad_uuid["data"]["transactionId"] = json!("not-a-uuid");
    assert!(validator.validate(&bad_uuid).is_err());
    let mut bad_time = first_of("point.earned");
    bad_time["data"]["occurredAt"] = json!("yesterday");
    assert!(validator.validate(&bad_time).is_err());
    let mut negative = first_of("point.earned");
    negative["data"]["balanceAfter"] = json!(-1);
    assert!(validator.validate(&negative).is_err());
}

#[test]
fn an_event_of_an_unknown_type_or_version_has_no_schema() {
    let validator = ContractValidator::new().unwrap();
    let mut event = first_of("product.created");
    event["version"] = json!(99);
    assert!(validator.validate(&event).is_err());
    event["type"] = json!("product.vanished");
    event["version"] = json!(1);
    assert!(validator.validate(&event).is_err());
}

/// A coupon.issued v1, as logs written before v2 hold it.
fn coupon_issued_v1() -> Value {
    json!({
        "type": "coupon.issued",
        "version": 1,
        "data": {
            "couponId": "0b7c6f1e-6a0e-4f4e-9d55-2f0c1b1f5a10",
            "userId": 42,
            "expiresAt": "2026-12-31T00:00:00Z",
            "issuedCount": 7,
            "issuedAt": "2026-11-24T09:30:00Z"
        }
    })
}

#[test]
fn a_v1_coupon_issued_matches_the_v1_schema_and_upcasts_to_a_valid_v2() {
    let validator = ContractValidator::new().unwrap();
    let v1 = coupon_issued_v1();
    validator.validate(&v1).unwrap();
    let wire: WireEvent = serde_json::from_value(v1).unwrap();
    let upcast = upcast(&wire).unwrap().into_owned();
    assert_eq!(upcast.version, 2);
    validator.validate(&as_json(&upcast)).unwrap();
    assert_eq!(upcast.data["occurredAt"], "2026-11-24T09:30:00Z");
    // Decoding the v1 gives the same event as decoding its upcast, and re-encoding writes v2.
    let event = CouponEvent::from_wire(&wire).unwrap();
    assert_eq!(event, CouponEvent::from_wire(&upcast).unwrap());
    assert_eq!(event.to_wire(), upcast);
    // A v1 is not a valid v2: the schemas tell the versions apart.
    let mut mislabelled = coupon_issued_v1();
    mislabelled["version"] = json!(2);
    assert!(validator.validate(&mislabelled).is_err());
}

#[test]
fn versions_newer_than_current_or_without_an_upcaster_are_refused() {
    let mut wire: WireEvent = serde_json::from_value(coupon_issued_v1()).unwrap();
    wire.version = 3;
    assert!(CouponEvent::from_wire(&wire).is_err());
    let mut earned = PointEvent::Earned {
        user_id: UserId::parse(1, "u").unwrap(),
        transaction_id: Uuid::new_v4(),
        amount: Points::parse(1, "a").unwrap(),
        description: Text::parse("x", "d").unwrap(),
        expires_at: None,
        balance_after: 1,
        next_expiry: None,
        at: Utc::now(),
    }
    .to_wire();
    earned.version = 0;
    assert!(PointEvent::from_wire(&earned).is_err());
}

#[test]
fn the_events_a_deadline_follower_reads_are_exactly_those_that_open_or_end_a_deadline() {
    use domain::deadline::DEADLINE_EVENT_TYPES;
    use domain::time_sale::TimeSaleEvent;
    for wire in samples() {
        let effect = match wire.event_type.as_str() {
            t if t.starts_with("point.") => PointEvent::from_wire(&wire).unwrap().deadline(),
            t if t.starts_with("coupon.") => CouponEvent::from_wire(&wire).unwrap().deadline(),
            t if t.starts_with("timesale.") || t.starts_with("order.") => {
                TimeSaleEvent::from_wire(&wire).unwrap().deadline()
            }
            _ => None,
        };
        if effect.is_some() {
            assert!(
                DEADLINE_EVENT_TYPES.contains(&wire.event_type.as_str()),
                "{} opens or ends a deadline but the follower does not read it",
                wire.event_type
            );
        }
    }
    // And each type it reads does so for some sample.
    for t in DEADLINE_EVENT_TYPES {
        assert!(
            samples().iter().any(|w| w.event_type == *t),
            "no sample of {t}"
        );
    }
}
