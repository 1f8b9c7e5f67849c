//! Who a token is — a subject and a [`Role`] — and what each role may do.

use serde::{Deserialize, Serialize};

/// What a caller may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
    Service,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
}

/// Refused: the role may not do this, or the data is another user's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Forbidden(pub &'static str);

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Service => "service",
        }
    }
}

impl Principal {
    /// The caller when authentication is switched off: trusted with everything.
    pub fn unauthenticated() -> Self {
        Principal {
            subject: "anonymous".into(),
            role: Role::Admin,
        }
    }

    /// `role:subject`: the actor in every event's metadata, and whose idempotency keys these
    /// are.
    pub fn actor(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.subject)
    }

    /// The shop's user id of a `user` principal.
    pub fn user_id(&self) -> Option<i64> {
        match self.role {
            Role::User => self.subject.parse().ok().filter(|id: &i64| *id > 0),
            _ => None,
        }
    }

    /// The user a command acts as, when the domain must check ownership (using a coupon,
    /// cancelling an order): a user is checked, a service or admin acts for anyone.
    pub fn acting_user(&self) -> Option<i64> {
        self.user_id()
    }

    /// Only admins.
    pub fn require_admin(&self) -> Result<(), Forbidden> {
        match self.role {
            Role::Admin => Ok(()),
            _ => Err(Forbidden("only an admin may do this")),
        }
    }

    /// Only trusted back ends (and admins): earning points is the shop's to grant.
    pub fn require_service(&self) -> Result<(), Forbidden> {
        match self.role {
            Role::Admin | Role::Service => Ok(()),
            Role::User => Err(Forbidden("only a service may do this")),
        }
    }

    /// The caller may act for (or read the data of) `user`.
    pub fn require_user(&self, user: i64) -> Result<(), Forbidden> {
        match self.role {
            Role::Admin | Role::Service => Ok(()),
            Role::User if self.user_id() == Some(user) => Ok(()),
            Role::User => Err(Forbidden("this is another user's")),
        }
    }
}
