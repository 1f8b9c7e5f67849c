//! What Kafka transactions would cost the relay (ADR 13): publishes the same events in relay
//! rounds (2,000 envelopes of ~1 KB, waiting for every acknowledgement) with the relay's
//! idempotent producer and with a transactional one (a transaction per round), alternating,
//! on a fresh 6-partition topic, and prints events/s and round latencies for each.
//!
//!   cargo run --release -p messaging --example relay-transactions -- [brokers] [events] [rounds]

use std::time::{Duration, Instant};

use messaging::{producer_config, TopicSpec, DEFAULT_MAX_REQUEST_BYTES};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

const ROUND: usize = 2_000;

async fn publish(
    producer: &FutureProducer,
    topic: &str,
    events: usize,
    transactional: bool,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let payload = vec![b'x'; 1_000];
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut sent = 0;
    while sent < events {
        let round = Instant::now();
        if transactional {
            producer.begin_transaction()?;
        }
        let mut deliveries = Vec::with_capacity(ROUND);
        for i in sent..(sent + ROUND).min(events) {
            let key = format!("aggregate-{}", i % 997);
            let record = FutureRecord::to(topic).key(&key).payload(&payload);
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
        sent += deliveries.len();
        if transactional {
            tokio::task::block_in_place(|| producer.commit_transaction(Duration::from_secs(30)))?;
        }
        for delivery in deliveries {
            delivery.await?.map_err(|(e, _)| e)?;
        }
        latencies.push(round.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((events as f64 / started.elapsed().as_secs_f64(), latencies))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let brokers = args.next().unwrap_or_else(|| "127.0.0.1:59092".into());
    let events: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    let topic = format!("txbench-{}", uuid::Uuid::new_v4().simple());
    messaging::ensure_topics(
        &brokers,
        std::slice::from_ref(&topic),
        &TopicSpec::default(),
    )
    .await?;

    let plain: FutureProducer = producer_config(&brokers, DEFAULT_MAX_REQUEST_BYTES).create()?;
    let mut config = producer_config(&brokers, DEFAULT_MAX_REQUEST_BYTES);
    config.set("transactional.id", format!("{topic}-relay"));
    let transactional: FutureProducer = config.create()?;
    tokio::task::block_in_place(|| transactional.init_transactions(Duration::from_secs(30)))?;

    for round in 1..=rounds {
        for (name, producer, tx) in [
            ("idempotent", &plain, false),
            ("transactional", &transactional, true),
        ] {
            let (rate, mut latencies) = publish(producer, &topic, events, tx).await?;
            latencies.sort_by(f64::total_cmp);
            println!(
                "round {round} {name:>13}: {rate:>8.0} events/s, a round of {ROUND}: p50 {:.1} ms, p99 {:.1} ms",
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.99)
            );
        }
    }
    messaging::delete_topics(&brokers, std::slice::from_ref(&topic)).await?;
    Ok(())
}
