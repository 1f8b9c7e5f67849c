//! An outside consumer's view of a system's Kafka topics: a fresh consumer group reading from
//! offset 0, as a service outside this system would.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::System;

impl System {
    /// Reads this system's topics from the start with a fresh consumer group, as an outside
    /// consumer would, until at least `at_least` distinct events arrived (re-published
    /// duplicates are kept but not counted): (key, payload) in the order each partition
    /// delivered them.
    pub async fn consume(&self, at_least: usize) -> Vec<(String, Value)> {
        self.consume_from(&messaging::system_topics(&self.topic_prefix), at_least)
            .await
    }

    /// The event ids an outside consumer reads from offset 0 ([`System::consume`]).
    pub async fn published_event_ids(&self, at_least: usize) -> BTreeSet<String> {
        self.consume(at_least)
            .await
            .iter()
            .map(|(_, m)| m["eventId"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The id of every event in the log.
    pub async fn logged_event_ids(&self) -> BTreeSet<String> {
        sqlx::query_scalar::<_, String>("SELECT event_id::text FROM events")
            .fetch_all(&self.pool)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    /// [`System::consume`] from one topic.
    pub async fn consume_topic(&self, topic: &str, at_least: usize) -> Vec<(String, Value)> {
        self.consume_from(&[topic.to_owned()], at_least).await
    }

    async fn consume_from(&self, topics: &[String], at_least: usize) -> Vec<(String, Value)> {
        self.consume_messages(topics, at_least)
            .await
            .into_iter()
            .map(|m| (m.key, m.payload))
            .collect()
    }

    /// [`System::consume`] with each message's headers.
    pub async fn consume_with_headers(&self, at_least: usize) -> Vec<Consumed> {
        let topics = messaging::system_topics(&self.topic_prefix);
        self.consume_messages(&topics, at_least).await
    }

    async fn consume_messages(&self, topics: &[String], at_least: usize) -> Vec<Consumed> {
        use rdkafka::consumer::{Consumer, StreamConsumer};
        use rdkafka::message::Headers;
        use rdkafka::Message;
        let group = format!("outside-{}", uuid::Uuid::new_v4().simple());
        let consumer: StreamConsumer = messaging::consumer_config(&self.brokers, &group)
            .create()
            .unwrap();
        consumer
            .subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())
            .unwrap();
        let mut messages = Vec::new();
        let mut distinct = std::collections::HashSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while distinct.len() < at_least {
            let message = tokio::time::timeout_at(deadline, consumer.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("only {} of {at_least} messages arrived", messages.len())
                })
                .unwrap();
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            let payload: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
            let headers = message.headers().map_or_else(Vec::new, |headers| {
                headers
                    .iter()
                    .map(|h| {
                        let value = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                        (h.key.to_owned(), value.unwrap_or_default())
                    })
                    .collect()
            });
            distinct.insert(payload["eventId"].as_str().unwrap_or_default().to_owned());
            messages.push(Consumed {
                key,
                payload,
                headers,
            });
        }
        messages
    }
}

/// A message an outside consumer read: key, JSON payload, headers.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub key: String,
    pub payload: Value,
    pub headers: Vec<(String, String)>,
}
