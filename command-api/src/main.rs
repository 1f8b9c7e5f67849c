//! command-api: telemetry → settings → application → serve until a shutdown signal.

use command_api::settings::Settings;
use command_api::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    service::init_logging(&settings.log);
    service::metrics::install("command-api");
    let application = Application::build(settings).await?;
    tracing::info!(port = application.port(), "command-api listening");
    application.run_until(service::shutdown_signal()).await?;
    Ok(())
}
