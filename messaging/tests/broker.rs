//! Against the real broker of the local stack (`./dev up`): an rdkafka admin client creates
//! a topic as a spec says, sees it listed, finds it matching, names what differs from another
//! spec, and deletes it; the system topics exist as the default spec says.

use std::time::{SystemTime, UNIX_EPOCH};

use messaging::{
    check_topics, delete_topics, describe_topics, ensure_topics, system_topics, TopicOutcome,
    TopicSpec,
};

fn brokers() -> String {
    std::env::var("APP_KAFKA__BROKERS").unwrap_or_else(|_| "127.0.0.1:59092".to_owned())
}

async fn listed() -> Vec<messaging::TopicInfo> {
    let b = brokers();
    tokio::task::spawn_blocking(move || describe_topics(&b))
        .await
        .expect("join")
        .expect("list")
}

#[tokio::test]
async fn a_topic_is_created_as_its_spec_says_checked_against_another_and_deleted() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let topic = format!("selftest-{nanos}");
    let topics = std::slice::from_ref(&topic);
    let spec = TopicSpec {
        partitions: 2,
        replication: 1,
        retention_ms: 3_600_000,
    };
    let created = ensure_topics(&brokers(), topics, &spec)
        .await
        .expect("broker reachable: is the stack up? (./dev up)");
    assert_eq!(created, vec![(topic.clone(), TopicOutcome::Created)]);
    let again = ensure_topics(&brokers(), topics, &spec)
        .await
        .expect("second create");
    assert_eq!(again, vec![(topic.clone(), TopicOutcome::AlreadyExisted)]);

    let info = listed().await.into_iter().find(|t| t.name == topic);
    assert_eq!(
        info.map(|t| (t.partitions, t.replicas)),
        Some((2, 1)),
        "{topic}"
    );
    assert_eq!(
        check_topics(&brokers(), topics, &spec)
            .await
            .expect("check"),
        Vec::<String>::new()
    );
    let other = TopicSpec {
        partitions: 6,
        retention_ms: -1,
        ..spec
    };
    assert_eq!(
        check_topics(&brokers(), topics, &other)
            .await
            .expect("check"),
        vec![
            format!("{topic}: 2 partitions, the settings say 6"),
            format!("{topic}: retention.ms is 3600000, the settings say -1"),
        ]
    );

    delete_topics(&brokers(), topics).await.expect("delete");
    // Deletion is asynchronous on the controller: the metadata drops it soon after.
    let mut gone = false;
    for _ in 0..50 {
        if !listed().await.iter().any(|t| t.name == topic) {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "{topic} still listed after its deletion");
    assert_eq!(
        check_topics(&brokers(), topics, &spec)
            .await
            .expect("check"),
        vec![format!("{topic}: missing")]
    );
}

#[tokio::test]
async fn the_stack_holds_the_system_topics_as_the_default_spec_says() {
    let differences = check_topics(
        &brokers(),
        &system_topics(messaging::DEFAULT_TOPIC_PREFIX),
        &TopicSpec::default(),
    )
    .await
    .expect("broker reachable: is the stack up? (./dev up)");
    assert_eq!(differences, Vec::<String>::new());
}
