//! Who may do what (ADR 11). Both APIs take a JWT bearer token: [`Authenticator`] checks its
//! signature with the one algorithm the settings name (never the token's own choice), its
//! `exp`, `nbf`, `iss` and `aud`, and yields a [`Principal`] — a subject and a [`Role`]:
//!
//! - `admin` manages policies, products and time sales, revokes coupons, reads anything;
//! - `user` acts only as itself (`sub` is the shop's user id);
//! - `service` (a trusted back end, checkout) acts for any user.
//!
//! [`Minter`] signs tokens (the `promo-token` CLI, the login endpoint, tests and the
//! benchmark). [`limit`] is the rate limiter shared by every instance through Redis, and
//! [`http`] the axum middleware that puts both in front of the routes.

pub mod http;
pub mod limit;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("authentication settings: {0}")]
    Settings(String),
}

/// `[auth]` of the APIs' settings (and of `promo-token`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
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
    fn algorithm(&self) -> Result<Algorithm, AuthError> {
        match self.algorithm.as_str() {
            "HS256" => Ok(Algorithm::HS256),
            "RS256" => Ok(Algorithm::RS256),
            "ES256" => Ok(Algorithm::ES256),
            other => Err(AuthError::Settings(format!(
                "algorithm {other}: HS256, RS256 or ES256"
            ))),
        }
    }

    fn secret(&self) -> Result<&[u8], AuthError> {
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

/// The secret `config/*.toml` ships with, for `./dev run` and the tests on this machine.
pub const DEVELOPMENT_SECRET: &str = "dev-only-secret-do-not-use-in-production-0000";

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

fn read(file: &PathBuf) -> Result<Vec<u8>, AuthError> {
    std::fs::read(file).map_err(|e| AuthError::Settings(format!("{}: {e}", file.display())))
}

/// What a caller may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Service => "service",
        }
    }
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub iss: String,
    /// One audience or several (identity providers send either); checked by the verifier.
    pub aud: serde_json::Value,
    pub exp: u64,
    pub nbf: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
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

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

enum Keys {
    One(DecodingKey),
    Set(jsonwebtoken::jwk::JwkSet),
}

/// Checks bearer tokens.
pub struct Authenticator {
    keys: Keys,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(settings: &AuthSettings) -> Result<Self, AuthError> {
        let algorithm = settings.algorithm()?;
        let keys = match algorithm {
            Algorithm::HS256 => Keys::One(DecodingKey::from_secret(settings.secret()?)),
            _ => match (&settings.public_key_file, &settings.jwks_file) {
                (Some(file), _) => {
                    let pem = read(file)?;
                    let key = if algorithm == Algorithm::RS256 {
                        DecodingKey::from_rsa_pem(&pem)
                    } else {
                        DecodingKey::from_ec_pem(&pem)
                    };
                    Keys::One(key.map_err(|e| AuthError::Settings(e.to_string()))?)
                }
                (None, Some(file)) => Keys::Set(
                    serde_json::from_slice(&read(file)?)
                        .map_err(|e| AuthError::Settings(format!("JWKS: {e}")))?,
                ),
                (None, None) => {
                    return Err(AuthError::Settings(
                        "RS256/ES256 need auth.public_key_file or auth.jwks_file".into(),
                    ))
                }
            },
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = settings.leeway_seconds;
        Ok(Self { keys, validation })
    }

    /// The principal of a token, if its signature, algorithm, times, issuer and audience hold.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let invalid = |e: jsonwebtoken::errors::Error| AuthError::Invalid(e.to_string());
        let key = match &self.keys {
            Keys::One(key) => key,
            Keys::Set(set) => {
                let kid = jsonwebtoken::decode_header(token)
                    .map_err(invalid)?
                    .kid
                    .ok_or_else(|| AuthError::Invalid("no kid".into()))?;
                let jwk = set
                    .find(&kid)
                    .ok_or_else(|| AuthError::Invalid("unknown kid".into()))?;
                &DecodingKey::from_jwk(jwk).map_err(invalid)?
            }
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(invalid)?;
        let claims = data.claims;
        if claims.sub.is_empty() || claims.sub.len() > 128 {
            return Err(AuthError::Invalid("sub".into()));
        }
        // Canonical digits only: "+7" or "007" would own user 7's data yet be another actor,
        // another idempotency scope and another rate-limit budget.
        if claims.role == Role::User
            && claims
                .sub
                .parse::<i64>()
                .map_or(true, |id| id <= 0 || id.to_string() != claims.sub)
        {
            return Err(AuthError::Invalid(
                "a user's sub must be the shop's user id".into(),
            ));
        }
        Ok(Principal {
            subject: claims.sub,
            role: claims.role,
        })
    }
}

/// Signs tokens with the settings' key.
pub struct Minter {
    key: EncodingKey,
    header: Header,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter").finish_non_exhaustive()
    }
}

impl Minter {
    pub fn new(settings: &AuthSettings) -> Result<Self, AuthError> {
        let algorithm = settings.algorithm()?;
        let key = match algorithm {
            Algorithm::HS256 => EncodingKey::from_secret(settings.secret()?),
            _ => {
                let file = settings.private_key_file.as_ref().ok_or_else(|| {
                    AuthError::Settings("RS256/ES256 signing needs auth.private_key_file".into())
                })?;
                let pem = read(file)?;
                let key = if algorithm == Algorithm::RS256 {
                    EncodingKey::from_rsa_pem(&pem)
                } else {
                    EncodingKey::from_ec_pem(&pem)
                };
                key.map_err(|e| AuthError::Settings(e.to_string()))?
            }
        };
        Ok(Self {
            key,
            header: Header::new(algorithm),
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        })
    }

    /// A token for `subject` as `role`, valid from now for `ttl`.
    pub fn mint(&self, subject: &str, role: Role, ttl: Duration) -> Result<String, AuthError> {
        let now = now();
        self.sign(&Claims {
            sub: subject.to_owned(),
            role,
            iss: self.issuer.clone(),
            aud: serde_json::Value::String(self.audience.clone()),
            exp: now + ttl.as_secs(),
            nbf: now,
            iat: Some(now),
        })
    }

    /// Signs arbitrary claims (tests make expired or foreign ones).
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&self.header, claims, &self.key)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

/// A duration like `90s`, `30m`, `1h`, `7d`, or plain seconds.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |i| text.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text}"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3_600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("not a duration: {text} (use s, m, h or d)")),
    };
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings {
            secret: Some("a-test-secret-that-is-long-enough-000".into()),
            ..AuthSettings::default()
        }
    }

    #[test]
    fn a_minted_token_verifies_as_its_principal() {
        let minter = Minter::new(&settings()).unwrap();
        let token = minter
            .mint("42", Role::User, Duration::from_secs(60))
            .unwrap();
        let principal = Authenticator::new(&settings())
            .unwrap()
            .verify(&token)
            .unwrap();
        assert_eq!(principal.user_id(), Some(42));
        assert_eq!(principal.actor(), "user:42");
    }

    #[test]
    fn ownership_and_roles() {
        let user = Principal {
            subject: "7".into(),
            role: Role::User,
        };
        let service = Principal {
            subject: "checkout".into(),
            role: Role::Service,
        };
        assert!(user.require_user(7).is_ok());
        assert!(user.require_user(8).is_err());
        assert!(user.require_admin().is_err());
        assert!(user.require_service().is_err());
        assert!(service.require_user(8).is_ok());
        assert!(service.require_admin().is_err());
        assert_eq!(service.acting_user(), None);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert!(parse_ttl("1w").is_err());
    }

    #[test]
    fn the_development_secret_and_auth_off_stay_on_loopback() {
        let dev = AuthSettings {
            secret: Some(DEVELOPMENT_SECRET.to_owned().into()),
            ..AuthSettings::default()
        };
        assert!(dev.check_exposure("127.0.0.1").is_ok());
        assert!(dev.check_exposure("::1").is_ok());
        assert!(dev.check_exposure("0.0.0.0").is_err());
        assert!(dev.check_exposure("10.0.0.5").is_err());
        let off = AuthSettings {
            enabled: false,
            ..AuthSettings::default()
        };
        assert!(off.check_exposure("localhost").is_ok());
        assert!(off.check_exposure("0.0.0.0").is_err());
        let real = AuthSettings {
            secret: Some("a-real-secret-of-at-least-32-bytes-long".to_owned().into()),
            ..AuthSettings::default()
        };
        assert!(real.check_exposure("0.0.0.0").is_ok());
    }

    #[test]
    fn a_short_secret_is_refused() {
        let short = AuthSettings {
            secret: Some("short".into()),
            ..AuthSettings::default()
        };
        assert!(Authenticator::new(&short).is_err());
    }
}
