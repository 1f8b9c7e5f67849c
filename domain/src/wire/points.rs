//! The point account's events on the wire: `point.earned`, `point.spent`, `point.canceled`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::*;
use crate::points::{PointEvent, TransactionKind};
use crate::values::{Points, Text, UserId};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PointEarnedV1 {
    user_id: UserId,
    transaction_id: Uuid,
    amount: Points,
    description: Text,
    balance_after: i64,
    occurred_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PointSpentV1 {
    user_id: UserId,
    transaction_id: Uuid,
    amount: Points,
    description: Text,
    #[serde(default)]
    order_id: Option<Text>,
    balance_after: i64,
    occurred_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PointCanceledV1 {
    user_id: UserId,
    transaction_id: Uuid,
    canceled_transaction_id: Uuid,
    canceled_type: TransactionKind,
    amount: Points,
    balance_after: i64,
    occurred_at: DateTime<Utc>,
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
                balance_after,
                at,
            } => encode(
                name,
                PointEarnedV1 {
                    user_id,
                    transaction_id,
                    amount,
                    description,
                    balance_after,
                    occurred_at: at,
                },
            ),
            PointEvent::Spent {
                user_id,
                transaction_id,
                amount,
                description,
                order_id,
                balance_after,
                at,
            } => encode(
                name,
                PointSpentV1 {
                    user_id,
                    transaction_id,
                    amount,
                    description,
                    order_id,
                    balance_after,
                    occurred_at: at,
                },
            ),
            PointEvent::Canceled {
                user_id,
                transaction_id,
                canceled_transaction_id,
                canceled_kind,
                amount,
                balance_after,
                at,
            } => encode(
                name,
                PointCanceledV1 {
                    user_id,
                    transaction_id,
                    canceled_transaction_id,
                    canceled_type: canceled_kind,
                    amount,
                    balance_after,
                    occurred_at: at,
                },
            ),
        }
    }

    fn from_wire(wire: &WireEvent) -> Result<Self, WireError> {
        let wire = &*upcast(wire)?;
        Ok(match wire.event_type.as_str() {
            POINT_EARNED => {
                let d: PointEarnedV1 = decode(wire)?;
                PointEvent::Earned {
                    user_id: d.user_id,
                    transaction_id: d.transaction_id,
                    amount: d.amount,
                    description: d.description,
                    balance_after: balance(wire, d.balance_after)?,
                    at: d.occurred_at,
                }
            }
            POINT_SPENT => {
                let d: PointSpentV1 = decode(wire)?;
                PointEvent::Spent {
                    user_id: d.user_id,
                    transaction_id: d.transaction_id,
                    amount: d.amount,
                    description: d.description,
                    order_id: d.order_id,
                    balance_after: balance(wire, d.balance_after)?,
                    at: d.occurred_at,
                }
            }
            POINT_CANCELED => {
                let d: PointCanceledV1 = decode(wire)?;
                PointEvent::Canceled {
                    user_id: d.user_id,
                    transaction_id: d.transaction_id,
                    canceled_transaction_id: d.canceled_transaction_id,
                    canceled_kind: d.canceled_type,
                    amount: d.amount,
                    balance_after: balance(wire, d.balance_after)?,
                    at: d.occurred_at,
                }
            }
            _ => return Err(unknown(wire)),
        })
    }
}
