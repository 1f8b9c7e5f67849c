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
mod principal;
mod settings;
mod token;

pub use principal::{Forbidden, Principal, Role};
pub use settings::{AuthSettings, DEVELOPMENT_SECRET};
pub use token::{now, parse_ttl, Authenticator, Claims, Minter};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("authentication settings: {0}")]
    Settings(String),
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::settings::DEVELOPMENT_SECRET;

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
