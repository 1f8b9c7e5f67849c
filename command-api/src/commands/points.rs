//! Point accounts, one per user: grant points (that may expire), spend them, cancel a
//! transaction; and the system's expiry of an earn's points at their due time.

use chrono::{DateTime, SubsecRound, Utc};
use domain::points::{point_account_id, PointCommand, PointEvent, TransactionKind};
use domain::values::{Points, Text, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{creating, Call, CommandError, Commands, Routed, Written};

/// Points granted to a user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Earn {
    #[schema(minimum = 1)]
    pub user_id: i64,
    #[schema(minimum = 1)]
    pub amount: i64,
    #[schema(schema_with = domain::openapi::text)]
    pub description: String,
    /// When these points expire (what is left of them then leaves the balance); by default
    /// the deployment's validity (`[points] default_validity_days`), or never.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Points a user spends, on an order of the shop's or not.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spend {
    #[schema(minimum = 1)]
    pub user_id: i64,
    #[schema(minimum = 1)]
    pub amount: i64,
    #[schema(schema_with = domain::openapi::text)]
    pub description: String,
    #[serde(default)]
    #[schema(schema_with = domain::openapi::optional_reference)]
    pub order_id: Option<String>,
}

/// A transaction of a user to cancel.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cancel {
    #[schema(minimum = 1)]
    pub user_id: i64,
    pub transaction_id: Uuid,
}

/// A point transaction and the balance right after it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PointEntry {
    pub transaction_id: Uuid,
    pub user_id: i64,
    #[serde(rename = "type")]
    pub kind: TransactionKind,
    pub amount: i64,
    pub balance: i64,
    /// A cancellation's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canceled_transaction_id: Option<Uuid>,
    /// The kind of a cancellation's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canceled_type: Option<TransactionKind>,
}

/// The entry of the transaction a command recorded.
fn entry(events: &[PointEvent]) -> Option<PointEntry> {
    let event = events.first()?;
    let (canceled_transaction_id, canceled_type) = match event {
        PointEvent::Canceled {
            canceled_transaction_id,
            canceled_kind,
            ..
        } => (Some(*canceled_transaction_id), Some(*canceled_kind)),
        _ => (None, None),
    };
    Some(PointEntry {
        transaction_id: event.transaction_id(),
        user_id: event.user_id().get(),
        kind: event.kind(),
        amount: event.amount().get(),
        balance: event.balance_after(),
        canceled_transaction_id,
        canceled_type,
    })
}

impl Commands {
    /// Grants points (a service: points are the shop's to grant; a user earning for itself
    /// would mint money).
    pub async fn earn_points(
        &self,
        call: &Call,
        input: Earn,
    ) -> Result<Written<PointEntry>, CommandError> {
        let user_id = UserId::parse(input.user_id, "userId")?;
        call.caller.require_service()?;
        let now = Utc::now();
        // To the microsecond, as PostgreSQL keeps times.
        let expires_at = input
            .expires_at
            .or_else(|| self.point_validity.map(|validity| now + validity))
            .map(|at| at.trunc_subsecs(6));
        let command = PointCommand::Earn {
            user_id,
            transaction_id: Uuid::new_v4(),
            amount: Points::parse(input.amount, "amount")?,
            description: Text::parse(&input.description, "description")?,
            expires_at,
            now,
        };
        self.write_points(call, user_id, "EarnPoints", command, || {
            Routed::EarnPoints(input)
        })
        .await
    }

    /// Spends points of a user (the user, or a service for it).
    pub async fn spend_points(
        &self,
        call: &Call,
        input: Spend,
    ) -> Result<Written<PointEntry>, CommandError> {
        let user_id = UserId::parse(input.user_id, "userId")?;
        call.caller.require_user(user_id.get())?;
        let command = PointCommand::Use {
            user_id,
            transaction_id: Uuid::new_v4(),
            amount: Points::parse(input.amount, "amount")?,
            description: Text::parse(&input.description, "description")?,
            order_id: input
                .order_id
                .as_deref()
                .map(|o| Text::parse_reference(o, "orderId"))
                .transpose()?,
            now: Utc::now(),
        };
        self.write_points(call, user_id, "UsePoints", command, || {
            Routed::SpendPoints(input)
        })
        .await
    }

    /// Cancels a point transaction (a service: a refund or a correction is the shop's, as
    /// earning is — a user could otherwise take back a spend its checkout already counted).
    pub async fn cancel_points(
        &self,
        call: &Call,
        input: Cancel,
    ) -> Result<Written<PointEntry>, CommandError> {
        let user_id = UserId::parse(input.user_id, "userId")?;
        call.caller.require_service()?;
        let command = PointCommand::Cancel {
            user_id,
            transaction_id: Uuid::new_v4(),
            canceled_transaction_id: input.transaction_id,
            now: Utc::now(),
        };
        self.write_points(call, user_id, "CancelPointTransaction", command, || {
            Routed::CancelPoints(input)
        })
        .await
    }

    /// Expires what is left of the earn `lot_id` in the point account `account` (the
    /// deadline runner's, on the account's owner).
    pub(crate) async fn expire_points(
        &self,
        call: &Call,
        account: Uuid,
        lot_id: Uuid,
    ) -> Result<Written<PointEntry>, CommandError> {
        let command = PointCommand::ExpireLot {
            lot_id,
            transaction_id: Uuid::new_v4(),
            now: Utc::now(),
        };
        self.write(
            &self.points,
            account,
            call,
            creating("ExpirePoints", command),
            |_, events| entry(events),
        )
        .await
    }

    /// `command` (named `name`) to the point account of `user_id`; the entry it made.
    async fn write_points(
        &self,
        call: &Call,
        user_id: UserId,
        name: &'static str,
        command: PointCommand,
        routed: impl FnOnce() -> Routed,
    ) -> Result<Written<PointEntry>, CommandError> {
        let account = point_account_id(user_id);
        if let Some(answer) = self.routed(account, call, routed).await {
            return answer;
        }
        self.write(
            &self.points,
            account,
            call,
            creating(name, command),
            |_, events| entry(events),
        )
        .await
    }
}
