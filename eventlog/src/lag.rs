//! How far a follower of the log (the relay, the projector) is behind its head, as a gauge.

use crate::EventLog;

/// A follower's distance behind the log head as a gauge (`relay_lag_events`,
/// `projector_lag_events`): every second, the head minus the follower's stored position
/// (`position`: the relay's checkpoint, the projections' watermark), read from the database
/// and not from the follower's loop, so a follower that fails or stalls shows its lag growing
/// instead of its last value. Ends when `stop` turns true. A failed sample is logged once and
/// retried the next second; the gauge keeps its value meanwhile.
pub async fn sample_lag<F, Fut>(
    log: EventLog,
    gauge: &'static str,
    mut position: F,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<i64, String>>,
{
    let lag = metrics::gauge!(gauge);
    let mut failing = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let sample = async {
            (
                log.head().await.map_err(|e| e.to_string()),
                position().await,
            )
        };
        // A database that does not answer holds a sample for seconds: never the stop.
        let sampled = tokio::select! {
            sampled = sample => sampled,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        match sampled {
            (Ok(head), Ok(at)) => {
                lag.set((head - at).max(0) as f64);
                if failing {
                    tracing::info!(gauge, "lag sampling recovered");
                    failing = false;
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                if !failing {
                    tracing::warn!(gauge, error = %e, "cannot sample the lag; retrying every second");
                    failing = true;
                }
            }
        }
    }
}
