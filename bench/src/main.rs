//! promo-bench: drives the running system over HTTP on loopback — closed loop (a fixed number
//! of workers each sending its next request when the previous one was answered) or open loop
//! (`--rate`: requests on a fixed schedule, at most `--concurrency` in flight) — then checks
//! the outcome against the event log and the query API. Stops by itself after `--requests`.
//! Prints throughput, latency percentiles, answers by status, and the correctness verdicts.
//!
//! It signs in as the shop would (ADR 11): buyers order, claim coupons and spend points with
//! tokens of their own (so each of those requests is also counted by the rate limiter); the
//! checkout service earns points and the storefront's back end reads, with service tokens;
//! setup is an admin's. Tokens are minted before the load with the services' HS256 secret.

mod checks;
mod run;
mod scenarios;
mod tokens;

use std::sync::Arc;

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::run::Run;
use crate::tokens::Tokens;

#[derive(Parser)]
#[command(about = "Load generator for the promotion back end (loopback only)")]
pub(crate) struct Cli {
    /// The command API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub(crate) command: String,
    /// The query API.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    pub(crate) query: String,
    /// The event log's database, for the correctness checks.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://promo:promo@127.0.0.1:55432/promo"
    )]
    pub(crate) database_url: String,
    /// Concurrent workers (connections); in an open-loop run (`--rate`), the most requests
    /// in flight.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Open loop: send this many requests per second, on schedule, whether or not earlier
    /// ones were answered (latency counts from when a request was due). Without it, closed
    /// loop. In `mixed`, each of the three parts gets a third.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Also print answers, p50, p99 and max second by second (where stalls show).
    #[arg(long)]
    pub(crate) timeline: bool,
    /// Label printed with the results (e.g. whole-system, write-path-alone).
    #[arg(long, default_value = "")]
    pub(crate) label: String,
    /// Measure the write path alone: no freshness sampling and no query-API checks (the
    /// event-log checks still run). For runs where no relay/projector is running.
    #[arg(long)]
    pub(crate) write_only: bool,
    /// A relay publishes this log to Kafka: after the load, report how far behind it was
    /// when the load ended and how long Kafka took to hold every event.
    #[arg(long)]
    pub(crate) relay: bool,
    /// The HS256 secret the services verify tokens with.
    #[arg(
        long,
        env = "APP_AUTH__SECRET",
        default_value = "dev-only-secret-do-not-use-in-production-0000",
        hide_env_values = true
    )]
    pub(crate) auth_secret: String,
    #[command(subcommand)]
    pub(crate) scenario: Scenario,
}

#[derive(Subcommand, Clone)]
enum Scenario {
    /// One time sale of `stock` units; every request orders one unit for a distinct buyer.
    FlashSale {
        #[arg(long, default_value_t = 100_000)]
        stock: i64,
        /// Orders sent in all (defaults to the stock).
        #[arg(long)]
        requests: Option<usize>,
    },
    /// One time sale of `stock` units; every checkout holds a unit for a distinct buyer, then
    /// confirms it (70 %), releases it (20 %) or lets it expire (10 %).
    Holds {
        #[arg(long, default_value_t = 20_000)]
        stock: i64,
        /// Checkouts in all (defaults to the stock).
        #[arg(long)]
        checkouts: Option<usize>,
        /// Each hold's lifetime, in seconds.
        #[arg(long, default_value_t = 5)]
        ttl: i64,
    },
    /// One coupon policy of `total`; every request issues to a distinct user.
    CouponRace {
        #[arg(long, default_value_t = 100_000)]
        total: i64,
        #[arg(long)]
        requests: Option<usize>,
    },
    /// Earn (60 %) and use (40 %) over `users` random users.
    Points {
        #[arg(long, default_value_t = 100_000)]
        users: i64,
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
    },
    /// A flash sale, the points mix and reads at once, a third of the connections each.
    Mixed {
        #[arg(long, default_value_t = 30_000)]
        stock: i64,
        #[arg(long, default_value_t = 100_000)]
        users: i64,
        /// Requests of each of the three kinds.
        #[arg(long, default_value_t = 30_000)]
        requests: usize,
    },
    /// Balance and stock reads, half each.
    Reads {
        #[arg(long, default_value_t = 200_000)]
        requests: usize,
    },
    /// Each request another signed-in user reading their own balance, `users` in all.
    UserReads {
        #[arg(long, default_value_t = 400_000)]
        users: usize,
    },
}

/// What every scenario works with.
pub(crate) struct Context {
    pub(crate) run: Arc<Run>,
    pub(crate) cli: Arc<Cli>,
    /// Sends an admin's token.
    pub(crate) client: reqwest::Client,
    /// The event log, for the checks.
    pub(crate) pool: sqlx::PgPool,
    pub(crate) tokens: Tokens,
    /// `Bearer …` of the checkout service.
    pub(crate) service: String,
    pub(crate) label: String,
    /// When the run started.
    pub(crate) now: DateTime<Utc>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Arc::new(Cli::parse());
    run::show_timeline(cli.timeline);
    let tokens = Tokens::new(&cli.auth_secret)?;
    let service = tokens.bearer(auth::Role::Service, "bench-checkout")?;
    // Setup, checks and the freshness sampler: an admin.
    let mut admin = reqwest::header::HeaderMap::new();
    admin.insert(
        reqwest::header::AUTHORIZATION,
        tokens.bearer(auth::Role::Admin, "bench")?.parse()?,
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(cli.concurrency)
        .default_headers(admin)
        .build()?;
    let run = Arc::new(Run {
        client: client.clone(),
        cli: cli.clone(),
    });
    let pool = sqlx::PgPool::connect(&cli.database_url)
        .await
        .context("connecting to the event log")?;
    let ctx = Context {
        run,
        cli: cli.clone(),
        client,
        pool: pool.clone(),
        tokens,
        service,
        label: cli.label.clone(),
        now: Utc::now(),
    };
    let mut all_ok = match cli.scenario.clone() {
        Scenario::FlashSale { stock, requests } => {
            scenarios::flash_sale::run(ctx, stock, requests).await?
        }
        Scenario::Holds {
            stock,
            checkouts,
            ttl,
        } => scenarios::holds::run(ctx, stock, checkouts, ttl).await?,
        Scenario::CouponRace { total, requests } => {
            scenarios::coupon_race::run(ctx, total, requests).await?
        }
        Scenario::Points { users, requests } => {
            scenarios::points::run(ctx, users, requests).await?
        }
        Scenario::Mixed {
            stock,
            users,
            requests,
        } => scenarios::mixed::run(ctx, stock, users, requests).await?,
        Scenario::Reads { requests } => scenarios::reads::run(ctx, requests).await?,
        Scenario::UserReads { users } => scenarios::user_reads::run(ctx, users).await?,
    };
    if cli.relay {
        all_ok &= checks::report_relay(&pool).await?;
    }
    if !all_ok {
        bail!("a correctness check failed");
    }
    Ok(())
}
