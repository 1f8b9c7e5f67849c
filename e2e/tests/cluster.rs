//! Several command-api instances as one (ADR 15), with real processes: an etcd of the test's
//! own, three instances on one PostgreSQL (the system's own is member `a`), the nginx gateway
//! in front of them, the relay on each (one leads). Every check is against the event log.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use command_api::cluster::ownership::{owner_of, Member};
use e2e::cluster::{member_env, registered, wait_for_members, Gateway, Instance, PrivateEtcd};
use e2e::System;
use serde_json::{json, Value};
use uuid::Uuid;

const NODES: [&str; 3] = ["a", "b", "c"];

/// The system (its command-api is member `a`) and members `b` and `c`, all seeing three
/// members and past the settling time.
async fn three_members(etcd: &PrivateEtcd) -> (System, Vec<Instance>) {
    let env = member_env(etcd, "a");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let system = System::start_with(None, &env).await;
    let others = vec![
        Instance::start(&system, "b").await,
        Instance::start(&system, "c").await,
    ];
    wait_for_members(&[&system.command, &others[0].url, &others[1].url], 3).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    (system, others)
}

fn owner(id: &str) -> String {
    let members: Vec<Member> = NODES
        .iter()
        .map(|n| Member {
            node: (*n).into(),
            address: String::new(),
        })
        .collect();
    owner_of(&members, id.parse::<Uuid>().unwrap())
        .unwrap()
        .node
        .clone()
}

/// What the buyers saw: per idempotency key, the order it got (once settled) and when.
#[derive(Default)]
struct Seen {
    accepted: Vec<(String, String, Instant)>,
    sold_out: bool,
    statuses: HashMap<u16, usize>,
    unsettled: usize,
}

/// Buyers ordering one unit at a time through `url` until `until` or sold out; each order
/// has its own Idempotency-Key and is retried with it after a 5xx or a lost connection, until
/// it settles (at most 30 s).
async fn buy(url: String, sale: String, until: Instant, buyers: usize) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let client = e2e::admin_client();
    let mut tasks = vec![];
    for buyer in 0..buyers {
        let (url, sale, client, seen) = (url.clone(), sale.clone(), client.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < until && !seen.lock().unwrap().sold_out {
                n += 1;
                let key = format!("buyer-{buyer}-{n}-{}", Uuid::new_v4().simple());
                let user = (buyer * 100_000 + n) as i64 + 1;
                let body = json!({ "timeSaleId": sale, "userId": user, "quantity": 1 });
                let give_up = Instant::now() + Duration::from_secs(30);
                loop {
                    let sent = client
                        .post(format!("{url}/api/v1/orders"))
                        .header("idempotency-key", &key)
                        .timeout(Duration::from_secs(20))
                        .json(&body)
                        .send()
                        .await;
                    let status = sent.as_ref().map_or(0, |r| r.status().as_u16());
                    *seen.lock().unwrap().statuses.entry(status).or_default() += 1;
                    match sent {
                        Ok(response) if status == 201 => {
                            let body: Value = response.json().await.unwrap();
                            let order = body["orderId"].as_str().unwrap().to_owned();
                            seen.lock().unwrap().accepted.push((
                                key.clone(),
                                order,
                                Instant::now(),
                            ));
                            break;
                        }
                        Ok(response) if status == 422 => {
                            let body: Value = response.json().await.unwrap();
                            assert_eq!(body["code"], "SOLD_OUT", "{body}");
                            seen.lock().unwrap().sold_out = true;
                            break;
                        }
                        Ok(response) if status != 503 && status < 500 => {
                            panic!("{status}: {}", response.text().await.unwrap())
                        }
                        _ => {}
                    }
                    if Instant::now() > give_up {
                        seen.lock().unwrap().unsettled += 1;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap()
}

/// The orders of the log: order id → how many `order.created` events carry it.
async fn logged_orders(system: &System) -> HashMap<String, usize> {
    let events: Vec<Value> =
        sqlx::query_scalar("SELECT data FROM events WHERE event_type = 'order.created'")
            .fetch_all(&system.pool)
            .await
            .unwrap();
    let mut orders = HashMap::new();
    for data in events {
        *orders
            .entry(data["orderId"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    orders
}

/// Every order a buyer was told about is in the log exactly once, the log holds no other,
/// and one key never got two orders.
async fn check_against_the_log(system: &System, seen: &Seen, quantity: usize) {
    let logged = logged_orders(system).await;
    let accepted: HashSet<&str> = seen.accepted.iter().map(|(_, o, _)| o.as_str()).collect();
    let keys: HashSet<&str> = seen.accepted.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(keys.len(), seen.accepted.len(), "a key settled twice");
    assert_eq!(
        accepted.len(),
        seen.accepted.len(),
        "two keys got one order"
    );
    assert!(logged.values().all(|n| *n == 1), "an order appended twice");
    assert!(
        logged.len() <= quantity,
        "oversold: {} of {quantity}",
        logged.len()
    );
    let in_log: HashSet<&str> = logged.keys().map(String::as_str).collect();
    assert_eq!(accepted, in_log, "the 201s and the log disagree");
    assert_eq!(seen.unsettled, 0, "orders whose retries never settled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_owner_of_a_sale_killed_mid_sale_another_instance_takes_over_and_nothing_is_lost_or_oversold(
) {
    let etcd = PrivateEtcd::start();
    let (mut system, others) = three_members(&etcd).await;
    let gateway = Gateway::start(
        &system.query,
        &[&system.command, &others[0].url, &others[1].url],
    );
    // Created through `a`, which picks an id it owns: `a` also leads the relay (it started
    // first), so killing it tests the relay's standby too.
    // Sold out during the run (~250 orders/s here, debug build, ~10 s): the oversell check
    // bites. The buyers go on until it is, for at most 40 s (a busy machine sells slower).
    const QUANTITY: usize = 2_500;
    let sale = system.open_sale(QUANTITY as i64).await;
    assert_eq!(owner(&sale), "a");

    let started = Instant::now();
    let load = tokio::spawn(buy(
        gateway.url.clone(),
        sale.clone(),
        started + Duration::from_secs(40),
        24,
    ));
    tokio::time::sleep(Duration::from_secs(4)).await;
    system.kill(e2e::COMMAND_API);
    let killed = Instant::now();
    let seen = load.await.unwrap();

    let before = seen
        .accepted
        .iter()
        .filter(|(_, _, at)| *at < killed)
        .map(|(_, _, at)| *at)
        .max();
    let after = seen
        .accepted
        .iter()
        .filter(|(_, _, at)| *at >= killed)
        .map(|(_, _, at)| *at)
        .min();
    let (Some(before), Some(after)) = (before, after) else {
        panic!("no order before or after the kill: {:?}", seen.statuses);
    };
    assert!(
        seen.sold_out,
        "not sold out: {} orders",
        seen.accepted.len()
    );
    eprintln!(
        "three instances, owner killed: {} orders accepted ({:?} answers by status), failover {:?} (last 201 before the kill → first after)",
        seen.accepted.len(),
        seen.statuses,
        after - before
    );
    check_against_the_log(&system, &seen, QUANTITY).await;
    // The relay on `b` or `c` took over from `a`'s: every event reaches Kafka.
    let relay_from = Instant::now();
    system.relayed().await;
    eprintln!(
        "the relay caught up {:?} after the load ended",
        relay_from.elapsed()
    );
    drop(gateway);
    drop(others);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_owner_frozen_past_its_lease_appends_nothing_stale_when_it_resumes() {
    const QUANTITY: usize = 400;
    let etcd = PrivateEtcd::start();
    let (system, mut others) = three_members(&etcd).await;
    // A sale owned by `b`: created through it.
    let b = others.remove(0);
    let admin = e2e::admin_client();
    let sale = system.open_sale_at(&b.url, QUANTITY as i64).await;
    assert_eq!(owner(&sale), "b");

    // Orders stream into b, its writer busy deciding, when it is frozen mid-way.
    let hot_until = Instant::now() + Duration::from_millis(700);
    let hot: Vec<_> = (0..8)
        .map(|t| {
            let (admin, url, sale) = (admin.clone(), b.url.clone(), sale.clone());
            tokio::spawn(async move {
                let mut told = vec![];
                let mut n = 0;
                while Instant::now() < hot_until {
                    n += 1;
                    let sent = admin
                        .post(format!("{url}/api/v1/orders"))
                        .header("idempotency-key", format!("hot-{t}-{n}"))
                        .timeout(Duration::from_secs(30))
                        .json(&json!({ "timeSaleId": sale, "userId": 1_000 + t, "quantity": 1 }))
                        .send()
                        .await;
                    if let Ok(response) = sent {
                        if response.status() == 201 {
                            let body: Value = response.json().await.unwrap();
                            told.push(body["orderId"].as_str().unwrap().to_owned());
                        }
                    }
                }
                told
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // b frozen; orders sent to it directly wait in its sockets, unanswered.
    let frozen = b.freeze();
    let stuck: Vec<_> = (0..20)
        .map(|n| {
            let (admin, url, sale) = (admin.clone(), b.url.clone(), sale.clone());
            let key = format!("stuck-{n}");
            tokio::spawn(async move {
                let sent = admin
                    .post(format!("{url}/api/v1/orders"))
                    .header("idempotency-key", &key)
                    .timeout(Duration::from_secs(30))
                    .json(&json!({ "timeSaleId": sale, "userId": n + 1, "quantity": 1 }))
                    .send()
                    .await;
                (key, sent.map(|r| r.status().as_u16()).unwrap_or(0))
            })
        })
        .collect();
    // Past b's lease (2 s): a and c see two members, and c or a owns the sale. The same
    // orders, with the same keys, go through the others and sell out the rest.
    wait_for_members(&[&system.command, &others[0].url], 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut accepted = HashMap::new();
    let mut sold_out = false;
    for n in 0..QUANTITY as i64 + 20 {
        if sold_out {
            break;
        }
        let key = format!("stuck-{n}");
        let url = if n % 2 == 0 {
            &system.command
        } else {
            &others[0].url
        };
        for _ in 0..50 {
            let response = admin
                .post(format!("{url}/api/v1/orders"))
                .header("idempotency-key", &key)
                .json(&json!({ "timeSaleId": sale, "userId": n + 1, "quantity": 1 }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            if status == 201 {
                accepted.insert(key.clone(), body["orderId"].as_str().unwrap().to_owned());
                break;
            }
            if status == 422 {
                assert_eq!(body["code"], "SOLD_OUT", "{body}");
                sold_out = true;
                break;
            }
            assert_eq!(status, 503, "{body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(sold_out, "the others did not sell the rest of the sale");
    // b resumes: it finds its lease gone and decides nothing it had queued.
    frozen.thaw();
    for task in stuck {
        let (key, status) = task.await.unwrap();
        // Its answer: the stored one (201, replayed) if the others decided the key, else a
        // refusal — never a second order.
        assert!(matches!(status, 201 | 422 | 503), "{key}: {status}");
    }
    let mut told: HashSet<String> = accepted.values().cloned().collect();
    for task in hot {
        told.extend(task.await.unwrap());
    }
    let logged = logged_orders(&system).await;
    assert!(logged.values().all(|n| *n == 1), "an order appended twice");
    assert_eq!(
        logged.len(),
        QUANTITY,
        "oversold or lost: {} orders",
        logged.len()
    );
    let in_log: HashSet<String> = logged.keys().cloned().collect();
    assert!(
        told.is_subset(&in_log),
        "an order answered 201 is not in the log"
    );
    drop(b);
    drop(others);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_etcd_stopped_writes_are_refused_clearly_and_come_back_with_it() {
    let mut etcd = PrivateEtcd::start();
    let (system, others) = three_members(&etcd).await;
    let sale = system.open_sale(100_000).await;
    let order = |n: i64| {
        let (client, url, sale) = (system.client.clone(), system.command.clone(), sale.clone());
        async move {
            let response = client
                .post(format!("{url}/api/v1/orders"))
                .json(&json!({ "timeSaleId": sale, "userId": n, "quantity": 1 }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").is_some();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, retry_after, body)
        }
    };
    // Every order answered 201, to hold against the log at the end.
    let mut told = HashSet::new();
    let mut accepted = |body: &Value| {
        told.insert(body["orderId"].as_str().unwrap().to_owned());
    };
    let (status, _, body) = order(1).await;
    assert_eq!(status, 201, "{body}");
    accepted(&body);
    etcd.stop();
    let stopped = Instant::now();
    // A member stops deciding as soon as its keep-alive fails, and at the latest a handover
    // time after its last good list (a few early 201s may still come); then each refuses
    // what it cannot confirm it owns: 503 with Retry-After, never a decision by two owners.
    let mut refused = 0;
    let mut n = 2;
    while stopped.elapsed() < Duration::from_secs(30) {
        let (status, retry_after, body) = order(n).await;
        n += 1;
        match status {
            201 => {
                assert!(
                    stopped.elapsed() < Duration::from_secs(4),
                    "accepted {:?} after etcd stopped",
                    stopped.elapsed()
                );
                accepted(&body);
            }
            503 => {
                assert!(retry_after, "a 503 without Retry-After");
                assert!(
                    matches!(
                        body["code"].as_str(),
                        Some("MEMBERSHIP_UNKNOWN" | "OWNER_UNAVAILABLE" | "OWNER_MOVING")
                    ),
                    "{body}"
                );
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(refused > 0, "nothing was refused with etcd down");
    etcd.restart();
    let back = Instant::now();
    loop {
        let (status, _, body) = order(n).await;
        n += 1;
        if status == 201 {
            accepted(&body);
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "writes did not come back with etcd"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "etcd stopped 30 s: {refused} writes refused (503), writes back {:?} after etcd",
        back.elapsed()
    );
    let logged = logged_orders(&system).await;
    assert!(logged.values().all(|n| *n == 1), "an order appended twice");
    let in_log: HashSet<String> = logged.into_keys().collect();
    assert_eq!(told, in_log, "the 201s and the log disagree");
    drop(others);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_door_acts_for_no_one_whose_token_it_cannot_verify() {
    use command_api::cluster::proto::{answer::Outcome, commands_client::CommandsClient};
    use command_api::commands::{points, Call, Routed};

    let etcd = PrivateEtcd::start();
    let door = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut env = member_env(&etcd, "a");
    env.push(("APP_CLUSTER__GRPC_PORT".into(), door.to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let system = System::start_with(None, &env).await;
    wait_for_members(&[&system.command], 1).await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    // What a caller that reaches the port sends: points for user 7, as whom it claims to be.
    let client = CommandsClient::connect(format!("http://127.0.0.1:{door}"))
        .await
        .unwrap();
    let earn = serde_json::to_vec(&Routed::EarnPoints(points::Earn {
        user_id: 7,
        amount: 1_000,
        description: "granted over the door".into(),
        expires_at: None,
    }))
    .unwrap();
    let forward = |caller: auth::Principal, credential: Option<String>, n: u32| {
        let call = Call {
            caller,
            key: None,
            request_hash: vec![],
            request_id: format!("door-test-{n}"),
            correlation_id: None,
            traceparent: None,
            forwarded: false,
            credential,
        };
        let forwarded = command_api::cluster::proto::Forwarded {
            call: Some(call.to_proto()),
            command: earn.clone(),
        };
        // Clients of one channel are cheap clones.
        let mut client = client.clone();
        async move {
            match client
                .forward(forwarded)
                .await
                .unwrap()
                .into_inner()
                .outcome
            {
                Some(Outcome::Written(_)) => 201,
                Some(Outcome::Refused(r)) => r.status,
                None => panic!("an answer without an outcome"),
            }
        }
    };
    let service = || auth::Principal {
        subject: "checkout".into(),
        role: auth::Role::Service,
    };
    let user = || auth::Principal {
        subject: "7".into(),
        role: auth::Role::User,
    };
    assert_eq!(
        forward(service(), None, 1).await,
        503,
        "no token: no principal believed (an instance of an older version sends none)"
    );
    assert_eq!(
        forward(service(), Some("not.a.token".into()), 2).await,
        401,
        "a token that does not verify"
    );
    assert_eq!(
        forward(service(), Some(e2e::token(auth::Role::User, "7")), 3).await,
        401,
        "a user's token, claiming to be a service"
    );
    assert_eq!(
        forward(user(), Some(e2e::token(auth::Role::User, "7")), 4).await,
        403,
        "a user's own token: verified, and a user may not grant itself points"
    );
    assert_eq!(
        forward(
            service(),
            Some(e2e::token(auth::Role::Service, "checkout")),
            5
        )
        .await,
        201,
        "the service's own token"
    );
    // Only the last one wrote.
    let earned: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'point.earned'")
            .fetch_one(&system.pool)
            .await
            .unwrap();
    assert_eq!(earned, 1);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_owner_stopped_with_sigterm_exits_within_a_second_and_another_takes_over_before_its_lease_would_have_run_out(
) {
    let etcd = PrivateEtcd::start();
    let (system, mut others) = three_members(&etcd).await;
    let sale = system.open_sale_at(&others[0].url, 1_000).await;
    assert_eq!(owner(&sale), "b");
    let order = |n: i64| {
        let (client, url, sale) = (system.client.clone(), system.command.clone(), sale.clone());
        async move {
            let response = client
                .post(format!("{url}/api/v1/orders"))
                .header("idempotency-key", format!("term-{n}"))
                .json(&json!({ "timeSaleId": sale, "userId": n, "quantity": 1 }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    // Through `a`, forwarded to `b`.
    let (status, body) = order(1).await;
    assert_eq!(status, 201, "{body}");
    let mut told = HashSet::from([body["orderId"].as_str().unwrap().to_owned()]);

    let took = others[0].terminate();
    let stopped = Instant::now();
    assert!(
        took < Duration::from_secs(1),
        "b took {took:?} to stop after SIGTERM"
    );
    // It revoked its lease on the way out: its key is gone now, not a lease time later.
    assert_eq!(registered(&etcd).await, ["a", "c"], "b's key outlived it");
    // b revoked its lease on the way out: a and c see two members at once, not after the
    // lease (2 s) has run out, and one of them owns the sale after the handover (0.5 s).
    let mut n = 2;
    let back = loop {
        let (status, body) = order(n).await;
        n += 1;
        if status == 201 {
            told.insert(body["orderId"].as_str().unwrap().to_owned());
            break stopped.elapsed();
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "no owner took over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("b stopped in {took:?}; writes for its sale back {back:?} after");
    let logged = logged_orders(&system).await;
    assert!(logged.values().all(|n| *n == 1), "an order appended twice");
    let in_log: HashSet<String> = logged.into_keys().collect();
    assert_eq!(told, in_log, "the 201s and the log disagree");
    drop(others);
    system.stop().await;
}
