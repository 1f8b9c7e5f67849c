//! Loyalty point accounts, one per user: earn, use, cancel, expire. The balance never goes
//! negative and every history entry carries the balance right after it.
//!
//! Every earn is a **lot**, which may expire (`expires_at`). A use takes from the lots that
//! expire first (those that never expire last, then the oldest); cancelling a use puts back
//! what it took, lot by lot; at a lot's expiry the system expires what is left of it
//! (`point.expired`, a history entry of its own). Points past their lot's expiry are never
//! spent, even in the moment before the expiry is recorded, and points put back into a lot
//! already past its expiry expire in the same command. The balance is always the sum of what
//! the lots hold.

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
    /// Points that reached their lot's expiry.
    Expire,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub kind: TransactionKind,
    pub amount: Points,
    pub canceled: bool,
}

/// What an earn's points hold now: what is left, and when it expires (never when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    pub left: i64,
    pub expires_at: Option<DateTime<Utc>>,
    /// The expiry was recorded (what was left left the balance).
    pub expired: bool,
    /// Earn order, the tie-break between lots of one expiry.
    seq: u64,
}

/// The points that expire soonest: how many, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct NextExpiry {
    pub amount: i64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PointCommand {
    Earn {
        user_id: UserId,
        transaction_id: Uuid,
        amount: Points,
        description: Text,
        /// When these points expire; never when `None`.
        expires_at: Option<DateTime<Utc>>,
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
    /// The system's deadline: what is left of lot `lot_id` at its expiry leaves the balance.
    /// Refused before the expiry and for a lot that holds nothing (expired, spent, cancelled).
    ExpireLot {
        lot_id: Uuid,
        /// The id of the expiry's history entry.
        transaction_id: Uuid,
        now: DateTime<Utc>,
    },
}

/// Every event carries `balance_after`: the history's balance snapshot, and an idempotent
/// value for the read model.
/// Serialized as its wire form (`crate::wire`, which implements serde for it).
#[derive(Debug, Clone, PartialEq)]
/// `next_expiry` is what expires soonest after the event (`None`: nothing expiring, or an
/// event recorded before lots, v1).
pub enum PointEvent {
    Earned {
        user_id: UserId,
        transaction_id: Uuid,
        amount: Points,
        description: Text,
        expires_at: Option<DateTime<Utc>>,
        balance_after: i64,
        next_expiry: Option<NextExpiry>,
        at: DateTime<Utc>,
    },
    Spent {
        user_id: UserId,
        transaction_id: Uuid,
        amount: Points,
        description: Text,
        order_id: Option<Text>,
        balance_after: i64,
        next_expiry: Option<NextExpiry>,
        at: DateTime<Utc>,
    },
    Canceled {
        user_id: UserId,
        transaction_id: Uuid,
        canceled_transaction_id: Uuid,
        canceled_kind: TransactionKind,
        amount: Points,
        balance_after: i64,
        next_expiry: Option<NextExpiry>,
        at: DateTime<Utc>,
    },
    /// What was left of a lot at its expiry (or put back into it after) left the balance.
    Expired {
        user_id: UserId,
        transaction_id: Uuid,
        lot_id: Uuid,
        amount: Points,
        balance_after: i64,
        next_expiry: Option<NextExpiry>,
        at: DateTime<Utc>,
    },
}

impl PointEvent {
    pub fn user_id(&self) -> UserId {
        match self {
            PointEvent::Earned { user_id, .. }
            | PointEvent::Spent { user_id, .. }
            | PointEvent::Canceled { user_id, .. }
            | PointEvent::Expired { user_id, .. } => *user_id,
        }
    }

    /// The id of the history entry this event is.
    pub fn transaction_id(&self) -> Uuid {
        match self {
            PointEvent::Earned { transaction_id, .. }
            | PointEvent::Spent { transaction_id, .. }
            | PointEvent::Canceled { transaction_id, .. }
            | PointEvent::Expired { transaction_id, .. } => *transaction_id,
        }
    }

    /// What expires soonest after this event.
    pub fn next_expiry(&self) -> Option<NextExpiry> {
        match self {
            PointEvent::Earned { next_expiry, .. }
            | PointEvent::Spent { next_expiry, .. }
            | PointEvent::Canceled { next_expiry, .. }
            | PointEvent::Expired { next_expiry, .. } => *next_expiry,
        }
    }

    /// The kind of history entry this event is.
    pub fn kind(&self) -> TransactionKind {
        match self {
            PointEvent::Earned { .. } => TransactionKind::Earn,
            PointEvent::Spent { .. } => TransactionKind::Use,
            PointEvent::Canceled { .. } => TransactionKind::Cancel,
            PointEvent::Expired { .. } => TransactionKind::Expire,
        }
    }

    /// The points moved (for a cancellation: the cancelled transaction's amount).
    pub fn amount(&self) -> Points {
        match self {
            PointEvent::Earned { amount, .. }
            | PointEvent::Spent { amount, .. }
            | PointEvent::Canceled { amount, .. }
            | PointEvent::Expired { amount, .. } => *amount,
        }
    }

    pub fn balance_after(&self) -> i64 {
        match self {
            PointEvent::Earned { balance_after, .. }
            | PointEvent::Spent { balance_after, .. }
            | PointEvent::Canceled { balance_after, .. }
            | PointEvent::Expired { balance_after, .. } => *balance_after,
        }
    }

    /// The signed change this event made to the balance.
    pub fn balance_change(&self) -> i64 {
        match self {
            PointEvent::Earned { amount, .. } => amount.get(),
            PointEvent::Spent { amount, .. } | PointEvent::Expired { amount, .. } => -amount.get(),
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
    /// Every earn's lot, by the earn's transaction id.
    #[serde(default)]
    lots: HashMap<Uuid, Lot>,
    /// What each use took, lot by lot (put back when it is cancelled).
    #[serde(default)]
    takes: HashMap<Uuid, Vec<(Uuid, i64)>>,
    #[serde(default)]
    next_seq: u64,
    /// The account's user (known from its first event).
    #[serde(default)]
    user: Option<UserId>,
}

impl PointAccount {
    pub fn balance(&self) -> i64 {
        self.balance
    }

    pub fn transaction(&self, id: &Uuid) -> Option<&Transaction> {
        self.transactions.get(id)
    }

    pub fn lot(&self, id: &Uuid) -> Option<&Lot> {
        self.lots.get(id)
    }

    /// Points that may be spent at `now`: what the lots not past their expiry hold.
    pub fn spendable(&self, now: DateTime<Utc>) -> i64 {
        self.lots
            .values()
            .filter(|lot| live(lot, now))
            .map(|lot| lot.left)
            .sum()
    }

    /// What expires soonest: the points of every lot with the soonest expiry still holding
    /// some.
    pub fn next_expiry(&self) -> Option<NextExpiry> {
        let soonest = self
            .lots
            .values()
            .filter(|lot| lot.left > 0 && !lot.expired)
            .filter_map(|lot| lot.expires_at)
            .min()?;
        let amount = self
            .lots
            .values()
            .filter(|lot| lot.left > 0 && !lot.expired && lot.expires_at == Some(soonest))
            .map(|lot| lot.left)
            .sum();
        Some(NextExpiry {
            amount,
            expires_at: soonest,
        })
    }

    /// The lots a use at `now` takes `amount` from: those expiring first (never-expiring ones
    /// last), the oldest first among equals; none past its expiry.
    fn allocate(&self, amount: i64, now: DateTime<Utc>) -> Vec<(Uuid, i64)> {
        let mut open: Vec<(&Uuid, &Lot)> =
            self.lots.iter().filter(|(_, lot)| live(lot, now)).collect();
        open.sort_by_key(|(_, lot)| (lot.expires_at.is_none(), lot.expires_at, lot.seq));
        let mut rest = amount;
        let mut takes = Vec::new();
        for (id, lot) in open {
            if rest == 0 {
                break;
            }
            let take = rest.min(lot.left);
            takes.push((*id, take));
            rest -= take;
        }
        takes
    }

    /// `events` with each one's `next_expiry` as the state after it says — computed on a
    /// copy of the lots alone (and the takes a cancellation among them puts back), not of the
    /// whole history.
    fn stamped(&self, mut events: Vec<PointEvent>) -> Vec<PointEvent> {
        let takes = events
            .iter()
            .filter_map(|e| match e {
                PointEvent::Canceled {
                    canceled_transaction_id,
                    ..
                } => self
                    .takes
                    .get(canceled_transaction_id)
                    .map(|t| (*canceled_transaction_id, t.clone())),
                _ => None,
            })
            .collect();
        let mut state = PointAccount {
            balance: self.balance,
            transactions: HashMap::new(),
            lots: self.lots.clone(),
            takes,
            next_seq: self.next_seq,
            user: self.user,
        };
        for event in &mut events {
            state.apply_event(event.clone());
            let soonest = state.next_expiry();
            match event {
                PointEvent::Earned { next_expiry, .. }
                | PointEvent::Spent { next_expiry, .. }
                | PointEvent::Canceled { next_expiry, .. }
                | PointEvent::Expired { next_expiry, .. } => *next_expiry = soonest,
            }
        }
        events
    }

    pub fn decide(&self, command: PointCommand) -> Result<Vec<PointEvent>, DomainError> {
        let events = match command {
            PointCommand::Earn {
                user_id,
                transaction_id,
                amount,
                description,
                expires_at,
                now,
            } => {
                self.ensure_new(&transaction_id)?;
                if let Some(expires_at) = expires_at {
                    let expires_at = crate::values::checked_time(expires_at, "expiresAt")?;
                    if expires_at <= now {
                        return Err(DomainError::unacceptable(
                            "expiresAt",
                            "must be in the future",
                        ));
                    }
                }
                let balance_after = self
                    .balance
                    .checked_add(amount.get())
                    .ok_or(DomainError::BalanceOverflow)?;
                vec![PointEvent::Earned {
                    user_id,
                    transaction_id,
                    amount,
                    description,
                    expires_at,
                    balance_after,
                    next_expiry: None,
                    at: now,
                }]
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
                if amount.get() > self.spendable(now) {
                    return Err(DomainError::InsufficientBalance);
                }
                vec![PointEvent::Spent {
                    user_id,
                    transaction_id,
                    amount,
                    description,
                    order_id,
                    balance_after: self.balance - amount.get(),
                    next_expiry: None,
                    at: now,
                }]
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
                    TransactionKind::Cancel | TransactionKind::Expire => {
                        return Err(DomainError::TransactionNotCancelable)
                    }
                    // An earn is taken back only whole: its lot untouched and not past its
                    // expiry.
                    TransactionKind::Earn => {
                        let untouched = self
                            .lots
                            .get(&canceled_transaction_id)
                            .is_none_or(|lot| lot.left == original.amount.get() && live(lot, now));
                        if !untouched || original.amount.get() > self.balance {
                            return Err(DomainError::PointsAlreadySpent);
                        }
                        self.balance - original.amount.get()
                    }
                    TransactionKind::Use => self
                        .balance
                        .checked_add(original.amount.get())
                        .ok_or(DomainError::BalanceOverflow)?,
                };
                let mut events = vec![PointEvent::Canceled {
                    user_id,
                    transaction_id,
                    canceled_transaction_id,
                    canceled_kind: original.kind,
                    amount: original.amount,
                    balance_after,
                    next_expiry: None,
                    at: now,
                }];
                // A lot past its expiry that a cancelled use puts points back into expires
                // at once: what it held and what came back.
                if original.kind == TransactionKind::Use {
                    let mut balance = balance_after;
                    for (lot_id, put_back) in self
                        .takes
                        .get(&canceled_transaction_id)
                        .into_iter()
                        .flatten()
                    {
                        let Some(lot) = self.lots.get(lot_id) else {
                            continue;
                        };
                        let past = lot.expired || lot.expires_at.is_some_and(|at| now >= at);
                        let amount = put_back + if lot.expired { 0 } else { lot.left };
                        if past && amount > 0 {
                            balance -= amount;
                            events.push(PointEvent::Expired {
                                user_id,
                                transaction_id: Uuid::new_v5(&transaction_id, lot_id.as_bytes()),
                                lot_id: *lot_id,
                                amount: Points::parse(amount, "amount")?,
                                balance_after: balance,
                                next_expiry: None,
                                at: now,
                            });
                        }
                    }
                }
                events
            }
            PointCommand::ExpireLot {
                lot_id,
                transaction_id,
                now,
            } => {
                self.ensure_new(&transaction_id)?;
                let user_id = self.user.ok_or(DomainError::TransactionNotFound)?;
                let lot = self
                    .lots
                    .get(&lot_id)
                    .ok_or(DomainError::TransactionNotFound)?;
                let Some(expires_at) = lot.expires_at else {
                    return Err(DomainError::LotClosed);
                };
                if lot.expired || lot.left == 0 {
                    return Err(DomainError::LotClosed);
                }
                if now < expires_at {
                    return Err(DomainError::LotNotDue);
                }
                vec![PointEvent::Expired {
                    user_id,
                    transaction_id,
                    lot_id,
                    amount: Points::parse(lot.left, "amount")?,
                    balance_after: self.balance - lot.left,
                    next_expiry: None,
                    at: now,
                }]
            }
        };
        Ok(self.stamped(events))
    }

    fn ensure_new(&self, transaction_id: &Uuid) -> Result<(), DomainError> {
        if self.transactions.contains_key(transaction_id) {
            Err(DomainError::TransactionIdTaken)
        } else {
            Ok(())
        }
    }

    /// Takes `amount` out of the lots: `lot_id`'s own first (a cancelled earn), then as a use
    /// at `at` would.
    fn take_back(&mut self, lot_id: Uuid, amount: i64, at: DateTime<Utc>) {
        let mut rest = amount;
        if let Some(lot) = self.lots.get_mut(&lot_id) {
            let own = rest.min(lot.left);
            lot.left -= own;
            rest -= own;
        }
        if rest > 0 {
            for (id, take) in self.allocate(rest, at) {
                if let Some(lot) = self.lots.get_mut(&id) {
                    lot.left -= take;
                }
            }
        }
    }

    pub fn apply_event(&mut self, event: PointEvent) {
        self.balance = event.balance_after();
        self.user = Some(event.user_id());
        let (id, kind, amount) = match event {
            PointEvent::Earned {
                transaction_id,
                amount,
                expires_at,
                ..
            } => {
                self.next_seq += 1;
                self.lots.insert(
                    transaction_id,
                    Lot {
                        left: amount.get(),
                        expires_at,
                        expired: false,
                        seq: self.next_seq,
                    },
                );
                (transaction_id, TransactionKind::Earn, amount)
            }
            PointEvent::Spent {
                transaction_id,
                amount,
                at,
                ..
            } => {
                let takes = self.allocate(amount.get(), at);
                for (id, take) in &takes {
                    if let Some(lot) = self.lots.get_mut(id) {
                        lot.left -= take;
                    }
                }
                self.takes.insert(transaction_id, takes);
                (transaction_id, TransactionKind::Use, amount)
            }
            PointEvent::Canceled {
                transaction_id,
                canceled_transaction_id,
                canceled_kind,
                amount,
                at,
                ..
            } => {
                if let Some(original) = self.transactions.get_mut(&canceled_transaction_id) {
                    original.canceled = true;
                }
                match canceled_kind {
                    TransactionKind::Use => {
                        for (id, take) in self
                            .takes
                            .remove(&canceled_transaction_id)
                            .unwrap_or_default()
                        {
                            if let Some(lot) = self.lots.get_mut(&id) {
                                lot.left += take;
                            }
                        }
                    }
                    TransactionKind::Earn => {
                        self.take_back(canceled_transaction_id, amount.get(), at)
                    }
                    TransactionKind::Cancel | TransactionKind::Expire => {}
                }
                (transaction_id, TransactionKind::Cancel, amount)
            }
            PointEvent::Expired {
                transaction_id,
                lot_id,
                amount,
                ..
            } => {
                if let Some(lot) = self.lots.get_mut(&lot_id) {
                    lot.left = (lot.left - amount.get()).max(0);
                    lot.expired = true;
                }
                (transaction_id, TransactionKind::Expire, amount)
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

/// Whether a lot's points may still be spent at `now`.
fn live(lot: &Lot, now: DateTime<Utc>) -> bool {
    lot.left > 0 && !lot.expired && lot.expires_at.is_none_or(|at| now < at)
}

crate::cqrs_aggregate!(PointAccount, "point", PointCommand, PointEvent, |_| None);
