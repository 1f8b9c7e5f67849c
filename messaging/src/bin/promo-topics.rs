//! `promo-topics`: creates the system's Kafka topics (idempotently) or lists the broker's.

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Create or list the promotion system's Kafka topics")]
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

#[derive(Subcommand)]
enum Command {
    /// Create every system topic (or the named ones) unless it exists.
    Create {
        /// Partitions per topic. The system's topics must have 1: the projector's watermark
        /// relies on each category arriving in log-position order (ADR 6).
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Topic names; all system topics when none are given.
        topics: Vec<String>,
    },
    /// List the broker's topics with their partition counts.
    List,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Create { partitions, topics } => {
            let topics = if topics.is_empty() {
                messaging::system_topics(&cli.prefix)
            } else {
                topics
            };
            let outcomes = messaging::ensure_topics(&cli.brokers, &topics, partitions)
                .await
                .context("creating topics")?;
            for (topic, outcome) in outcomes {
                println!("{topic}\t{outcome:?}");
            }
        }
        Command::List => {
            let brokers = cli.brokers.clone();
            let topics = tokio::task::spawn_blocking(move || messaging::list_topics(&brokers))
                .await?
                .context("listing topics")?;
            for (topic, partitions) in topics {
                println!("{topic}\t{partitions}");
            }
        }
    }
    Ok(())
}
