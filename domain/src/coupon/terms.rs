//! What a policy is: its discount terms and its spec (title, window, total), each checked
//! once when built.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::values::{checked_time, Money, Quantity, Text};
use crate::DomainError;

/// How long an issued coupon stays usable after its policy's issuance window closes.
pub const COUPON_VALIDITY_AFTER_END_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DiscountType {
    /// `discountValue` percent off (1–100), at most `maximumDiscountAmount` when set.
    Percentage,
    /// `discountValue` off the order.
    FixedAmount,
}

/// What a coupon takes off an order. Built only through [`DiscountTerms::new`], so a
/// percentage is always 1–100 and the value always positive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscountTerms {
    pub(super) discount_type: DiscountType,
    pub(super) discount_value: i64,
    pub(super) minimum_order_amount: Money,
    /// Caps a percentage discount; zero means no cap.
    pub(super) maximum_discount_amount: Money,
}

/// A campaign: what it gives, how many, and when it may be issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySpec {
    pub(super) title: Text,
    pub(super) description: Text,
    pub(super) total_quantity: Quantity,
    pub(super) start_time: DateTime<Utc>,
    pub(super) end_time: DateTime<Utc>,
    pub(super) terms: DiscountTerms,
    /// The most discount all uses together may grant (uses not cancelled); none when absent.
    #[serde(default)]
    pub(super) discount_budget: Option<Money>,
    /// Coupons one user may be issued (each used once); 1 unless set.
    #[serde(default = "one")]
    pub(super) coupons_per_user: Quantity,
}

fn one() -> Quantity {
    Quantity::ONE
}

impl DiscountTerms {
    pub fn new(
        discount_type: DiscountType,
        discount_value: i64,
        minimum_order_amount: Money,
        maximum_discount_amount: Money,
    ) -> Result<Self, DomainError> {
        if discount_value <= 0 {
            return Err(DomainError::invalid(
                "discountValue",
                "must be greater than 0",
            ));
        }
        if discount_type == DiscountType::Percentage && discount_value > 100 {
            return Err(DomainError::unacceptable(
                "discountValue",
                "a percentage must be between 1 and 100",
            ));
        }
        Ok(Self::recorded(
            discount_type,
            discount_value,
            minimum_order_amount,
            maximum_discount_amount,
        ))
    }

    /// Terms as a recorded event states them: not checked again.
    pub fn recorded(
        discount_type: DiscountType,
        discount_value: i64,
        minimum_order_amount: Money,
        maximum_discount_amount: Money,
    ) -> Self {
        Self {
            discount_type,
            discount_value,
            minimum_order_amount,
            maximum_discount_amount,
        }
    }

    pub fn discount_type(&self) -> DiscountType {
        self.discount_type
    }
    pub fn discount_value(&self) -> i64 {
        self.discount_value
    }
    pub fn minimum_order_amount(&self) -> Money {
        self.minimum_order_amount
    }
    pub fn maximum_discount_amount(&self) -> Money {
        self.maximum_discount_amount
    }

    /// The discount for an order of `order_amount`, ignoring the minimum order amount:
    /// the fixed value, or the percentage rounded down and capped; never above the order.
    pub fn discount_for(&self, order_amount: Money) -> Money {
        let amount = order_amount.get();
        let raw = match self.discount_type {
            DiscountType::FixedAmount => self.discount_value,
            DiscountType::Percentage => {
                // i128: amount × 100 cannot overflow, and the result is ≤ amount.
                let pct = i128::from(amount) * i128::from(self.discount_value) / 100;
                let pct = i64::try_from(pct).unwrap_or(amount);
                let cap = self.maximum_discount_amount.get();
                if cap > 0 {
                    pct.min(cap)
                } else {
                    pct
                }
            }
        };
        Money::parse(raw.min(amount), "discount").unwrap_or(Money::ZERO)
    }
}

impl PolicySpec {
    pub fn new(
        title: Text,
        description: Text,
        total_quantity: Quantity,
        start_time: DateTime<Utc>,
        end_time: DateTime<Utc>,
        terms: DiscountTerms,
    ) -> Result<Self, DomainError> {
        let start_time = checked_time(start_time, "startTime")?;
        let end_time = checked_time(end_time, "endTime")?;
        if start_time >= end_time {
            return Err(DomainError::unacceptable(
                "endTime",
                "must be after startTime",
            ));
        }
        Ok(Self::recorded(
            title,
            description,
            total_quantity,
            start_time,
            end_time,
            terms,
        ))
    }

    /// A campaign as a recorded event states it: not checked again (the rules of the day it
    /// was created decided), so a stricter rule never makes the log unreadable.
    pub fn recorded(
        title: Text,
        description: Text,
        total_quantity: Quantity,
        start_time: DateTime<Utc>,
        end_time: DateTime<Utc>,
        terms: DiscountTerms,
    ) -> Self {
        Self {
            title,
            description,
            total_quantity,
            start_time,
            end_time,
            terms,
            discount_budget: None,
            coupons_per_user: Quantity::ONE,
        }
    }

    /// The campaign's limits beyond its total: a money budget for the discounts its uses
    /// grant, and how many coupons one user may be issued (1 when `None`).
    pub fn with_limits(
        mut self,
        discount_budget: Option<Money>,
        coupons_per_user: Option<Quantity>,
    ) -> Self {
        self.discount_budget = discount_budget;
        self.coupons_per_user = coupons_per_user.unwrap_or(Quantity::ONE);
        self
    }

    pub fn discount_budget(&self) -> Option<Money> {
        self.discount_budget
    }
    pub fn coupons_per_user(&self) -> Quantity {
        self.coupons_per_user
    }

    pub fn title(&self) -> &Text {
        &self.title
    }
    pub fn description(&self) -> &Text {
        &self.description
    }
    pub fn total_quantity(&self) -> Quantity {
        self.total_quantity
    }
    pub fn start_time(&self) -> DateTime<Utc> {
        self.start_time
    }
    pub fn end_time(&self) -> DateTime<Utc> {
        self.end_time
    }
    pub fn terms(&self) -> &DiscountTerms {
        &self.terms
    }

    /// When coupons issued under this policy stop being usable.
    pub fn coupon_expiry(&self) -> DateTime<Utc> {
        // The end is before 9999-01-01 (checked_time), so this cannot overflow; saturate anyway.
        self.end_time
            .checked_add_signed(Duration::days(COUPON_VALIDITY_AFTER_END_DAYS))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// Whether a use granting `discount` fits `budget` (none: always), given `granted` so far by
/// the uses not cancelled: `use` decides with it, the query API's quote answers with it.
pub fn check_budget(
    budget: Option<Money>,
    granted: Money,
    discount: Money,
) -> Result<(), DomainError> {
    match budget {
        Some(budget)
            if i128::from(granted.get()) + i128::from(discount.get())
                > i128::from(budget.get()) =>
        {
            Err(DomainError::BudgetExhausted)
        }
        _ => Ok(()),
    }
}
