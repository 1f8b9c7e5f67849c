//! command-api: telemetry → settings → application → serve until a shutdown signal.

use command_api::settings::Settings;
use command_api::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    let _telemetry = service::init_observability(&settings.log, &settings.telemetry, "command-api")
        .map_err(anyhow::Error::msg)?;
    service::metrics::install("command-api");
    let application = Application::build(settings).await?;
    tracing::info!(port = application.port(), "command-api listening");
    application.run_until(service::shutdown_signal()).await?;
    Ok(())
}
