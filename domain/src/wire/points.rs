//! The point account's events on the wire: `point.earned`, `point.spent`, `point.canceled`
//! (v2: a lot's expiry and what expires next; v1 is upcast unchanged), `point.expired`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::*;
use crate::points::{NextExpiry, PointEvent, TransactionKind};
use crate::values::{Points, Text, UserId};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PointEarnedV2 {
    user_id: UserId,
    transaction_id: Uuid,
    amount: Points,
    description: Text,
    balance_after: i64,
    occurred_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_expiry: Option<NextExpiry>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PointSpentV2 {
    user_id: UserId,
    transaction_id: Uuid,
    amount: Points,
    description: Text,
    #[serde(default)]
    order_id: Option<Text>,
    balance_after: i64,
    occurred_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_expiry: Option<NextExpiry>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PointCanceledV2 {
    user_id: UserId,
    transaction_id: Uuid,
    canceled_transaction_id: Uuid,
    canceled_type: TransactionKind,
    amount: Points,
    balance_after: i64,
    occurred_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_expiry: Option<NextExpiry>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PointExpiredV1 {
    user_id: UserId,
    transaction_id: Uuid,
    lot_id: Uuid,
    amount: Points,
    balance_after: i64,
    occurred_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_expiry: Option<NextExpiry>,
}

fn balance(wire: &WireEvent, value: i64) -> Result<i64, WireError> {
    if value < 0 {
        return Err(invalid(wire)(crate::DomainError::invalid(
            "balanceAfter",
            "must not be negative",
        )));
    }
    Ok(value)
}

impl WireCodec for PointEvent {
    fn type_name(&self) -> &'static str {
        match self {
            PointEvent::Earned { .. } => POINT_EARNED,
            PointEvent::Spent { .. } => POINT_SPENT,
            PointEvent::Canceled { .. } => POINT_CANCELED,
            PointEvent::Expired { .. } => POINT_EXPIRED,
        }
    }

    fn to_wire(&self) -> WireEvent {
        let name = self.type_name();
        match self.clone() {
            PointEvent::Earned {
                user_id,
                transaction_id,
                amount,
                description,
                expires_at,
                balance_after,
                next_expiry,
                at,
            } => encode(
                name,
                PointEarnedV2 {
                    user_id,
                    transaction_id,
                    amount,
                    description,
                    balance_after,
                    occurred_at: at,
                    expires_at,
                    next_expiry,
                },
            ),
            PointEvent::Spent {
                user_id,
                transaction_id,
                amount,
                description,
                order_id,
                balance_after,
                next_expiry,
                at,
            } => encode(
                name,
                PointSpentV2 {
                    user_id,
                    transaction_id,
                    amount,
                    description,
                    order_id,
                    balance_after,
                    occurred_at: at,
                    next_expiry,
                },
            ),
            PointEvent::Canceled {
                user_id,
                transaction_id,
                canceled_transaction_id,
                canceled_kind,
                amount,
                balance_after,
                next_expiry,
                at,
            } => encode(
                name,
                PointCanceledV2 {
                    user_id,
                    transaction_id,
                    canceled_transaction_id,
                    canceled_type: canceled_kind,
                    amount,
                    balance_after,
                    occurred_at: at,
                    next_expiry,
                },
            ),
            PointEvent::Expired {
                user_id,
                transaction_id,
                lot_id,
                amount,
                balance_after,
                next_expiry,
                at,
            } => encode(
                name,
                PointExpiredV1 {
                    user_id,
                    transaction_id,
                    lot_id,
                    amount,
                    balance_after,
                    occurred_at: at,
                    next_expiry,
                },
            ),
        }
    }

    fn from_wire(wire: &WireEvent) -> Result<Self, WireError> {
        let wire = &*upcast(wire)?;
        Ok(match wire.event_type.as_str() {
            POINT_EARNED => {
                let d: PointEarnedV2 = decode(wire)?;
                PointEvent::Earned {
                    user_id: d.user_id,
                    transaction_id: d.transaction_id,
                    amount: d.amount,
                    description: d.description,
                    expires_at: d.expires_at,
                    balance_after: balance(wire, d.balance_after)?,
                    next_expiry: d.next_expiry,
                    at: d.occurred_at,
                }
            }
            POINT_SPENT => {
                let d: PointSpentV2 = decode(wire)?;
                PointEvent::Spent {
                    user_id: d.user_id,
                    transaction_id: d.transaction_id,
                    amount: d.amount,
                    description: d.description,
                    order_id: d.order_id,
                    balance_after: balance(wire, d.balance_after)?,
                    next_expiry: d.next_expiry,
                    at: d.occurred_at,
                }
            }
            POINT_CANCELED => {
                let d: PointCanceledV2 = decode(wire)?;
                PointEvent::Canceled {
                    user_id: d.user_id,
                    transaction_id: d.transaction_id,
                    canceled_transaction_id: d.canceled_transaction_id,
                    canceled_kind: d.canceled_type,
                    amount: d.amount,
                    balance_after: balance(wire, d.balance_after)?,
                    next_expiry: d.next_expiry,
                    at: d.occurred_at,
                }
            }
            POINT_EXPIRED => {
                let d: PointExpiredV1 = decode(wire)?;
                PointEvent::Expired {
                    user_id: d.user_id,
                    transaction_id: d.transaction_id,
                    lot_id: d.lot_id,
                    amount: d.amount,
                    balance_after: balance(wire, d.balance_after)?,
                    next_expiry: d.next_expiry,
                    at: d.occurred_at,
                }
            }
            _ => return Err(unknown(wire)),
        })
    }
}
