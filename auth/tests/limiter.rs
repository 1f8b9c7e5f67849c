//! The rate limiter against the stack's Redis: checks sent together in one round are each
//! counted atomically, keys apart; with Redis gone, requests are let through.

use std::sync::Arc;

use auth::limit::{LimitSettings, ManualClock, RateLimiter};

fn redis_url() -> String {
    std::env::var("APP_REDIS__URL").unwrap_or_else(|_| "redis://127.0.0.1:56379/".into())
}

fn limiter(url: &str) -> RateLimiter {
    let settings = LimitSettings {
        prefix: format!("test-limiter:{}:", uuid_like()),
        ..LimitSettings::default()
    };
    // One fixed instant: every check falls in one window.
    let clock = Arc::new(ManualClock::default());
    clock.advance(std::time::Duration::from_secs(1_000_000));
    RateLimiter::new(settings, url)
        .expect("a Redis URL")
        .with_clock(clock)
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos()
    )
}

#[tokio::test]
async fn concurrent_checks_of_one_key_allow_exactly_the_limit() {
    let limiter = limiter(&redis_url());
    let checks = (0..600).map(|_| {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.count("user:1:*", 100, 60).await })
    });
    let mut allowed = 0;
    let mut remaining_seen = Vec::new();
    for check in checks {
        let verdict = check.await.expect("the check ran");
        assert_eq!(verdict.limit, 100);
        if verdict.allowed {
            allowed += 1;
            remaining_seen.push(verdict.remaining);
        }
        assert!((1..=60).contains(&verdict.reset_seconds), "{verdict:?}");
    }
    assert_eq!(allowed, 100, "exactly the limit goes through");
    remaining_seen.sort_unstable();
    assert_eq!(
        remaining_seen,
        (0..100).collect::<Vec<_>>(),
        "each count seen once"
    );
}

#[tokio::test]
async fn keys_checked_in_one_round_are_counted_apart() {
    let limiter = limiter(&redis_url());
    let checks = (0..300).map(|i| {
        let limiter = limiter.clone();
        let key = format!("user:{}:*", i % 100);
        tokio::spawn(async move { (i % 100, limiter.count(&key, 2, 60).await.allowed) })
    });
    let mut allowed = [0u32; 100];
    for check in checks {
        let (user, ok) = check.await.expect("the check ran");
        allowed[user] += u32::from(ok);
    }
    assert!(allowed.iter().all(|&n| n == 2), "{allowed:?}");
}

#[tokio::test]
async fn with_redis_gone_every_request_is_let_through() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("an address")
        .port();
    let limiter = limiter(&format!("redis://127.0.0.1:{port}/"));
    for _ in 0..5 {
        let verdict = limiter.count("user:1:*", 1, 60).await;
        assert!(verdict.allowed, "{verdict:?}");
    }
}

#[tokio::test]
async fn with_redis_silent_every_request_is_let_through_without_stalling() {
    // A server that accepts connections and never answers (a black hole).
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let port = silent.local_addr().expect("an address").port();
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let limiter = limiter(&format!("redis://127.0.0.1:{port}/"));
    let checks = (0..1_000).map(|_| {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.count("user:1:*", 1, 60).await })
    });
    // Liveness, not speed: each check gives up on Redis within its own bound, so all of them
    // are answered long before this.
    let all = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        futures_join(checks.collect()),
    )
    .await
    .expect("no check stalls");
    assert!(all.iter().all(|v| v.allowed), "all let through");
}

async fn futures_join(
    handles: Vec<tokio::task::JoinHandle<auth::limit::Verdict>>,
) -> Vec<auth::limit::Verdict> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("the check ran"));
    }
    out
}

#[tokio::test]
async fn the_strict_count_holds_when_redis_cannot_count() {
    // A port nothing listens on, and no Redis at all: the process counts by itself.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("an address")
        .port();
    for limiter in [
        limiter(&format!("redis://127.0.0.1:{port}/")),
        RateLimiter::in_process(LimitSettings::default()),
    ] {
        let mut allowed = 0;
        for _ in 0..5 {
            allowed += u32::from(
                limiter
                    .count_strict("login:account:a@b.c", 3, 60)
                    .await
                    .allowed,
            );
        }
        assert_eq!(allowed, 3);
        assert!(
            limiter
                .count_strict("login:account:other@b.c", 3, 60)
                .await
                .allowed
        );
    }
}

#[tokio::test]
async fn a_first_request_goes_through_at_once_yet_is_counted_and_instances_share_the_count() {
    let one = limiter(&redis_url());
    // Another instance: the same prefix and clock, a process of its own.
    let other = RateLimiter::new(one.settings().clone(), &redis_url())
        .expect("a Redis URL")
        .with_clock({
            let clock = Arc::new(ManualClock::default());
            clock.advance(std::time::Duration::from_secs(1_000_000));
            clock
        });
    let first = one.count("user:9:*", 2, 60).await;
    assert!(
        first.allowed && !first.counted,
        "the first here does not wait"
    );
    let second = one.count("user:9:*", 2, 60).await;
    assert!(second.allowed && second.counted);
    assert_eq!(second.remaining, 0, "the first was counted before it");
    assert!(!one.count("user:9:*", 2, 60).await.allowed);
    // The other instance's first request of the key is let through (the one request per key,
    // window and instance the limit may be exceeded by); its next one knows the whole count.
    assert!(other.count("user:9:*", 2, 60).await.allowed);
    let next = other.count("user:9:*", 2, 60).await;
    assert!(!next.allowed && next.counted);
}

#[tokio::test]
async fn the_in_process_count_refuses_rather_than_forgets_when_full() {
    let limiter = RateLimiter::in_process(LimitSettings::default());
    // More addresses guessing at once than the process counts (100,000): the next new one is
    // refused, the ones counted keep their counts.
    for n in 0..100_000 {
        assert!(
            limiter
                .count_strict(&format!("login:address:{n}"), 30, 60)
                .await
                .allowed
        );
    }
    assert!(
        !limiter
            .count_strict("login:address:new", 30, 60)
            .await
            .allowed
    );
    let known = limiter.count_strict("login:address:7", 2, 60).await;
    assert!(known.allowed && known.remaining == 0, "{known:?}");
}
