//! Bearer tokens minted before the load, so that signing costs the measured window nothing.

use std::time::Duration;

/// Bearer tokens minted before the load, so that signing costs the measured window nothing.
pub(crate) struct Tokens {
    minter: auth::Minter,
    /// `Bearer …` of users `first..first + users.len()`.
    first: i64,
    users: Vec<String>,
}

impl Tokens {
    pub(crate) fn new(secret: &str) -> anyhow::Result<Self> {
        let minter = auth::Minter::new(&auth::AuthSettings {
            secret: Some(secret.into()),
            ..auth::AuthSettings::default()
        })?;
        Ok(Self {
            minter,
            first: 1,
            users: Vec::new(),
        })
    }

    pub(crate) fn bearer(&self, role: auth::Role, sub: &str) -> anyhow::Result<String> {
        Ok(format!(
            "Bearer {}",
            self.minter
                .mint(sub, role, Duration::from_secs(6 * 3_600))?
        ))
    }

    /// Mints a token for each of users `first..first + count`.
    pub(crate) fn for_users(mut self, first: i64, count: usize) -> anyhow::Result<Self> {
        self.first = first;
        self.users = (0..count as i64)
            .map(|n| self.bearer(auth::Role::User, &(first + n).to_string()))
            .collect::<anyhow::Result<_>>()?;
        Ok(self)
    }

    /// User `id`'s `Bearer …` (minted by [`Tokens::for_users`]).
    pub(crate) fn user(&self, id: i64) -> &str {
        &self.users[(id - self.first) as usize]
    }
}
