//! Who may do what, through HTTP (ADR 11): tokens that are missing, expired, tampered with,
//! unsigned or for another issuer or audience are 401; a user on another user's data or on an
//! admin's command is 403; a service acts for any user; sign-in works end to end; the rate and
//! login limits hold, and lift once their window has passed (time injected, not slept).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use auth::{Claims, Role};
use axum::body::Body;
use common::{spawn, token, SECRET};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use tower::ServiceExt;

/// Waits, when less than 20 s of the current wall-clock minute are left, for the next one to
/// begin: a few slow logins (argon2 in a debug build, on a busy machine) then all fall in one
/// of the server's one-minute login windows.
async fn in_one_window() {
    let into_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 60_000;
    let left = Duration::from_millis((60_000 - into_minute) as u64);
    if left < Duration::from_secs(20) {
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn claims(role: Role, sub: &str) -> Claims {
    let now = auth::now();
    Claims {
        sub: sub.into(),
        role,
        iss: "promo".into(),
        aud: "promo-api".into(),
        exp: now + 600,
        nbf: now,
        iat: Some(now),
    }
}

#[sqlx::test(migrations = false)]
async fn a_missing_expired_tampered_unsigned_or_foreign_token_is_401(pool: PgPool) {
    let app = spawn(pool).await;
    let minter = common::minter();
    let good = minter.sign(&claims(Role::Service, "checkout")).unwrap();
    let expired = minter
        .sign(&Claims {
            exp: auth::now() - 3_600,
            nbf: auth::now() - 7_200,
            ..claims(Role::Service, "checkout")
        })
        .unwrap();
    let not_yet = minter
        .sign(&Claims {
            nbf: auth::now() + 3_600,
            ..claims(Role::Service, "checkout")
        })
        .unwrap();
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let forged = claims(Role::Admin, "mallory");
        parts[1] = base64_url(&serde_json::to_vec(&forged).unwrap());
        parts.join(".")
    };
    let unsigned = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        base64_url(&serde_json::to_vec(&claims(Role::Admin, "mallory")).unwrap())
    );
    let other_key = auth::Minter::new(&auth::AuthSettings {
        secret: Some("another-secret-entirely-0123456789abcdef".into()),
        ..auth::AuthSettings::default()
    })
    .unwrap()
    .sign(&claims(Role::Admin, "mallory"))
    .unwrap();
    let other_issuer = minter
        .sign(&Claims {
            iss: "someone-else".into(),
            ..claims(Role::Admin, "x")
        })
        .unwrap();
    let other_audience = minter
        .sign(&Claims {
            aud: "another-api".into(),
            ..claims(Role::Admin, "x")
        })
        .unwrap();
    let user_by_name = minter.sign(&claims(Role::User, "alice")).unwrap();
    let user_padded = minter.sign(&claims(Role::User, "007")).unwrap();
    let earn = json!({ "userId": 1, "amount": 10, "description": "d" });
    for (what, authorization) in [
        ("no token", String::new()),
        ("not a bearer token", format!("Basic {good}")),
        ("garbage", bearer("not.a.token")),
        ("expired", bearer(&expired)),
        ("not valid yet", bearer(&not_yet)),
        ("tampered payload", bearer(&tampered)),
        ("alg none", bearer(&unsigned)),
        ("signed with another key", bearer(&other_key)),
        ("another issuer", bearer(&other_issuer)),
        ("another audience", bearer(&other_audience)),
        ("a user whose sub is not a user id", bearer(&user_by_name)),
        ("a user id not written canonically", bearer(&user_padded)),
    ] {
        let answer = app
            .post_as(&authorization, "/api/v1/points/earn", earn.clone())
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            answer.body
        );
        assert_eq!(answer.content_type, "application/problem+json", "{what}");
        assert_eq!(answer.body["code"], "UNAUTHENTICATED", "{what}");
    }
    assert!(app.events().await.is_empty());
    let answer = app
        .post_as(&bearer(&good), "/api/v1/points/earn", earn.clone())
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    // As identity providers send them: several audiences, no iat.
    let provider_style = minter
        .sign(&Claims {
            aud: json!(["another-api", "promo-api"]),
            iat: None,
            ..claims(Role::Service, "checkout")
        })
        .unwrap();
    let answer = app
        .post_as(&bearer(&provider_style), "/api/v1/points/earn", earn)
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
}

fn base64_url(bytes: &[u8]) -> String {
    const TABLE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[sqlx::test(migrations = false)]
async fn roles_and_ownership_decide_who_may_do_what(pool: PgPool) {
    let app = spawn(pool).await;
    let (seven, eight) = (
        bearer(&token(Role::User, "7")),
        bearer(&token(Role::User, "8")),
    );
    let service = bearer(&token(Role::Service, "checkout"));
    let policy = app.policy(10).await;
    let now = chrono::Utc::now();

    // Admin commands.
    let create = json!({ "title": "T", "totalQuantity": 1, "startTime": now,
        "endTime": now + chrono::Duration::hours(1), "discountType": "FIXED_AMOUNT", "discountValue": 1 });
    for (path, body) in [
        ("/api/v1/coupon-policies", create),
        ("/api/v1/products", json!({ "name": "P", "price": 100 })),
    ] {
        let answer = app.post_as(&seven, path, body.clone()).await;
        assert_eq!(
            (answer.status, answer.body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("FORBIDDEN")),
            "{path}"
        );
        let answer = app.post_as(&service, path, body).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "a service is not an admin: {path}"
        );
    }
    // Points are the shop's to grant; a user spends only its own.
    let earn = |user: i64| json!({ "userId": user, "amount": 100, "description": "d" });
    assert_eq!(
        app.post_as(&seven, "/api/v1/points/earn", earn(7))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post_as(&service, "/api/v1/points/earn", earn(7))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.post_as(&service, "/api/v1/points/earn", earn(8))
            .await
            .status,
        StatusCode::CREATED
    );
    let spend = |user: i64| json!({ "userId": user, "amount": 10, "description": "d" });
    assert_eq!(
        app.post_as(&seven, "/api/v1/points/use", spend(8))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let own = app.post_as(&seven, "/api/v1/points/use", spend(7)).await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.body);
    // Taking a spend back is the shop's (a refund), not the user's.
    let take_back = json!({ "userId": 7, "transactionId": own.body["transactionId"] });
    assert_eq!(
        app.post_as(&seven, "/api/v1/points/cancel", take_back.clone())
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post_as(&service, "/api/v1/points/cancel", take_back)
            .await
            .status,
        StatusCode::CREATED
    );

    // Coupons: a user claims only for itself, and uses only its own.
    let issue = |user: i64| json!({ "policyId": policy, "userId": user });
    assert_eq!(
        app.post_as(&seven, "/api/v1/coupons/issue", issue(8))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let eights = app.post_as(&eight, "/api/v1/coupons/issue", issue(8)).await;
    assert_eq!(eights.status, StatusCode::CREATED);
    let coupon = eights.body["couponId"].as_str().unwrap().to_owned();
    let use_it = json!({ "orderId": "O-1", "orderAmount": 5000 });
    let stolen = app
        .post_as(
            &seven,
            &format!("/api/v1/coupons/{coupon}/use"),
            use_it.clone(),
        )
        .await;
    assert_eq!(
        (stolen.status, stolen.body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("NOT_OWNER")),
        "{}",
        stolen.body
    );
    let used = app
        .post_as(&service, &format!("/api/v1/coupons/{coupon}/use"), use_it)
        .await;
    assert_eq!(
        used.status,
        StatusCode::OK,
        "a service uses it for its owner: {}",
        used.body
    );
    // Undoing a use is a refund: not even the owner may, a service may.
    let cancel_use = format!("/api/v1/coupons/{coupon}/cancel");
    assert_eq!(
        app.post_as(&eight, &cancel_use, json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post_as(&service, &cancel_use, json!({})).await.status,
        StatusCode::OK
    );
    let revoke = app
        .post_as(
            &eight,
            &format!("/api/v1/coupons/{coupon}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(
        revoke.status,
        StatusCode::FORBIDDEN,
        "revoking is an admin's"
    );

    // Orders: a user orders for itself and cancels only its own.
    let sale = app.sale(5, None).await;
    let order = |user: i64| json!({ "timeSaleId": sale, "userId": user, "quantity": 1 });
    assert_eq!(
        app.post_as(&seven, "/api/v1/orders", order(8)).await.status,
        StatusCode::FORBIDDEN
    );
    let placed = app.post_as(&eight, "/api/v1/orders", order(8)).await;
    assert_eq!(placed.status, StatusCode::CREATED);
    let id = placed.body["orderId"].as_str().unwrap().to_owned();
    let cancel = app
        .post_as(&seven, &format!("/api/v1/orders/{id}/cancel"), json!({}))
        .await;
    assert_eq!(
        (cancel.status, cancel.body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("NOT_OWNER"))
    );
    assert_eq!(
        app.post_as(&eight, &format!("/api/v1/orders/{id}/cancel"), json!({}))
            .await
            .status,
        StatusCode::OK
    );

    // Every event names its actor: the authenticated principal.
    let actors: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT metadata->>'actor' FROM events ORDER BY 1")
            .fetch_all(app.log.pool())
            .await
            .unwrap();
    assert_eq!(
        actors,
        vec!["admin:tests", "service:checkout", "user:7", "user:8"]
    );
}

#[sqlx::test(migrations = false)]
async fn idempotency_keys_are_each_callers_own(pool: PgPool) {
    let app = spawn(pool).await;
    let service = token(Role::Service, "checkout");
    for user in [7, 8] {
        let earned = app
            .client
            .post(format!("{}/api/v1/points/earn", app.base))
            .bearer_auth(&service)
            .json(&json!({ "userId": user, "amount": 50, "description": "d" }))
            .send()
            .await
            .unwrap();
        assert_eq!(earned.status(), StatusCode::CREATED);
    }
    let spend = |user: i64, who: &str| {
        app.client
            .post(format!("{}/api/v1/points/use", app.base))
            .bearer_auth(token(Role::User, who))
            .header("idempotency-key", "the-same-key")
            .json(&json!({ "userId": user, "amount": 10, "description": "d" }))
            .send()
    };
    let first = spend(7, "7").await.unwrap();
    let second = spend(8, "8").await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(
        second.status(),
        StatusCode::CREATED,
        "another caller's key is not this one's: no 409, no replay"
    );
    assert!(!second.headers().contains_key("idempotent-replayed"));
}

#[sqlx::test(migrations = false)]
async fn register_login_and_me_work_and_a_wrong_password_takes_as_long_as_an_unknown_email(
    pool: PgPool,
) {
    let app = spawn(pool).await;
    let anonymous = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        anonymous
            .post(format!("{}{path}", app.base))
            .json(&body)
            .send()
    };
    let credentials = json!({ "email": "Ana@Example.com", "password": "correct horse battery" });
    let registered = post("/api/v1/auth/register", credentials.clone())
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let user_id = registered.json::<Value>().await.unwrap()["userId"]
        .as_i64()
        .unwrap();
    assert!(
        user_id >= 1_000_000_000_000,
        "a sign-up never takes an id the shop issues itself: {user_id}"
    );
    // A look-alike address (a zero-width space) and an overlong password never get hashed.
    let lookalike =
        json!({ "email": "ana\u{200b}@example.com", "password": "correct horse battery" });
    let answer = post("/api/v1/auth/register", lookalike).await.unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert_eq!(answer.json::<Value>().await.unwrap()["field"], "email");
    let overlong = json!({ "email": "ana@example.com", "password": "p".repeat(10_000) });
    let answer = post("/api/v1/auth/login", overlong).await.unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert_eq!(answer.json::<Value>().await.unwrap()["field"], "password");
    let again = post("/api/v1/auth/register", credentials.clone())
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let weak = post(
        "/api/v1/auth/register",
        json!({ "email": "b@example.com", "password": "short" }),
    )
    .await
    .unwrap();
    assert_eq!(weak.status(), StatusCode::BAD_REQUEST);

    let login = post(
        "/api/v1/auth/login",
        json!({ "email": "ana@example.com", "password": "correct horse battery" }),
    )
    .await
    .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let token = login.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me: Value = anonymous
        .get(format!("{}/api/v1/auth/me", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            me["userId"].as_i64(),
            me["role"].as_str(),
            me["email"].as_str()
        ),
        (Some(user_id), Some("user"), Some("ana@example.com"))
    );
    let unauthenticated = anonymous
        .get(format!("{}/api/v1/auth/me", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

    // Wrong password and unknown email: both 401, in about the same time (the same argon2 work).
    let mut timings = Vec::new();
    for email in [
        "ana@example.com",
        "nobody@example.com",
        "ana@example.com",
        "nobody@example.com",
    ] {
        let started = std::time::Instant::now();
        let answer = post(
            "/api/v1/auth/login",
            json!({ "email": email, "password": "wrong password here" }),
        )
        .await
        .unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        timings.push(started.elapsed().as_secs_f64());
    }
    let (wrong, unknown) = (timings[0] + timings[2], timings[1] + timings[3]);
    let ratio = wrong / unknown;
    assert!(
        (0.5..2.0).contains(&ratio),
        "a wrong password took {wrong:.3} s, an unknown email {unknown:.3} s"
    );
}

/// The command API in-process over `pool`, with `rules` and a clock the test moves.
async fn in_process(
    pool: PgPool,
    limits: Value,
    clock: Arc<auth::limit::ManualClock>,
) -> axum::Router {
    let log = eventlog::EventLog::from_pool(pool);
    command_api::migrate(&log).await.unwrap();
    let redis =
        std::env::var("APP_REDIS__URL").unwrap_or_else(|_| "redis://127.0.0.1:56379/".into());
    let settings: command_api::settings::Settings = serde_json::from_value(json!({
        "server": { "host": "127.0.0.1", "port": 0 },
        "database": { "url": "postgres://unused" },
        "auth": { "secret": SECRET },
        "redis": { "url": redis },
        "rate_limit": limits,
    }))
    .unwrap();
    let mut access = command_api::Access::from_settings(&settings).await.unwrap();
    let limiter = access.accounts.limiter.clone().with_clock(clock);
    access.gate.limiter = Some(limiter.clone());
    access.accounts.limiter = limiter;
    let commands = command_api::commands::Commands::new(log, &settings, access.accounts, None);
    command_api::app(commands, access.gate, &settings.server)
}

async fn call(
    router: &axum::Router,
    request: axum::http::Request<Body>,
) -> (StatusCode, axum::http::HeaderMap) {
    let response = router.clone().oneshot(request).await.unwrap();
    (response.status(), response.headers().clone())
}

#[sqlx::test(migrations = false)]
async fn past_its_limit_a_user_gets_429_with_retry_after_until_the_window_has_passed(pool: PgPool) {
    let clock = Arc::new(auth::limit::ManualClock::default());
    clock.advance(Duration::from_secs(1_000_000));
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let router = in_process(
        pool,
        json!({ "prefix": prefix, "rules": [{ "who": "user", "limit": 3, "window_seconds": 60 }],
                "logins_per_account": 2, "logins_per_address": 100 }),
        clock.clone(),
    )
    .await;
    let me = || {
        axum::http::Request::get("/api/v1/auth/me")
            .header("authorization", bearer(&token(Role::User, "7")))
            .body(Body::empty())
            .unwrap()
    };
    for remaining in ["2", "1", "0"] {
        let (status, headers) = call(&router, me()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["ratelimit-limit"], "3");
        assert_eq!(headers["ratelimit-remaining"], remaining);
    }
    let (status, headers) = call(&router, me()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // A service is not limited.
    let service = axum::http::Request::get("/api/v1/auth/me")
        .header("authorization", bearer(&token(Role::Service, "checkout")))
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&router, service).await.0, StatusCode::OK);
    // Once the window has passed (no sleep: the clock moves), allowed again.
    clock.advance(Duration::from_secs(retry));
    assert_eq!(call(&router, me()).await.0, StatusCode::OK);

    // The login limit: per account, whatever the password.
    let login = || {
        axum::http::Request::post("/api/v1/auth/login")
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"email":"someone@example.com","password":"a wrong password"}"#,
            ))
            .unwrap()
    };
    assert_eq!(call(&router, login()).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&router, login()).await.0, StatusCode::UNAUTHORIZED);
    let (status, headers) = call(&router, login()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key("retry-after"));
    clock.advance(Duration::from_secs(60));
    assert_eq!(call(&router, login()).await.0, StatusCode::UNAUTHORIZED);
}

/// Per-address sign-in limits key on the real client: behind a trusted proxy (here the test
/// itself, on 127.0.0.1) the address its `X-Forwarded-For` names, an IPv6 one by its /64;
/// from anyone else the header is ignored and the TCP peer counts.
#[sqlx::test(migrations = false)]
async fn sign_in_limits_count_the_forwarded_client_only_behind_a_trusted_proxy(pool: PgPool) {
    let limits = [
        ("APP_RATE_LIMIT__LOGINS_PER_ADDRESS", "3"),
        ("APP_RATE_LIMIT__LOGINS_PER_ACCOUNT", "100"),
    ];
    let login = |app: &common::TestApp, forwarded: &'static str, n: usize| {
        let request = Client::new()
            .post(format!("{}/api/v1/auth/login", app.base))
            .header("content-type", "application/json")
            .header("x-forwarded-for", forwarded)
            .body(format!(
                r#"{{"email":"guess{n}@example.com","password":"a wrong password"}}"#
            ));
        async move { request.send().await.unwrap().status() }
    };
    let mut trusted = limits.to_vec();
    trusted.push(("APP_SERVER__TRUSTED_PROXIES", "127.0.0.1"));
    let app = common::spawn_with(pool.clone(), &trusted).await;
    // The server counts against the wall clock in windows of a minute: each client's logins
    // must fall in one window, or the count starts again and the 429 never comes.
    in_one_window().await;
    for n in 0..3 {
        assert_eq!(
            login(&app, "203.0.113.7", n).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(&app, "203.0.113.7", 3).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login(&app, "203.0.113.8", 4).await,
        StatusCode::UNAUTHORIZED,
        "another client behind the same proxy has its own budget"
    );
    in_one_window().await;
    for n in 5..8 {
        assert_eq!(
            login(&app, "2001:db8:1:2::1", n).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(&app, "2001:db8:1:2:ffff::9", 8).await,
        StatusCode::TOO_MANY_REQUESTS,
        "one /64 is one client"
    );
    drop(app);

    // Nothing trusted: the header is the client's own words, and the peer counts.
    let app = common::spawn_with(pool, &limits).await;
    in_one_window().await;
    for (n, forwarded) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        .iter()
        .enumerate()
    {
        assert_eq!(login(&app, forwarded, n).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login(&app, "198.51.100.4", 3).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}
