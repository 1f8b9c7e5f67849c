//! Loyalty point accounts, one per user: earn, use, cancel. The balance never goes negative
//! and every history entry carries the balance right after it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{Points, Text, UserId};
use crate::DomainError;

/// Namespace for deriving a point account's stream id from the shop's user id.
const POINT_ACCOUNT_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a4e_9b7d_4c1a_8e5f_3d2b_1a0c_9e8d);

/// The aggregate id of a user's point account: the same user always maps to the same stream,
/// so no lookup table is needed and two first earns for a user race on one stream.
pub fn point_account_id(user_id: UserId) -> Uuid {
    Uuid::new_v5(
        &POINT_ACCOUNT_NAMESPACE,
        user_id.get().to_string().as_bytes(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransactionKind {
    Earn,
    Use,
    Cancel,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub kind: TransactionKind,
    pub amount: Points,
    pub canceled: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PointCommand {
    Earn {
        user_id: UserId,
        transaction_id: Uuid,
        amount: Points,
        description: Text,
        now: DateTime<Utc>,
    },
    Use {
        user_id: UserId,
        transaction_id: Uuid,
        amount: Points,
        description: Text,
        order_id: Option<Text>,
        now: DateTime<Utc>,
    },
    Cancel {
        user_id: UserId,
        /// The id of the cancelling transaction (it appears in the history too).
        transaction_id: Uuid,
        canceled_transaction_id: Uuid,
        now: DateTime<Utc>,
    },
}

impl PointCommand {
    pub fn user_id(&self) -> UserId {
        match self {
            PointCommand::Earn { user_id, .. }
            | PointCommand::Use { user_id, .. }
            | PointCommand::Cancel { user_id, .. } => *user_id,
        }
    }
}

/// Every event carries `balance_after`: the history's balance snapshot, and an idempotent
/// value for the read model.
/// Serialized as its wire form (`crate::wire`, which implements serde for it).
#[derive(Debug, Clone, PartialEq)]
pub enum PointEvent {
    Earned {
        user_id: UserId,
        transaction_id: Uuid,
        amount: Points,
        description: Text,
        balance_after: i64,
        at: DateTime<Utc>,
    },
    Spent {
        user_id: UserId,
        transaction_id: Uuid,
        amount: Points,
        description: Text,
        order_id: Option<Text>,
        balance_after: i64,
        at: DateTime<Utc>,
    },
    Canceled {
        user_id: UserId,
        transaction_id: Uuid,
        canceled_transaction_id: Uuid,
        canceled_kind: TransactionKind,
        amount: Points,
        balance_after: i64,
        at: DateTime<Utc>,
    },
}

impl PointEvent {
    pub fn user_id(&self) -> UserId {
        match self {
            PointEvent::Earned { user_id, .. }
            | PointEvent::Spent { user_id, .. }
            | PointEvent::Canceled { user_id, .. } => *user_id,
        }
    }

    /// The id of the history entry this event is.
    pub fn transaction_id(&self) -> Uuid {
        match self {
            PointEvent::Earned { transaction_id, .. }
            | PointEvent::Spent { transaction_id, .. }
            | PointEvent::Canceled { transaction_id, .. } => *transaction_id,
        }
    }

    /// The kind of history entry this event is.
    pub fn kind(&self) -> TransactionKind {
        match self {
            PointEvent::Earned { .. } => TransactionKind::Earn,
            PointEvent::Spent { .. } => TransactionKind::Use,
            PointEvent::Canceled { .. } => TransactionKind::Cancel,
        }
    }

    /// The points moved (for a cancellation: the cancelled transaction's amount).
    pub fn amount(&self) -> Points {
        match self {
            PointEvent::Earned { amount, .. }
            | PointEvent::Spent { amount, .. }
            | PointEvent::Canceled { amount, .. } => *amount,
        }
    }

    pub fn balance_after(&self) -> i64 {
        match self {
            PointEvent::Earned { balance_after, .. }
            | PointEvent::Spent { balance_after, .. }
            | PointEvent::Canceled { balance_after, .. } => *balance_after,
        }
    }

    /// The signed change this event made to the balance.
    pub fn balance_change(&self) -> i64 {
        match self {
            PointEvent::Earned { amount, .. } => amount.get(),
            PointEvent::Spent { amount, .. } => -amount.get(),
            PointEvent::Canceled {
                canceled_kind: TransactionKind::Earn,
                amount,
                ..
            } => -amount.get(),
            PointEvent::Canceled { amount, .. } => amount.get(),
        }
    }
}

/// One user's point account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PointAccount {
    balance: i64,
    transactions: HashMap<Uuid, Transaction>,
}

impl PointAccount {
    pub fn balance(&self) -> i64 {
        self.balance
    }

    pub fn transaction(&self, id: &Uuid) -> Option<&Transaction> {
        self.transactions.get(id)
    }

    pub fn decide(&self, command: PointCommand) -> Result<Vec<PointEvent>, DomainError> {
        match command {
            PointCommand::Earn {
                user_id,
                transaction_id,
                amount,
                description,
                now,
            } => {
                self.ensure_new(&transaction_id)?;
                let balance_after = self
                    .balance
                    .checked_add(amount.get())
                    .ok_or(DomainError::BalanceOverflow)?;
                Ok(vec![PointEvent::Earned {
                    user_id,
                    transaction_id,
                    amount,
                    description,
                    balance_after,
                    at: now,
                }])
            }
            PointCommand::Use {
                user_id,
                transaction_id,
                amount,
                description,
                order_id,
                now,
            } => {
                self.ensure_new(&transaction_id)?;
                if amount.get() > self.balance {
                    return Err(DomainError::InsufficientBalance);
                }
                Ok(vec![PointEvent::Spent {
                    user_id,
                    transaction_id,
                    amount,
                    description,
                    order_id,
                    balance_after: self.balance - amount.get(),
                    at: now,
                }])
            }
            PointCommand::Cancel {
                user_id,
                transaction_id,
                canceled_transaction_id,
                now,
            } => {
                self.ensure_new(&transaction_id)?;
                let original = self
                    .transactions
                    .get(&canceled_transaction_id)
                    .ok_or(DomainError::TransactionNotFound)?;
                if original.canceled {
                    return Err(DomainError::TransactionAlreadyCanceled);
                }
                let balance_after = match original.kind {
                    TransactionKind::Cancel => return Err(DomainError::TransactionNotCancelable),
                    TransactionKind::Earn if original.amount.get() > self.balance => {
                        return Err(DomainError::PointsAlreadySpent)
                    }
                    TransactionKind::Earn => self.balance - original.amount.get(),
                    TransactionKind::Use => self
                        .balance
                        .checked_add(original.amount.get())
                        .ok_or(DomainError::BalanceOverflow)?,
                };
                Ok(vec![PointEvent::Canceled {
                    user_id,
                    transaction_id,
                    canceled_transaction_id,
                    canceled_kind: original.kind,
                    amount: original.amount,
                    balance_after,
                    at: now,
                }])
            }
        }
    }

    fn ensure_new(&self, transaction_id: &Uuid) -> Result<(), DomainError> {
        if self.transactions.contains_key(transaction_id) {
            Err(DomainError::TransactionIdTaken)
        } else {
            Ok(())
        }
    }

    pub fn apply_event(&mut self, event: PointEvent) {
        self.balance = event.balance_after();
        let (id, kind, amount) = match event {
            PointEvent::Earned {
                transaction_id,
                amount,
                ..
            } => (transaction_id, TransactionKind::Earn, amount),
            PointEvent::Spent {
                transaction_id,
                amount,
                ..
            } => (transaction_id, TransactionKind::Use, amount),
            PointEvent::Canceled {
                transaction_id,
                canceled_transaction_id,
                amount,
                ..
            } => {
                if let Some(original) = self.transactions.get_mut(&canceled_transaction_id) {
                    original.canceled = true;
                }
                (transaction_id, TransactionKind::Cancel, amount)
            }
        };
        self.transactions.insert(
            id,
            Transaction {
                kind,
                amount,
                canceled: false,
            },
        );
    }
}

crate::cqrs_aggregate!(PointAccount, "point", PointCommand, PointEvent, |_| None);
