//! query-api: telemetry → settings → application → serve until Ctrl-C or SIGTERM.

use query_api::settings::Settings;
use query_api::Application;
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
    let application = Application::build(settings).await?;
    tracing::info!(port = application.port(), "query-api listening");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    application
        .run_until(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        })
        .await?;
    Ok(())
}
