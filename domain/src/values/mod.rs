//! Value types that parse once, so an invalid user id, amount or quantity cannot be built.

use std::fmt;

use chrono::{DateTime, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::DomainError;

mod text;
pub use text::Text;

/// The earliest time a campaign or a sale may name: 1970-01-01T00:00:00Z.
pub fn earliest_time() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH
}

/// The first time a campaign or a sale may *not* name: 9999-01-01T00:00:00Z. Every later time
/// the system derives (a coupon's expiry, 30 days after its campaign) keeps a four-digit year,
/// as RFC 3339 — and so the event schemas and every consumer — requires; PostgreSQL's own
/// range is far wider.
pub fn end_of_times() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A time from a command, checked to lie in [`earliest_time`]..[`end_of_times`], and not a
/// leap second (`…:60`): chrono reads one, but RFC 3339 — and so the schemas — allows it only
/// at 23:59 UTC on the days the IERS names, which nothing here knows.
pub fn checked_time(
    value: DateTime<Utc>,
    field: &'static str,
) -> Result<DateTime<Utc>, DomainError> {
    if value.nanosecond() >= 1_000_000_000 {
        return Err(DomainError::unacceptable(
            field,
            "must not be a leap second",
        ));
    }
    if (earliest_time()..end_of_times()).contains(&value) {
        Ok(value)
    } else {
        Err(DomainError::unacceptable(
            field,
            "must be between 1970-01-01T00:00:00Z and 9999-01-01T00:00:00Z",
        ))
    }
}

/// A shop user: a positive 64-bit integer issued by the shop. Kept within `i64` so it fits a
/// PostgreSQL `bigint` without a sign trick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct UserId(i64);

impl UserId {
    /// Parses a user id; `field` names the input for the error.
    pub fn parse(value: i64, field: &'static str) -> Result<Self, DomainError> {
        if value > 0 {
            Ok(Self(value))
        } else {
            Err(DomainError::invalid(field, "must be a positive integer"))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for UserId {
    type Error = DomainError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::parse(value, "userId")
    }
}

impl From<UserId> for i64 {
    fn from(value: UserId) -> Self {
        value.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An amount of money in minor currency units; never negative.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    /// Parses a non-negative amount.
    pub fn parse(value: i64, field: &'static str) -> Result<Self, DomainError> {
        if value >= 0 {
            Ok(Self(value))
        } else {
            Err(DomainError::invalid(field, "must not be negative"))
        }
    }

    /// Parses a strictly positive amount.
    pub fn parse_positive(value: i64, field: &'static str) -> Result<Self, DomainError> {
        if value > 0 {
            Ok(Self(value))
        } else {
            Err(DomainError::invalid(field, "must be greater than 0"))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// A tally of recorded amounts (a budget's granted sum): never below zero.
    pub fn tally(value: i64) -> Self {
        Self(value.max(0))
    }

    /// `self × quantity`, or `None` on overflow.
    pub fn checked_mul(self, quantity: Quantity) -> Option<Money> {
        self.0.checked_mul(i64::from(quantity.get())).map(Money)
    }
}

impl TryFrom<i64> for Money {
    type Error = DomainError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::parse(value, "amount")
    }
}

impl From<Money> for i64 {
    fn from(value: Money) -> Self {
        value.0
    }
}

/// A number of units (stock, an order's quantity, a coupon policy's total); at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Quantity(u32);

impl Quantity {
    pub const ONE: Quantity = Quantity(1);

    /// Parses a quantity of at least one unit.
    pub fn parse(value: i64, field: &'static str) -> Result<Self, DomainError> {
        match u32::try_from(value) {
            Ok(v) if v >= 1 => Ok(Self(v)),
            _ => Err(DomainError::invalid(
                field,
                "must be an integer from 1 to 4294967295",
            )),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Quantity {
    type Error = DomainError;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Self::parse(i64::from(value), "quantity")
    }
}

impl From<Quantity> for u32 {
    fn from(value: Quantity) -> Self {
        value.0
    }
}

/// A number of loyalty points moved by one transaction; strictly positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Points(i64);

impl Points {
    pub fn parse(value: i64, field: &'static str) -> Result<Self, DomainError> {
        if value > 0 {
            Ok(Self(value))
        } else {
            Err(DomainError::invalid(field, "must be greater than 0"))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for Points {
    type Error = DomainError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::parse(value, "amount")
    }
}

impl From<Points> for i64 {
    fn from(value: Points) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_id_must_be_positive() {
        assert!(UserId::parse(0, "userId").is_err());
        assert!(UserId::parse(-5, "userId").is_err());
        assert_eq!(UserId::parse(7, "userId").map(UserId::get), Ok(7));
    }

    #[test]
    fn money_is_never_negative_and_positive_money_is_never_zero() {
        assert!(Money::parse(-1, "price").is_err());
        assert!(Money::parse(0, "price").is_ok());
        assert!(Money::parse_positive(0, "price").is_err());
    }

    #[test]
    fn a_quantity_is_at_least_one_and_fits_u32() {
        assert!(Quantity::parse(0, "quantity").is_err());
        assert!(Quantity::parse(i64::from(u32::MAX) + 1, "quantity").is_err());
        assert_eq!(Quantity::parse(3, "quantity").map(Quantity::get), Ok(3));
    }

    #[test]
    fn times_stay_within_four_digit_years() {
        use chrono::Duration;
        assert!(checked_time(earliest_time(), "startTime").is_ok());
        assert!(checked_time(earliest_time() - Duration::seconds(1), "startTime").is_err());
        assert!(checked_time(end_of_times() - Duration::seconds(1), "endTime").is_ok());
        assert!(checked_time(end_of_times(), "endTime").is_err());
        let far = DateTime::parse_from_rfc3339("+262142-12-31T23:59:59Z");
        assert!(far.is_err() || checked_time(far.unwrap().into(), "endTime").is_err());
    }

    #[test]
    fn a_leap_second_is_refused() {
        for leap in ["2016-12-31T23:59:60Z", "2026-06-01T12:00:60Z"] {
            let time: DateTime<Utc> = DateTime::parse_from_rfc3339(leap).unwrap().into();
            assert!(checked_time(time, "startTime").is_err(), "{leap}");
        }
        let ordinary: DateTime<Utc> = DateTime::parse_from_rfc3339("2016-12-31T23:59:59.999Z")
            .unwrap()
            .into();
        assert!(checked_time(ordinary, "startTime").is_ok());
    }

    #[test]
    fn deserializing_an_invalid_value_fails() {
        assert!(serde_json::from_str::<UserId>("0").is_err());
        assert!(serde_json::from_str::<Quantity>("0").is_err());
        assert!(serde_json::from_str::<Money>("-3").is_err());
    }
}
