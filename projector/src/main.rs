//! projector: settings → logs → `/health` and `/ready` → follow the log until Ctrl-C or
//! SIGTERM (stops at once: a batch that has not committed counts for nothing, and the next
//! projector redoes it).

use projector::settings::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    let _telemetry = service::init_observability(&settings.log, &settings.telemetry, "projector")
        .map_err(anyhow::Error::msg)?;
    service::metrics::install("projector");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        service::shutdown_signal().await;
        let _ = stop.send(true);
    });
    // Without its port (another projector on this host, standing by, holds it) the projector
    // still follows the log: health goes unanswered, not the read side.
    let health = match tokio::net::TcpListener::bind((
        settings.server.host.as_str(),
        settings.server.port,
    ))
    .await
    {
        Ok(listener) => {
            tracing::info!(port = listener.local_addr()?.port(), "projector listening");
            let (settings, stop) = (settings.clone(), stopped.clone());
            Some(tokio::spawn(async move {
                if let Err(e) = projector::serve_health(listener, &settings, stop).await {
                    tracing::error!(error = %e, "the health server stopped");
                }
            }))
        }
        Err(e) => {
            tracing::warn!(error = %e, port = settings.server.port, "no /health and /ready: the port is taken");
            None
        }
    };
    projector::run(settings, stopped).await?;
    // Its connections get a moment to close; the stop does not wait on a client.
    if let Some(health) = health {
        let _ = tokio::time::timeout(std::time::Duration::from_millis(300), health).await;
    }
    Ok(())
}
