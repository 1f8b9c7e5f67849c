//! projector: telemetry → settings → consume until Ctrl-C or SIGTERM (the batch in hand is
//! finished first).

use projector::settings::Settings;
use tracing_subscriber::{fmt, EnvFilter};

/// mimalloc: the profile of a flash sale showed ~37 % of command-api's CPU in glibc malloc/free
/// (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log.level));
    if settings.log.format == "pretty" {
        fmt().with_env_filter(filter).pretty().init();
    } else {
        fmt()
            .with_env_filter(filter)
            .json()
            .flatten_event(true)
            .init();
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutdown signal received; finishing the batch in hand");
        let _ = stop.send(true);
    });
    projector::run(settings, stopped).await?;
    Ok(())
}
