//! `replay-tools`: rebuild, verify, republish, stream. See the README's "Operating" section.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use replay_tools::{Projection, Target};

#[derive(Debug, Parser)]
#[command(
    name = "replay-tools",
    version,
    about = "Rebuild, verify and re-publish read models and events from the event log"
)]
struct Cli {
    /// The event log's (and read models') PostgreSQL database.
    #[arg(
        long,
        env = "APP_DATABASE__URL",
        default_value = "postgres://promo:promo@127.0.0.1:55432/promo",
        hide_env_values = true
    )]
    database_url: String,
    #[arg(
        long,
        env = "APP_REDIS__URL",
        default_value = "redis://127.0.0.1:56379/"
    )]
    redis_url: String,
    /// The deployment's base read-model schema (as in the projector's and query API's settings).
    #[arg(long, env = "APP_SCHEMA", default_value = "rm")]
    schema: String,
    /// The deployment's base Redis key prefix.
    #[arg(long, env = "APP_REDIS__PREFIX", default_value = "promo:")]
    prefix: String,
    /// Serve Prometheus `/metrics` here while the command runs (e.g. 127.0.0.1:9185): the
    /// progress of a long rebuild, verify or republish as `replay_progress_events` out of
    /// `replay_target_events`.
    #[arg(long, env = "APP_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    All,
    Coupons,
    Points,
    Sales,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay the log into a new read-model generation, switch to it, drop the old one.
    Rebuild {
        /// The projection to rebuild from the log; the others are carried over. Repeatable.
        #[arg(long = "projection", value_enum, default_value = "all")]
        projections: Vec<Which>,
        /// How long readers get to follow the switch before the old generation is dropped.
        #[arg(long, default_value_t = 2_000)]
        grace_ms: u64,
    },
    /// Compare the live read models with a projection of the log; exit 1 on any difference.
    /// Parked events are listed as parked, not counted as differences.
    Verify,
    /// List the events the projector parked (it could not apply them), with their errors.
    Parked {
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Project parked events again, once their cause is gone; what still fails stays parked.
    /// Exit 1 when some are still parked.
    Retry {
        /// Only the aggregate of the parked event at this position (repeatable); default: all.
        #[arg(long = "position")]
        positions: Vec<i64>,
    },
    /// Re-send the log's events FROM..=TO to Kafka with the relay's envelopes and keys.
    Republish {
        #[arg(long)]
        from: i64,
        /// Default: the log's head.
        #[arg(long)]
        to: Option<i64>,
        /// Send every event to this topic instead of its category's topic.
        #[arg(long)]
        topic: Option<String>,
        #[arg(long, env = "APP_KAFKA__BROKERS", default_value = "127.0.0.1:59092")]
        brokers: String,
        #[arg(long, env = "APP_KAFKA__TOPIC_PREFIX", default_value = "promo.")]
        topic_prefix: String,
    },
    /// Print an aggregate's events and its state after each.
    Stream {
        /// coupon, point, product or timesale.
        #[arg(value_name = "TYPE")]
        kind: String,
        /// The aggregate id (a point account also by its user id).
        id: String,
        /// Only events at or below this log position: the aggregate as it was then.
        #[arg(long)]
        as_of: Option<i64>,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Set once `/metrics` is served.
static METRICS: std::sync::OnceLock<()> = std::sync::OnceLock::new();

/// Serves `/metrics` on `addr` in the background for the rest of the run.
async fn serve_metrics(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    service::metrics::install("replay-tools");
    let app = axum::Router::new().route("/metrics", axum::routing::get(service::metrics::scrape));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics server stopped");
        }
    });
    let _ = METRICS.set(());
    Ok(())
}

/// A progress bar for `command`; with `--metrics-addr`, its position and length are the
/// `replay_progress_events` and `replay_target_events` gauges too, sampled every second.
fn bar(command: &'static str, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(1);
    if METRICS.get().is_some() {
        let sampled = bar.clone();
        tokio::spawn(async move {
            let progress = metrics::gauge!("replay_progress_events", "command" => command);
            let target = metrics::gauge!("replay_target_events", "command" => command);
            loop {
                let finished = sampled.is_finished();
                progress.set(sampled.position() as f64);
                target.set(sampled.length().unwrap_or(0) as f64);
                if finished {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_owned());
    bar
}

#[tokio::main]
async fn main() -> ExitCode {
    service::init_logging(&service::LogSettings {
        format: "pretty".into(),
        // sqlx flags every statement over 1 s; a bulk copy or a big page is expected to be.
        level: "warn,sqlx::query=error".into(),
    });
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(addr) = cli.metrics_addr {
        serve_metrics(addr).await?;
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&cli.database_url)
        .await?;
    let target = Target {
        pool,
        redis_url: cli.redis_url,
        base: cli.schema,
        prefix: cli.prefix,
    };
    match cli.command {
        Command::Rebuild {
            projections,
            grace_ms,
        } => {
            let chosen: Vec<Projection> = if projections.contains(&Which::All) {
                Projection::ALL.to_vec()
            } else {
                projections
                    .iter()
                    .map(|w| match w {
                        Which::Coupons => Projection::Coupons,
                        Which::Points => Projection::Points,
                        Which::All | Which::Sales => Projection::Sales,
                    })
                    .collect()
            };
            let report = replay_tools::rebuild(
                &target,
                &chosen,
                Duration::from_millis(grace_ms),
                &bar("rebuild", "replaying (log position)"),
            )
            .await?;
            println!(
                "rebuilt {:?}: {} events applied ({} parked) in {:.2} s ({:.0} events/s); every event up to position {} is in {}; \
                 switched {} → {} and dropped {}",
                chosen,
                report.events,
                report.parked,
                report.elapsed.as_secs_f64(),
                report.events_per_second(),
                report.position,
                report.to.schema,
                report.from.schema,
                report.to.schema,
                report.from.schema,
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify => {
            let report =
                replay_tools::verify(&target, &bar("verify", "projecting (log position)")).await?;
            for difference in &report.differences {
                println!("DIFF {difference}");
            }
            for event in &report.parked {
                println!("PARKED {}", describe(event));
            }
            println!(
                "{} difference(s); compared {} rows and {} Redis keys against {} events replayed in {:.2} s",
                report.differences.len(),
                report.rows,
                report.keys,
                report.replayed.read,
                report.elapsed.as_secs_f64()
            );
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Parked { json } => {
            let parked = replay_tools::parked(&target).await?;
            for event in &parked {
                if json {
                    println!("{}", serde_json::to_string(&parked_json(event))?);
                } else {
                    println!("{}", describe(event));
                }
            }
            if !json {
                println!("{} parked event(s)", parked.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Retry { positions } => {
            let report = replay_tools::retry(&target, &positions).await?;
            for event in &report.still_parked {
                println!("STILL PARKED {}", describe(event));
            }
            println!(
                "retried {} parked event(s): {} applied, {} still parked",
                report.retried,
                report.applied,
                report.still_parked.len()
            );
            Ok(if report.still_parked.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Republish {
            from,
            to,
            topic,
            brokers,
            topic_prefix,
        } => {
            let started = std::time::Instant::now();
            let sent = replay_tools::republish(
                &target.log(),
                &brokers,
                &topic_prefix,
                from,
                to,
                topic.as_deref(),
                &bar("republish", "re-publishing (events)"),
            )
            .await?;
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "re-published {sent} events in {seconds:.2} s ({:.0} events/s), every one acknowledged",
                sent as f64 / seconds.max(1e-9)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Stream {
            kind,
            id,
            as_of,
            json,
        } => {
            let entries = replay_tools::stream(&target.log(), &kind, &id, as_of).await?;
            for entry in &entries {
                if json {
                    println!("{}", serde_json::to_string(entry)?);
                } else {
                    let upcast = if entry.read_version == entry.stored_version {
                        String::new()
                    } else {
                        format!(" (stored v{}, upcast)", entry.stored_version)
                    };
                    println!(
                        "#{} v{} {} v{}{} at {}\n  data:  {}\n  state: {}",
                        entry.position,
                        entry.version,
                        entry.event_type,
                        entry.read_version,
                        upcast,
                        entry.recorded_at,
                        entry.data,
                        entry.state
                    );
                }
            }
            if entries.is_empty() {
                eprintln!("no events");
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One parked event on one line.
fn describe(event: &readmodel::parked::Parked) -> String {
    format!(
        "#{} {} {} v{} (parked {}, {} attempt(s)): {}",
        event.position,
        event.event_type,
        event.aggregate_id,
        event.version,
        event.parked_at.format("%Y-%m-%dT%H:%M:%SZ"),
        event.attempts,
        event.error
    )
}

fn parked_json(event: &readmodel::parked::Parked) -> serde_json::Value {
    serde_json::json!({
        "position": event.position, "eventType": event.event_type, "aggregateId": event.aggregate_id,
        "category": event.category, "version": event.version, "entityId": event.entity_id,
        "userId": event.user_id, "error": event.error, "attempts": event.attempts,
        "parkedAt": event.parked_at,
    })
}
