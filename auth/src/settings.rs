//! `[auth]` of both APIs' settings: the algorithm, its key (a secret, a public key or a JWKS
//! file), the issuer and audience, and the refusal to run exposed with the development secret.

use std::path::PathBuf;

use jsonwebtoken::Algorithm;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::AuthError;

/// `[auth]` of the APIs' settings (and of `promo-token`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Tokens required. Off only to measure what authentication costs (the benchmark).
    pub enabled: bool,
    /// `HS256` (a shared secret), `RS256` or `ES256` (a public key, or a JWKS file). Tokens
    /// signed with anything else are refused.
    pub algorithm: String,
    /// The HS256 secret (at least 32 bytes).
    pub secret: Option<SecretString>,
    /// RS256/ES256: the PEM public key that verifies tokens.
    pub public_key_file: Option<PathBuf>,
    /// RS256/ES256: a JWKS file instead; the token's `kid` picks the key.
    pub jwks_file: Option<PathBuf>,
    /// RS256/ES256: the PEM private key `promo-token` and the login endpoint sign with.
    pub private_key_file: Option<PathBuf>,
    /// The `iss` tokens must carry (and minted tokens carry).
    pub issuer: String,
    /// The `aud` tokens must carry.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
    /// Lifetime of a token the login endpoint issues, in seconds.
    pub login_ttl_seconds: u64,
}

/// The secret `config/*.toml` ships with, for `./dev run` and the tests on this machine.
pub const DEVELOPMENT_SECRET: &str = "dev-only-secret-do-not-use-in-production-0000";

pub(crate) fn read(file: &PathBuf) -> Result<Vec<u8>, AuthError> {
    std::fs::read(file).map_err(|e| AuthError::Settings(format!("{}: {e}", file.display())))
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            algorithm: "HS256".into(),
            secret: None,
            public_key_file: None,
            jwks_file: None,
            private_key_file: None,
            issuer: "promo".into(),
            audience: "promo-api".into(),
            leeway_seconds: 5,
            login_ttl_seconds: 3_600,
        }
    }
}

impl AuthSettings {
    pub(crate) fn algorithm(&self) -> Result<Algorithm, AuthError> {
        match self.algorithm.as_str() {
            "HS256" => Ok(Algorithm::HS256),
            "RS256" => Ok(Algorithm::RS256),
            "ES256" => Ok(Algorithm::ES256),
            other => Err(AuthError::Settings(format!(
                "algorithm {other}: HS256, RS256 or ES256"
            ))),
        }
    }

    pub(crate) fn secret(&self) -> Result<&[u8], AuthError> {
        let secret = self
            .secret
            .as_ref()
            .ok_or_else(|| AuthError::Settings("HS256 needs auth.secret".into()))?
            .expose_secret()
            .as_bytes();
        if secret.len() < 32 {
            return Err(AuthError::Settings(
                "auth.secret must be at least 32 bytes".into(),
            ));
        }
        Ok(secret)
    }
}

impl AuthSettings {
    /// Refuses, for a server listening on `host` beyond the loopback interface, the settings
    /// that are only safe on one's own machine: authentication off (every caller an admin)
    /// or the development secret everyone with the repository knows.
    pub fn check_exposure(&self, host: &str) -> Result<(), AuthError> {
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback {
            return Ok(());
        }
        if !self.enabled {
            return Err(AuthError::Settings(format!(
                "auth.enabled = false is only allowed on a loopback address, not {host}"
            )));
        }
        let development = self
            .secret
            .as_ref()
            .is_some_and(|s| s.expose_secret() == DEVELOPMENT_SECRET);
        if development && self.algorithm.eq_ignore_ascii_case("HS256") {
            return Err(AuthError::Settings(format!(
                "the development auth.secret is only allowed on a loopback address, not {host}: \
                 set APP_AUTH__SECRET"
            )));
        }
        Ok(())
    }
}
