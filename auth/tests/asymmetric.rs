//! RS256 and ES256: tokens signed with a private key verify with its public key (a PEM file,
//! or a JWKS file picked by `kid`); the algorithm stays the one the settings name, so a token
//! of another algorithm — HS256 "signed" with the public key, the classic confusion — is
//! refused. Keys: auth/tests/keys (made for these tests only).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use auth::{AuthSettings, Authenticator, Claims, Minter, Role};

fn key(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn settings(algorithm: &str, private: &str, public: Option<&str>, jwks: bool) -> AuthSettings {
    AuthSettings {
        algorithm: algorithm.into(),
        secret: None,
        private_key_file: Some(key(private)),
        public_key_file: public.map(key),
        jwks_file: jwks.then(|| key("jwks.json")),
        ..AuthSettings::default()
    }
}

fn claims() -> Claims {
    let now = auth::now();
    Claims {
        sub: "7".into(),
        role: Role::User,
        iss: "promo".into(),
        aud: "promo-api".into(),
        exp: now + 600,
        nbf: now,
        iat: Some(now),
    }
}

#[test]
fn rs256_and_es256_tokens_verify_with_their_public_keys() {
    for (algorithm, private, public) in [
        ("RS256", "rsa-private.pem", "rsa-public.pem"),
        ("ES256", "ec-private.pem", "ec-public.pem"),
    ] {
        let settings = settings(algorithm, private, Some(public), false);
        let token = Minter::new(&settings).unwrap().sign(&claims()).unwrap();
        let principal = Authenticator::new(&settings)
            .unwrap()
            .verify(&token)
            .unwrap();
        assert_eq!(
            (principal.subject.as_str(), principal.role),
            ("7", Role::User)
        );
        // The other key pair's public key does not verify it.
        let other = if algorithm == "RS256" {
            settings_for_other("ES256")
        } else {
            settings_for_other("RS256")
        };
        assert!(
            Authenticator::new(&other).unwrap().verify(&token).is_err(),
            "{algorithm}"
        );
    }
}

fn settings_for_other(algorithm: &str) -> AuthSettings {
    match algorithm {
        "RS256" => settings("RS256", "rsa-private.pem", Some("rsa-public.pem"), false),
        _ => settings("ES256", "ec-private.pem", Some("ec-public.pem"), false),
    }
}

#[test]
fn a_jwks_file_picks_the_key_by_kid() {
    let settings = settings("ES256", "ec-private.pem", None, true);
    let private = std::fs::read(key("ec-private.pem")).unwrap();
    let sign = |kid: Option<&str>| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(
            &header,
            &claims(),
            &jsonwebtoken::EncodingKey::from_ec_pem(&private).unwrap(),
        )
        .unwrap()
    };
    let verifier = Authenticator::new(&settings).unwrap();
    assert!(verifier.verify(&sign(Some("test-ec-1"))).is_ok());
    assert!(
        verifier.verify(&sign(Some("unknown"))).is_err(),
        "unknown kid"
    );
    assert!(verifier.verify(&sign(None)).is_err(), "no kid");
}

#[test]
fn a_token_of_another_algorithm_is_refused_even_if_keyed_with_the_public_key() {
    let settings = settings("RS256", "rsa-private.pem", Some("rsa-public.pem"), false);
    let public = std::fs::read(key("rsa-public.pem")).unwrap();
    // HS256 with the public key's bytes as the secret: verifies only where the algorithm is
    // taken from the token.
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(),
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert!(Authenticator::new(&settings)
        .unwrap()
        .verify(&confused)
        .is_err());
}
