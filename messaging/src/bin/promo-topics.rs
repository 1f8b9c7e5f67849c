//! `promo-topics`: creates the system's Kafka topics (idempotently) and checks them against
//! the settings, lists the broker's, or deletes a deployment's.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use messaging::TopicSpec;

#[derive(Parser)]
#[command(about = "Create, check, list or delete the promotion system's Kafka topics")]
struct Cli {
    /// Kafka bootstrap servers.
    #[arg(long, env = "APP_KAFKA__BROKERS", default_value = "127.0.0.1:59092")]
    brokers: String,
    /// Prefix of the system's topic names.
    #[arg(long, env = "APP_KAFKA__TOPIC_PREFIX", default_value = messaging::DEFAULT_TOPIC_PREFIX)]
    prefix: String,
    #[command(subcommand)]
    command: Command,
}

/// How every system topic is made (messaging::TopicSpec).
#[derive(Args)]
struct Spec {
    /// Partitions per topic. An aggregate's events share a partition (keyed by its id), so
    /// any count keeps their order.
    #[arg(long, env = "APP_KAFKA__PARTITIONS", default_value_t = messaging::DEFAULT_PARTITIONS,
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    partitions: i32,
    /// Replicas per partition: 1 on a single broker, 3 on a cluster (min.insync.replicas 2).
    #[arg(long, env = "APP_KAFKA__REPLICATION", default_value_t = 1,
          value_parser = clap::value_parser!(i32).range(1..=5))]
    replication: i32,
    /// retention.ms of each topic (-1: for ever).
    #[arg(long, env = "APP_KAFKA__RETENTION_MS", default_value_t = messaging::DEFAULT_RETENTION_MS,
          allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(-1..))]
    retention_ms: i64,
}

impl From<&Spec> for TopicSpec {
    fn from(spec: &Spec) -> Self {
        TopicSpec {
            partitions: spec.partitions,
            replication: spec.replication,
            retention_ms: spec.retention_ms,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create every system topic (or the named ones) unless it exists, then check them all;
    /// exits 1, naming each difference, when an existing topic differs from the settings.
    Create {
        #[command(flatten)]
        spec: Spec,
        /// Topic names; all system topics when none are given.
        topics: Vec<String>,
    },
    /// Check the system topics (or the named ones) against the settings without changing
    /// anything; exits 1, naming each difference, when one is missing or differs.
    Check {
        #[command(flatten)]
        spec: Spec,
        /// Topic names; all system topics when none are given.
        topics: Vec<String>,
    },
    /// List the broker's topics with their partitions and replicas.
    List,
    /// Delete the system topics under the prefix (or the named ones): what they hold is
    /// gone, though the event log keeps every event (`replay-tools republish`).
    Delete {
        /// Topic names; all system topics when none are given.
        topics: Vec<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let named = |topics: Vec<String>| {
        if topics.is_empty() {
            messaging::system_topics(&cli.prefix)
        } else {
            topics
        }
    };
    let differences = match cli.command {
        Command::Create { spec, topics } => {
            let (spec, topics) = (TopicSpec::from(&spec), named(topics));
            let outcomes = messaging::ensure_topics(&cli.brokers, &topics, &spec)
                .await
                .context("creating topics")?;
            for (topic, outcome) in outcomes {
                println!("{topic}\t{outcome:?}");
            }
            messaging::check_topics(&cli.brokers, &topics, &spec).await
        }
        Command::Check { spec, topics } => {
            let (spec, topics) = (TopicSpec::from(&spec), named(topics));
            messaging::check_topics(&cli.brokers, &topics, &spec).await
        }
        Command::List => {
            let brokers = cli.brokers.clone();
            let topics = tokio::task::spawn_blocking(move || messaging::describe_topics(&brokers))
                .await?
                .context("listing topics")?;
            for topic in topics {
                println!(
                    "{}\t{} partitions\t{} replicas",
                    topic.name, topic.partitions, topic.replicas
                );
            }
            return Ok(());
        }
        Command::Delete { topics } => {
            let topics = named(topics);
            messaging::delete_topics(&cli.brokers, &topics)
                .await
                .context("deleting topics")?;
            for topic in topics {
                println!("{topic}\tDeleted");
            }
            return Ok(());
        }
    }
    .context("checking topics")?;
    if differences.is_empty() {
        return Ok(());
    }
    for difference in &differences {
        eprintln!("{difference}");
    }
    anyhow::bail!(
        "{} topic setting(s) differ from the settings (an existing topic is never changed: \
         re-create it, or change the settings)",
        differences.len()
    )
}
