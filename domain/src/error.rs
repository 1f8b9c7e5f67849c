//! The one error type of the domain: a command was refused, and why.

use serde::Serialize;
use thiserror::Error;

/// How an API should classify a refusal. The domain does not know HTTP; it only keeps the
/// kinds apart so that one place in each API maps them (400 / 404 / 409 / 422).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RefusalKind {
    /// The input itself is malformed (a field out of the range its schema states).
    InvalidInput,
    /// The aggregate or the entity inside it does not exist.
    NotFound,
    /// The thing to create exists already (same id).
    AlreadyExists,
    /// A business rule said no.
    RuleViolated,
    /// The coupon or order is another user's.
    NotOwner,
}

/// Every reason a command can be refused. `code()` is the stable, machine-readable name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    #[error("{field}: {message}")]
    InvalidInput {
        field: &'static str,
        message: &'static str,
    },
    /// A well-formed value a rule refuses, which no schema of one field can say: a window that
    /// ends before it starts, a percentage over 100, a sale price not below the product's, a
    /// time outside the years this system keeps.
    #[error("{field}: {message}")]
    Unacceptable {
        field: &'static str,
        message: &'static str,
    },

    #[error("coupon policy not found")]
    PolicyNotFound,
    #[error("coupon policy already exists")]
    PolicyAlreadyExists,
    #[error("the issuance window has not opened yet")]
    IssuanceNotStarted,
    #[error("the issuance window has closed")]
    IssuanceEnded,
    #[error("all coupons of this policy have been issued")]
    CouponsExhausted,
    #[error("this user already holds a coupon of this policy")]
    CouponAlreadyIssued,
    #[error("a coupon with this id exists already")]
    CouponIdTaken,
    #[error("coupon not found")]
    CouponNotFound,
    #[error("the coupon belongs to another user")]
    NotCouponOwner,
    #[error("the coupon has expired")]
    CouponExpired,
    #[error("the coupon has already been used")]
    CouponAlreadyUsed,
    #[error("the coupon has been revoked")]
    CouponRevoked,
    #[error("the coupon has not been used")]
    CouponNotUsed,
    #[error("the order amount is below the coupon's minimum order amount")]
    BelowMinimumOrder,
    #[error("this use would pass the campaign's discount budget")]
    BudgetExhausted,
    #[error("the coupon is held for a checkout")]
    CouponReserved,

    #[error("insufficient point balance")]
    InsufficientBalance,
    #[error("point transaction not found")]
    TransactionNotFound,
    #[error("a point transaction with this id exists already")]
    TransactionIdTaken,
    #[error("the point transaction has already been cancelled")]
    TransactionAlreadyCanceled,
    #[error("a cancellation cannot itself be cancelled")]
    TransactionNotCancelable,
    #[error("the earned points have already been spent or have expired")]
    PointsAlreadySpent,
    #[error("the point balance would overflow")]
    BalanceOverflow,
    #[error("the point lot holds nothing to expire")]
    LotClosed,
    #[error("the point lot has not reached its expiry")]
    LotNotDue,

    #[error("product not found")]
    ProductNotFound,
    #[error("product already exists")]
    ProductAlreadyExists,

    #[error("time sale not found")]
    TimeSaleNotFound,
    #[error("time sale already exists")]
    TimeSaleAlreadyExists,
    #[error("the time sale has not started yet")]
    TimeSaleNotStarted,
    #[error("the time sale has ended")]
    TimeSaleEnded,
    #[error("the time sale is sold out")]
    SoldOut,
    #[error("not enough stock left for this quantity")]
    InsufficientStock,
    #[error("the per-user purchase limit would be exceeded")]
    PerUserLimitExceeded,
    #[error("an order with this id exists already")]
    OrderIdTaken,
    #[error("order not found")]
    OrderNotFound,
    #[error("the order belongs to another user")]
    NotOrderOwner,
    #[error("the order has already been cancelled")]
    OrderAlreadyCanceled,

    #[error("this order already holds a reservation")]
    ReservationExists,
    #[error("reservation not found")]
    ReservationNotFound,
    #[error("the reservation belongs to another user")]
    NotReservationOwner,
    #[error("the reservation has expired")]
    ReservationExpired,
    #[error("the reservation has already been confirmed or released")]
    ReservationClosed,
    #[error("the reservation has not reached its expiry")]
    ReservationNotDue,
}

impl DomainError {
    pub fn invalid(field: &'static str, message: &'static str) -> Self {
        Self::InvalidInput { field, message }
    }

    pub fn unacceptable(field: &'static str, message: &'static str) -> Self {
        Self::Unacceptable { field, message }
    }

    /// The stable machine-readable code, e.g. `SOLD_OUT`.
    pub fn code(&self) -> &'static str {
        use DomainError::*;
        match self {
            InvalidInput { .. } => "INVALID_INPUT",
            Unacceptable { .. } => "UNACCEPTABLE_VALUE",
            PolicyNotFound => "POLICY_NOT_FOUND",
            PolicyAlreadyExists => "POLICY_ALREADY_EXISTS",
            IssuanceNotStarted => "ISSUANCE_NOT_STARTED",
            IssuanceEnded => "ISSUANCE_ENDED",
            CouponsExhausted => "COUPONS_EXHAUSTED",
            CouponAlreadyIssued => "COUPON_ALREADY_ISSUED",
            CouponIdTaken => "COUPON_ID_TAKEN",
            CouponNotFound => "NOT_FOUND",
            NotCouponOwner => "NOT_OWNER",
            CouponExpired => "EXPIRED",
            CouponAlreadyUsed => "ALREADY_USED",
            CouponRevoked => "REVOKED",
            CouponNotUsed => "NOT_USED",
            BelowMinimumOrder => "BELOW_MINIMUM_ORDER",
            BudgetExhausted => "BUDGET_EXHAUSTED",
            CouponReserved => "RESERVED",
            InsufficientBalance => "INSUFFICIENT_BALANCE",
            TransactionNotFound => "TRANSACTION_NOT_FOUND",
            TransactionIdTaken => "TRANSACTION_ID_TAKEN",
            TransactionAlreadyCanceled => "TRANSACTION_ALREADY_CANCELED",
            TransactionNotCancelable => "TRANSACTION_NOT_CANCELABLE",
            PointsAlreadySpent => "POINTS_ALREADY_SPENT",
            BalanceOverflow => "BALANCE_OVERFLOW",
            LotClosed => "LOT_CLOSED",
            LotNotDue => "LOT_NOT_DUE",
            ProductNotFound => "PRODUCT_NOT_FOUND",
            ProductAlreadyExists => "PRODUCT_ALREADY_EXISTS",
            TimeSaleNotFound => "TIME_SALE_NOT_FOUND",
            TimeSaleAlreadyExists => "TIME_SALE_ALREADY_EXISTS",
            TimeSaleNotStarted => "TIME_SALE_NOT_STARTED",
            TimeSaleEnded => "TIME_SALE_ENDED",
            SoldOut => "SOLD_OUT",
            InsufficientStock => "INSUFFICIENT_STOCK",
            PerUserLimitExceeded => "PER_USER_LIMIT_EXCEEDED",
            OrderIdTaken => "ORDER_ID_TAKEN",
            OrderNotFound => "ORDER_NOT_FOUND",
            NotOrderOwner => "NOT_OWNER",
            OrderAlreadyCanceled => "ORDER_ALREADY_CANCELED",
            ReservationExists => "RESERVATION_EXISTS",
            ReservationNotFound => "RESERVATION_NOT_FOUND",
            NotReservationOwner => "NOT_OWNER",
            ReservationExpired => "RESERVATION_EXPIRED",
            ReservationClosed => "RESERVATION_CLOSED",
            ReservationNotDue => "RESERVATION_NOT_DUE",
        }
    }

    /// How an API should classify this refusal.
    pub fn kind(&self) -> RefusalKind {
        use DomainError::*;
        match self {
            InvalidInput { .. } => RefusalKind::InvalidInput,
            PolicyNotFound | CouponNotFound | TransactionNotFound | ProductNotFound
            | TimeSaleNotFound | OrderNotFound | ReservationNotFound => RefusalKind::NotFound,
            PolicyAlreadyExists
            | CouponIdTaken
            | TransactionIdTaken
            | ProductAlreadyExists
            | TimeSaleAlreadyExists
            | OrderIdTaken
            | ReservationExists => RefusalKind::AlreadyExists,
            NotCouponOwner | NotOrderOwner | NotReservationOwner => RefusalKind::NotOwner,
            Unacceptable { .. } => RefusalKind::RuleViolated,
            _ => RefusalKind::RuleViolated,
        }
    }

    /// The input field the refusal is about, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            DomainError::InvalidInput { field, .. } | DomainError::Unacceptable { field, .. } => {
                Some(field)
            }
            _ => None,
        }
    }
}
