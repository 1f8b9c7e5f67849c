//! Value types that parse once, so an invalid user id, amount or quantity cannot be built.

use std::fmt;

use chrono::{DateTime, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::DomainError;

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
        return Err(DomainError::invalid(field, "must not be a leap second"));
    }
    if (earliest_time()..end_of_times()).contains(&value) {
        Ok(value)
    } else {
        Err(DomainError::invalid(
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

/// Non-empty, trimmed text of bounded length (titles, names, descriptions), without control
/// characters (tab and line breaks aside): PostgreSQL cannot store a NUL, and the others have
/// no business in a promotion's text. Checked where a command is built ([`Text::parse`]);
/// text read back from a recorded event or a snapshot is taken as it was stored, so a rule
/// made stricter later never makes the log unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct Text(String);

impl Text {
    /// Longest text accepted, in characters.
    pub const MAX_CHARS: usize = 1000;

    /// Parses text that must not be blank: at least one character that is neither white space
    /// nor U+FEFF (which Rust's `trim` keeps but the schemas' ECMA-262 `\S` counts as space).
    pub fn parse(value: &str, field: &'static str) -> Result<Self, DomainError> {
        let trimmed = value.trim();
        if trimmed
            .chars()
            .all(|c| c.is_whitespace() || c == '\u{feff}')
        {
            return Err(DomainError::invalid(field, "must not be blank"));
        }
        Self::parse_optional(trimmed, field)
    }

    /// Longest reference to something of the shop's (an order id), in characters.
    pub const MAX_REFERENCE_CHARS: usize = 128;

    /// Parses text that may be empty (descriptions).
    pub fn parse_optional(value: &str, field: &'static str) -> Result<Self, DomainError> {
        let trimmed = value.trim();
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(DomainError::invalid(
                field,
                "must be at most 1000 characters",
            ));
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(DomainError::invalid(
                field,
                "must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// Parses a reference the shop made (an order id): not blank, at most
    /// [`Text::MAX_REFERENCE_CHARS`] characters, and no control characters at all.
    pub fn parse_reference(value: &str, field: &'static str) -> Result<Self, DomainError> {
        let text = Self::parse(value, field)?;
        if text.0.chars().count() > Self::MAX_REFERENCE_CHARS {
            return Err(DomainError::invalid(
                field,
                "must be at most 128 characters",
            ));
        }
        if text.0.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                field,
                "must not contain control characters",
            ));
        }
        Ok(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Text as it was recorded (an event, a snapshot): not checked again.
impl From<String> for Text {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<Text> for String {
    fn from(value: Text) -> Self {
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
    fn text_is_trimmed_and_blank_text_is_refused_where_required() {
        assert!(Text::parse("   ", "title").is_err());
        assert_eq!(
            Text::parse("  Spring sale ", "title").map(|t| t.0),
            Ok("Spring sale".into())
        );
        assert!(Text::parse_optional("", "description").is_ok());
        assert!(Text::parse(&"x".repeat(1001), "title").is_err());
        // U+FEFF survives `trim` but is white space to the schemas' ECMA-262 `\S`.
        assert!(Text::parse("\u{feff}", "title").is_err());
        assert!(Text::parse(" \u{feff}\u{3000}", "title").is_err());
        assert!(Text::parse("\u{feff}Sale", "title").is_ok());
    }

    #[test]
    fn recorded_text_is_read_back_as_it_was_stored() {
        let stored: Text = serde_json::from_str(r#""a\u0007b""#).unwrap();
        assert_eq!(
            stored.as_str(),
            "a\u{7}b",
            "a stricter rule never fails a recorded event"
        );
    }

    #[test]
    fn text_refuses_control_characters_but_keeps_line_breaks_in_descriptions() {
        assert!(Text::parse("a\u{0}b", "description").is_err());
        assert!(Text::parse("a\u{1b}[31mb", "title").is_err());
        assert!(Text::parse_optional("line one\nline two\tend", "description").is_ok());
        assert!(Text::parse_reference("O-1\n", "orderId").is_ok(), "trimmed");
        assert!(Text::parse_reference("O-1\nO-2", "orderId").is_err());
        assert!(Text::parse_reference(&"o".repeat(129), "orderId").is_err());
        assert!(Text::parse_reference(&"o".repeat(128), "orderId").is_ok());
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
