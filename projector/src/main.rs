//! projector: settings → logs → `/health` and `/ready` → follow the log until Ctrl-C or
//! SIGTERM (stops at once: a batch that has not committed counts for nothing, and the next
//! projector redoes it).

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
    let listener =
        tokio::net::TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .await?;
    tracing::info!(port = listener.local_addr()?.port(), "projector listening");
    let health = tokio::spawn(projector::serve_health(
        listener,
        secrecy::ExposeSecret::expose_secret(&settings.database.url).to_owned(),
        stopped.clone(),
    ));
    projector::run(settings, stopped).await?;
    // Its connections get a moment to close; the stop does not wait on a client.
    if let Ok(served) = tokio::time::timeout(std::time::Duration::from_millis(300), health).await {
        served??;
    }
    Ok(())
}
