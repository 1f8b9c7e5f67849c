//! Fixtures shared by the domain test suites: fixed times, ids and valid specs.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::coupon::{DiscountTerms, DiscountType, PolicySpec};
use domain::product::ProductSpec;
use domain::time_sale::TimeSaleSpec;
use domain::values::{Money, Quantity, Text, UserId};
use uuid::Uuid;

/// Start of every window used in tests.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
}

pub fn at(hours: i64) -> DateTime<Utc> {
    t0() + Duration::hours(hours)
}

pub fn user(id: i64) -> UserId {
    UserId::parse(id, "userId").unwrap()
}

pub fn money(v: i64) -> Money {
    Money::parse(v, "amount").unwrap()
}

pub fn qty(v: i64) -> Quantity {
    Quantity::parse(v, "quantity").unwrap()
}

pub fn text(s: &str) -> Text {
    Text::parse(s, "text").unwrap()
}

pub fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// A policy of `total` coupons, issuable from t0 to t0 + 24h.
pub fn policy(total: i64, terms: DiscountTerms) -> PolicySpec {
    PolicySpec::new(
        text("Winter sale"),
        text("10% off"),
        qty(total),
        t0(),
        at(24),
        terms,
    )
    .unwrap()
}

pub fn percent(value: i64, minimum: i64, cap: i64) -> DiscountTerms {
    DiscountTerms::new(DiscountType::Percentage, value, money(minimum), money(cap)).unwrap()
}

pub fn fixed(value: i64, minimum: i64) -> DiscountTerms {
    DiscountTerms::new(DiscountType::FixedAmount, value, money(minimum), money(0)).unwrap()
}

pub fn product() -> ProductSpec {
    ProductSpec::new(text("Headphones"), money(10_000), text("Noise cancelling")).unwrap()
}

/// A sale of `stock` units at 7,000 (product price 10,000) from t0 to t0 + 2h.
pub fn sale(stock: i64, per_user_limit: Option<i64>) -> TimeSaleSpec {
    TimeSaleSpec::new(
        id(900),
        money(10_000),
        money(7_000),
        qty(stock),
        t0(),
        at(2),
        per_user_limit.map(qty),
    )
    .unwrap()
}
