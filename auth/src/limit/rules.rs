//! Which limit applies: rules per role (and optionally per route prefix, the longest match
//! winning), as the settings give them.

use serde::Deserialize;

use crate::Role;

/// Who a rule limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Who {
    Admin,
    User,
    Service,
}

/// One rule: at most `limit` requests per `window_seconds` for `who` on routes starting with
/// `route` (all routes when absent).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub who: Who,
    #[serde(default)]
    pub route: Option<String>,
    pub limit: u64,
    pub window_seconds: u64,
}

/// `[rate_limit]` of the APIs' settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    pub enabled: bool,
    /// Prefix of the counters' Redis keys.
    pub prefix: String,
    pub rules: Vec<Rule>,
    /// Logins per account and per client address, per minute (against guessing).
    pub logins_per_account: u64,
    pub logins_per_address: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            prefix: "promo:rl:".into(),
            // As the system this replaces: 100 requests a minute per user. Services and
            // admins are not limited.
            rules: vec![Rule {
                who: Who::User,
                route: None,
                limit: 100,
                window_seconds: 60,
            }],
            logins_per_account: 10,
            logins_per_address: 30,
        }
    }
}

impl From<Role> for Who {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => Who::Admin,
            Role::User => Who::User,
            Role::Service => Who::Service,
        }
    }
}

impl LimitSettings {
    /// The rule for `who` on `route`: the longest matching route, else the general one.
    pub fn rule(&self, who: Who, route: &str) -> Option<&Rule> {
        if !self.enabled {
            return None;
        }
        self.rules
            .iter()
            .filter(|r| r.who == who)
            .filter(|r| r.route.as_deref().is_none_or(|p| route.starts_with(p)))
            .max_by_key(|r| r.route.as_ref().map_or(0, String::len))
    }
}

/// The outcome of a check, for the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window resets.
    pub reset_seconds: u64,
    /// Redis counted it (false: the limiter could not ask, and let the request through).
    pub counted: bool,
}
