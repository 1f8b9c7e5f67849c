//! The relay against a three-node Apache Kafka cluster (replication factor 3,
//! `min.insync.replicas=2`) that loses one broker under load: the node leading most of the
//! system's partitions is killed with SIGKILL mid-load and started again 5 s later. The relay
//! goes on by itself, and an outside consumer group of two members, reading from offset 0 all
//! along, gets every event of the log, each aggregate's in order. Duplicates, if any, are
//! counted and printed with their cause (a partition handed between members before its offset
//! was committed); none come from the producer, which is idempotent.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::servers::KafkaCluster;
use e2e::System;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// What the group's members received, in arrival order: (member, partition-topic, payload).
type Received = Arc<Mutex<Vec<(usize, String, Value)>>>;

/// One member of the outside group, as a careful consumer is written: it reads from offset 0
/// (a new group), takes what has arrived (up to 500 messages), and commits their offsets
/// synchronously — retrying while the group's coordinator is away — before it takes more, so
/// a partition handed to the other member is resumed where this one stopped.
async fn member(
    brokers: String,
    group: String,
    topics: Vec<String>,
    index: usize,
    received: Received,
    stop: Arc<AtomicBool>,
) {
    let consumer: StreamConsumer = messaging::consumer_config(&brokers, &group)
        .create()
        .unwrap();
    consumer
        .subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    while !stop.load(Ordering::Relaxed) {
        let mut offsets = TopicPartitionList::new();
        let mut wait = Duration::from_millis(500);
        for _ in 0..500 {
            let Ok(message) = tokio::time::timeout(wait, consumer.recv()).await else {
                break;
            };
            wait = Duration::from_millis(5);
            // A broker going away surfaces as transient errors the client recovers from.
            let Ok(message) = message else { continue };
            let payload: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
            let place = format!(
                "{}/{}@{}",
                message.topic(),
                message.partition(),
                message.offset()
            );
            received.lock().unwrap().push((index, place, payload));
            offsets
                .add_partition_offset(
                    message.topic(),
                    message.partition(),
                    Offset::Offset(message.offset() + 1),
                )
                .unwrap();
        }
        if offsets.count() == 0 {
            continue;
        }
        for _ in 0..100 {
            match tokio::task::block_in_place(|| consumer.commit(&offsets, CommitMode::Sync)) {
                Ok(()) => break,
                // A partition revoked meanwhile: its new owner resumes from the last commit.
                Err(KafkaError::ConsumerCommit(
                    RDKafkaErrorCode::RebalanceInProgress | RDKafkaErrorCode::IllegalGeneration,
                )) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

/// Clients that place orders on one sale and earn points for many users until `stop`.
async fn load(system_command: String, sale: String, stop: Arc<AtomicBool>) -> (u64, u64) {
    let client = e2e::admin_client();
    let (mut accepted, mut failed) = (0, 0);
    let mut n: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (path, body) = if n % 3 == 0 {
            (
                "/api/v1/points/earn",
                json!({ "userId": n % 500 + 1, "amount": 1, "description": "load" }),
            )
        } else {
            (
                "/api/v1/orders",
                json!({ "timeSaleId": sale, "userId": n % 10_000 + 1, "quantity": 1 }),
            )
        };
        match client
            .post(format!("{system_command}{path}"))
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status() == StatusCode::CREATED => accepted += 1,
            _ => failed += 1,
        }
    }
    (accepted, failed)
}

/// The node (0-based index) leading most partitions of `topics`.
fn busiest_leader(brokers: &str, topics: &[String]) -> usize {
    let client: rdkafka::consumer::BaseConsumer =
        messaging::client_config(brokers).create().unwrap();
    let metadata = client
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let mut led: BTreeMap<i32, usize> = BTreeMap::new();
    for topic in metadata
        .topics()
        .iter()
        .filter(|t| topics.iter().any(|n| n == t.name()))
    {
        for partition in topic.partitions() {
            *led.entry(partition.leader()).or_default() += 1;
        }
    }
    let (id, _) = led.into_iter().max_by_key(|(_, count)| *count).unwrap();
    // Node ids are 1, 2, 3 in the cluster's order.
    usize::try_from(id - 1).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_three_brokers_killed_under_load_loses_nothing_and_the_relay_goes_on() {
    let mut cluster = tokio::task::spawn_blocking(KafkaCluster::start)
        .await
        .unwrap();
    let system = System::start_on(None, Some(cluster.brokers()), &[]).await;
    let topics = messaging::system_topics(&system.topic_prefix);
    assert_eq!(
        messaging::check_topics(
            &cluster.brokers(),
            &topics,
            &System::topic_spec(&cluster.brokers())
        )
        .await
        .unwrap(),
        Vec::<String>::new(),
        "the topics are replicated three times, two in sync"
    );
    let sale = system.open_sale(1_000_000).await;

    let received: Received = Arc::default();
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let group = format!("outside-{}", uuid::Uuid::new_v4().simple());
    let members: Vec<_> = (0..2)
        .map(|index| {
            tokio::spawn(member(
                cluster.brokers(),
                group.clone(),
                topics.clone(),
                index,
                received.clone(),
                stop_consumers.clone(),
            ))
        })
        .collect();

    let stop_load = Arc::new(AtomicBool::new(false));
    // Four clients: enough to keep every partition busy, few enough that the relay (at idle
    // CPU priority) is not starved on 2 cores, so a stall is the broker's loss and nothing else.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(load(
                system.command.clone(),
                sale.clone(),
                stop_load.clone(),
            ))
        })
        .collect();

    let load_started = Instant::now();
    // The relay's checkpoint, sampled every 100 ms from the start of the load to the end.
    let pool = system.pool.clone();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let started = Instant::now();
            while sampling.load(Ordering::Relaxed) {
                let checkpoint = relay::checkpoint(&pool).await.unwrap_or(-1);
                let head = eventlog::EventLog::from_pool(pool.clone())
                    .head()
                    .await
                    .unwrap_or(-1);
                samples.push((started.elapsed(), checkpoint, head));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        })
    };

    tokio::time::sleep(Duration::from_secs(8)).await;
    let victim = busiest_leader(&cluster.brokers(), &topics);
    let killed_at = Instant::now();
    let kill_offset = load_started.elapsed();
    cluster.kill(victim);
    eprintln!("killed node {} (index {victim})", victim + 1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.restart(victim);
        cluster
    })
    .await
    .unwrap();
    eprintln!("node {} back after {:?}", victim + 1, killed_at.elapsed());
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop_load.store(true, Ordering::Relaxed);
    let (mut accepted, mut failed) = (0, 0);
    for client in clients {
        let (a, f) = client.await.unwrap();
        accepted += a;
        failed += f;
    }

    // Everything committed reaches Kafka, and the group reads all of it.
    let head = system.relayed().await;
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    let logged = system.logged_event_ids().await;
    assert_eq!(logged.len() as i64, head);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let distinct: BTreeSet<String> = received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, m)| m["eventId"].as_str().unwrap().to_owned())
            .collect();
        if distinct.len() >= logged.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_consumers.store(true, Ordering::Relaxed);
    for member in members {
        member.await.unwrap();
    }

    let received = received.lock().unwrap().clone();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut by_member = [0usize; 2];
    for (index, _, message) in &received {
        *seen
            .entry(message["eventId"].as_str().unwrap().to_owned())
            .or_default() += 1;
        by_member[*index] += 1;
    }
    let distinct: BTreeSet<String> = seen.keys().cloned().collect();
    let missing: Vec<&String> = logged.difference(&distinct).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events never reached the group, e.g. {missing:?}",
        logged.len() - logged.intersection(&distinct).count(),
        logged.len()
    );
    assert_eq!(distinct, logged, "the group read exactly the log's events");

    // Per-aggregate order: the first arrival of each version comes in version order, 1, 2, ….
    let mut versions: HashMap<String, Vec<i64>> = HashMap::new();
    let mut first_seen: BTreeSet<String> = BTreeSet::new();
    for (_, _, message) in &received {
        if first_seen.insert(message["eventId"].as_str().unwrap().to_owned()) {
            versions
                .entry(message["aggregateId"].as_str().unwrap().to_owned())
                .or_default()
                .push(message["aggregateVersion"].as_i64().unwrap());
        }
    }
    for (aggregate, seen) in &versions {
        let expected: Vec<i64> = (1..=seen.len() as i64).collect();
        assert_eq!(seen, &expected, "aggregate {aggregate}: out of order");
    }

    // The relay's longest stall while it was behind: from a checkpoint until the next move.
    let (mut stall, mut stall_from) = (Duration::ZERO, Duration::ZERO);
    let mut since: Option<(Duration, i64)> = None;
    for (at, checkpoint, head) in &samples {
        match since {
            Some((from, value)) if *checkpoint == value && head > checkpoint => {
                if *at - from > stall {
                    (stall, stall_from) = (*at - from, from);
                }
            }
            Some((_, value)) if *checkpoint == value => {}
            _ => since = Some((*at, *checkpoint)),
        }
    }
    // A duplicate is re-read (the same offset twice: a partition handed between members, or a
    // member resuming, before the offset was committed) or re-published (one event at two
    // offsets: the relay sent it twice).
    let mut places: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for (_, place, message) in &received {
        places
            .entry(message["eventId"].as_str().unwrap())
            .or_default()
            .insert(place.as_str());
    }
    let republished: usize = places.values().map(|p| p.len() - 1).sum();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    let reread = duplicates - republished;
    eprintln!(
        "three brokers, one killed: {accepted} commands accepted ({failed} refused or failed), \
         {} events in the log, {} messages to the group ({} and {} per member), {reread} re-read \
         and {republished} re-published duplicate(s), \
         the relay's longest stall {stall:?} from {stall_from:?} (the kill at {kill_offset:?})",
        logged.len(),
        received.len(),
        by_member[0],
        by_member[1]
    );
    assert!(accepted > 500, "the load ran: {accepted} accepted");
    // The relay's producer is idempotent: a leader's loss is retried inside its 30 s delivery
    // timeout, so no round fails and nothing is sent twice.
    assert_eq!(republished, 0, "events the relay published twice");
    assert!(
        stall < Duration::from_secs(30),
        "the relay did not go on by itself: stalled {stall:?}"
    );
    system.stop().await;
    drop(cluster);
}
