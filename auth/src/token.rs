//! Tokens: [`Authenticator`] verifies a bearer token with the one algorithm the settings name;
//! [`Minter`] signs them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::settings::read;
use crate::{AuthError, AuthSettings, Principal, Role};

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

/// Signs tokens with the settings' key.
pub struct Minter {
    key: EncodingKey,
    header: Header,
    issuer: String,
    audience: String,
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
