//! query-api: telemetry → settings → application → serve until Ctrl-C or SIGTERM.

use query_api::settings::Settings;
use query_api::Application;

/// mimalloc: the profile of a flash sale showed ~37 % of command-api's CPU in glibc malloc/free
/// (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    service::init_logging(&settings.log);
    let application = Application::build(settings).await?;
    tracing::info!(port = application.port(), "query-api listening");
    application.run_until(service::shutdown_signal()).await?;
    Ok(())
}
