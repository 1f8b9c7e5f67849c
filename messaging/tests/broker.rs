//! Against the real broker of the local stack (`./dev up`): an rdkafka admin client creates
//! a topic, sees it listed with its partitions, and the system topics exist.

use std::time::{SystemTime, UNIX_EPOCH};

use messaging::{ensure_topics, list_topics, system_topics, TopicOutcome};

fn brokers() -> String {
    std::env::var("APP_KAFKA__BROKERS").unwrap_or_else(|_| "127.0.0.1:59092".to_owned())
}

#[tokio::test]
async fn an_rdkafka_client_creates_and_lists_a_topic_on_the_local_broker() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let topic = format!("promo.selftest-{nanos}");
    let created = ensure_topics(&brokers(), std::slice::from_ref(&topic), 2)
        .await
        .expect("broker reachable: is the stack up? (./dev up)");
    assert_eq!(created, vec![(topic.clone(), TopicOutcome::Created)]);

    let again = ensure_topics(&brokers(), std::slice::from_ref(&topic), 2)
        .await
        .expect("second create");
    assert_eq!(again, vec![(topic.clone(), TopicOutcome::AlreadyExisted)]);

    let b = brokers();
    let listed = tokio::task::spawn_blocking(move || list_topics(&b))
        .await
        .expect("join")
        .expect("list");
    assert!(
        listed.contains(&(topic.clone(), 2)),
        "{topic} not in {listed:?}"
    );
    for system_topic in system_topics(messaging::DEFAULT_TOPIC_PREFIX) {
        assert!(
            listed.iter().any(|(name, _)| *name == system_topic),
            "{system_topic} missing: {listed:?}"
        );
    }
    // The test topic is left in place: deleting one topic on tansu 0.6.0 deletes them all
    // (its topic_delete_by.sql filters by cluster only). It lives in the stack's data dir.
}
