//! Sign-in (ADR 11): register an account, log in for a token, see who a token is. Accounts
//! live in a table of their own, not in the event log — credentials must not travel to Kafka
//! — with its migrations here ([`migrate`]). Passwords are hashed with argon2id on a blocking
//! thread; a login for an unknown email verifies against a dummy hash, so it takes as long as
//! a wrong password. Registrations are limited per client address, logins per account and per
//! address.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use auth::Role;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{CommandError, Commands};

/// The accounts table's migrations. They share sqlx's bookkeeping table with the event log's
/// (`eventlog/migrations`): versions are kept apart (4 and 5 here), and each migrator ignores
/// the other's.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Creates or updates the accounts table.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = sqlx::migrate::Migrator {
        migrations: MIGRATOR.migrations.clone(),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

/// What sign-in needs: who signs tokens, the limits against guessing, the dummy hash.
#[derive(Debug)]
pub struct Accounts {
    /// Signs the tokens a login issues (`None`: the settings cannot sign).
    pub minter: Option<Arc<auth::Minter>>,
    /// Counts registrations and logins: in Redis, or in this process when there is none.
    pub limiter: auth::limit::RateLimiter,
    pub token_ttl: Duration,
    pub logins_per_account: u64,
    pub logins_per_address: u64,
    /// What a login for an unknown email is verified against, so it costs what a wrong
    /// password does.
    dummy_hash: String,
}

impl Accounts {
    pub async fn new(
        minter: Option<Arc<auth::Minter>>,
        limiter: auth::limit::RateLimiter,
        token_ttl: Duration,
        logins_per_account: u64,
        logins_per_address: u64,
    ) -> Result<Self, CommandError> {
        Ok(Self {
            minter,
            limiter,
            token_ttl,
            logins_per_account,
            logins_per_address,
            dummy_hash: hash("not a password of anyone".into()).await?,
        })
    }
}

/// An email and a password.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credentials {
    /// One `@` between non-empty parts, no white space, control or invisible characters.
    #[schema(schema_with = email_schema)]
    pub email: String,
    /// 12 to 128 characters, no control character (any when signing in; accounts hold only
    /// such).
    #[schema(schema_with = password_schema)]
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    pub user_id: i64,
    pub email: String,
    /// `user`.
    pub role: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedIn {
    /// The bearer token for both APIs.
    pub token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    pub user_id: i64,
    pub role: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    /// The token's `sub`.
    pub subject: String,
    pub role: String,
    /// A user's id (absent for admins and services).
    pub user_id: Option<i64>,
    /// A registered account's email.
    pub email: Option<String>,
}

/// Invisible format characters (zero-width, bidirectional controls, soft hyphen, BOM): an
/// address holding one looks like another's.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}')
}

/// Longest email, in characters.
const EMAIL_MAX_CHARS: usize = 254;

/// [`checked_email`] as an ECMA-262 pattern, for the document: one `@` between non-empty parts
/// of no white space, control or invisible ([`is_invisible`]) character.
const EMAIL_PATTERN: &str = concat!(
    r"^[^\s@\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]+",
    r"@[^\s@\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]+$"
);

fn email_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .min_length(Some(3))
        .max_length(Some(EMAIL_MAX_CHARS))
        .pattern(Some(EMAIL_PATTERN))
        .build()
}

/// An email as sent, lower-cased: one `@` between non-empty parts, no white space (around it
/// either), control or invisible characters, at most 254 characters.
fn checked_email(raw: &str) -> Result<String, CommandError> {
    let valid = raw.chars().count() <= EMAIL_MAX_CHARS
        && !raw
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
        && matches!(raw.split_once('@'), Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if valid {
        Ok(raw.to_lowercase())
    } else {
        Err(CommandError::invalid(
            "email must be an address like name@example.com",
            Some("email"),
        ))
    }
}

/// [`checked_password`]'s characters as a pattern, for the document.
const PASSWORD_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";
const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 12..=128;

fn password_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .min_length(Some(*PASSWORD_CHARS.start()))
        .max_length(Some(*PASSWORD_CHARS.end()))
        .pattern(Some(PASSWORD_PATTERN))
        .build()
}

fn checked_password(password: &str) -> Result<(), CommandError> {
    let chars = password.chars().count();
    if PASSWORD_CHARS.contains(&chars) && !password.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(CommandError::invalid(
            "password must be 12 to 128 characters, without control characters",
            Some("password"),
        ))
    }
}

/// Hashes computed at once at most: one per core. Each takes ~19 MiB and tens of
/// milliseconds; unbounded, a burst of logins would take the memory and every core.
static HASHING: LazyLock<Arc<tokio::sync::Semaphore>> = LazyLock::new(|| {
    Arc::new(tokio::sync::Semaphore::new(
        std::thread::available_parallelism().map_or(2, |n| n.get()),
    ))
});

/// How long a login or registration waits for a hashing slot before 503 `OVERLOADED`.
const HASHING_WAIT: Duration = Duration::from_secs(2);

/// A hashing slot, to be moved into the blocking closure: it is held until the hash is done,
/// even when the request that asked for it was cut off meanwhile.
async fn hashing_slot() -> Result<tokio::sync::OwnedSemaphorePermit, CommandError> {
    match tokio::time::timeout(HASHING_WAIT, HASHING.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(CommandError::Overloaded),
    }
}

/// An argon2id hash of `password` (on a blocking thread: tens of milliseconds of CPU).
async fn hash(password: String) -> Result<String, CommandError> {
    let slot = hashing_slot().await?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        Argon2::default()
            .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| CommandError::Unavailable(e.to_string()))?
    .map_err(|e| CommandError::Unavailable(e.to_string()))
}

async fn verify(password: String, stored: String) -> Result<bool, CommandError> {
    let slot = hashing_slot().await?;
    Ok(tokio::task::spawn_blocking(move || {
        let _slot = slot;
        PasswordHash::new(&stored).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false))
}

/// Why a sign-up or sign-in was refused before its credentials were looked at: too many from
/// this address or for this account.
#[derive(Debug)]
pub enum SignInError {
    Limited(auth::limit::Verdict),
    Refused(CommandError),
}

impl From<CommandError> for SignInError {
    fn from(e: CommandError) -> Self {
        SignInError::Refused(e)
    }
}

impl From<sqlx::Error> for SignInError {
    fn from(e: sqlx::Error) -> Self {
        SignInError::Refused(e.into())
    }
}

impl Accounts {
    /// Refused unless `key` is within `limit` a minute. Against guessing: held through a
    /// Redis outage too (this instance counts alone then).
    async fn within(&self, key: &str, limit: u64) -> Result<(), SignInError> {
        let verdict = self.limiter.count_strict(key, limit, 60).await;
        if verdict.allowed {
            Ok(())
        } else {
            Err(SignInError::Limited(verdict))
        }
    }
}

impl Commands {
    /// Creates a user account (role `user`, ids from 10^12 up) for a client at `address`.
    pub async fn register(
        &self,
        address: &str,
        input: Credentials,
    ) -> Result<Registered, SignInError> {
        let accounts = &self.accounts;
        accounts
            .within(&format!("register:{address}"), accounts.logins_per_address)
            .await?;
        let email = checked_email(&input.email)?;
        checked_password(&input.password)?;
        let hashed = hash(input.password).await?;
        let created: Option<i64> = sqlx::query_scalar(
            "INSERT INTO accounts (email, password_hash) VALUES ($1, $2) \
             ON CONFLICT (email) DO NOTHING RETURNING user_id",
        )
        .bind(&email)
        .bind(&hashed)
        .fetch_optional(self.log.pool())
        .await?;
        match created {
            Some(user_id) => Ok(Registered {
                user_id,
                email,
                role: Role::User.as_str().to_owned(),
            }),
            None => Err(SignInError::Refused(CommandError::Other {
                status: StatusCode::CONFLICT,
                code: "EMAIL_TAKEN",
                detail: "an account has this email",
                field: Some("email"),
            })),
        }
    }

    /// Signs in: a bearer token for both APIs.
    pub async fn login(&self, address: &str, input: Credentials) -> Result<SignedIn, SignInError> {
        let accounts = &self.accounts;
        accounts
            .within(
                &format!("login:address:{address}"),
                accounts.logins_per_address,
            )
            .await?;
        let email = checked_email(&input.email)?;
        if input.password.chars().count() > 128 {
            // No password of an account is longer: refused before any hashing work.
            return Err(CommandError::invalid(
                "password must be at most 128 characters",
                Some("password"),
            )
            .into());
        }
        accounts
            .within(
                &format!("login:account:{email}"),
                accounts.logins_per_account,
            )
            .await?;
        let found: Option<(i64, String, String)> =
            sqlx::query_as("SELECT user_id, password_hash, role FROM accounts WHERE email = $1")
                .bind(&email)
                .fetch_optional(self.log.pool())
                .await?;
        // The same work whether or not the account exists: no timing tells which.
        let stored = found
            .as_ref()
            .map_or_else(|| accounts.dummy_hash.clone(), |(_, h, _)| h.clone());
        let matches = verify(input.password, stored).await?;
        let (Some((user_id, _, role)), true) = (found, matches) else {
            return Err(CommandError::Other {
                status: StatusCode::UNAUTHORIZED,
                code: "INVALID_CREDENTIALS",
                detail: "the email or the password is wrong",
                field: None,
            }
            .into());
        };
        let role = match role.as_str() {
            "admin" => Role::Admin,
            "service" => Role::Service,
            _ => Role::User,
        };
        let minter = accounts.minter.as_ref().ok_or_else(|| {
            CommandError::Unavailable("tokens cannot be signed with these settings".into())
        })?;
        let token = minter
            .mint(&user_id.to_string(), role, accounts.token_ttl)
            .map_err(|e| CommandError::Unavailable(e.to_string()))?;
        Ok(SignedIn {
            token,
            token_type: "Bearer".into(),
            expires_in: accounts.token_ttl.as_secs(),
            user_id,
            role: role.as_str().to_owned(),
        })
    }

    /// Who `caller` is, with its account's email when it has one.
    pub async fn me(&self, caller: &auth::Principal) -> Result<Me, CommandError> {
        let email: Option<String> = match caller.user_id() {
            Some(id) => {
                sqlx::query_scalar("SELECT email FROM accounts WHERE user_id = $1")
                    .bind(id)
                    .fetch_optional(self.log.pool())
                    .await?
            }
            None => None,
        };
        Ok(Me {
            subject: caller.subject.clone(),
            role: caller.role.as_str().to_owned(),
            user_id: caller.user_id(),
            email,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRICKY: &[&str] = &[
        "a", "B", "@", " ", "\t", "\n", "\u{0}", "\u{7f}", "\u{85}", "\u{a0}", "\u{ad}",
        "\u{200b}", "\u{202e}", "\u{2066}", "\u{feff}", "\u{3000}", "é", "İ", "😀", ".",
    ];

    /// The document's email and password rules (pattern and lengths) accept exactly what the
    /// checks accept.
    #[test]
    fn the_documented_rules_are_the_checks() {
        let email = regex::Regex::new(EMAIL_PATTERN).unwrap();
        let password = regex::Regex::new(PASSWORD_PATTERN).unwrap();
        let mut samples = vec![
            "a@b".to_owned(),
            format!("{}@b", "a".repeat(252)),
            format!("{}@b", "a".repeat(253)),
            "x".repeat(12),
            "x".repeat(128),
            "x".repeat(129),
        ];
        for a in TRICKY {
            for b in TRICKY {
                samples.push(format!("{a}x@y{b}"));
                samples.push(format!("x{a}@{b}y"));
                samples.push(format!("{a}{b}"));
                samples.push(format!("passphrase-{a}{b}"));
            }
        }
        for sample in &samples {
            let chars = sample.chars().count();
            let documented = email.is_match(sample) && (3..=EMAIL_MAX_CHARS).contains(&chars);
            assert_eq!(
                documented,
                checked_email(sample).is_ok(),
                "email {sample:?}"
            );
            let documented = password.is_match(sample) && PASSWORD_CHARS.contains(&chars);
            assert_eq!(
                documented,
                checked_password(sample).is_ok(),
                "password {sample:?}"
            );
        }
    }
}
