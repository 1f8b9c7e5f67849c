//! projector: telemetry → settings → follow the log until Ctrl-C or SIGTERM (stops at once:
//! a batch that has not committed counts for nothing, and the next projector redoes it).

use projector::settings::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    service::init_logging(&settings.log);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        service::shutdown_signal().await;
        let _ = stop.send(true);
    });
    projector::run(settings, stopped).await?;
    Ok(())
}
