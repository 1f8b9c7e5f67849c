//! query-api: telemetry → settings → application → serve until Ctrl-C or SIGTERM.

use query_api::settings::Settings;
use query_api::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    let _telemetry = service::init_observability(&settings.log, &settings.telemetry, "query-api")
        .map_err(anyhow::Error::msg)?;
    service::metrics::install("query-api");
    let application = Application::build(settings).await?;
    tracing::info!(port = application.port(), "query-api listening");
    application.run_until(service::shutdown_signal()).await?;
    Ok(())
}
