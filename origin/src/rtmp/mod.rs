//! RTMP ingest: the listener (connection limit, shutdown) and one task per connection.

mod connection;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::Origin;

pub use connection::serve;

/// Accepts RTMP connections until `shutdown`, then waits for every connection to finish
/// (each finalises its recording).
pub async fn run(listener: TcpListener, origin: Arc<Origin>, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(origin.config.max_connections.max(1)));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // EMFILE and friends: back off a little instead of spinning.
                warn!(%error, "RTMP accept failed.");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            origin.metrics.connections_rejected.inc();
            warn!(%peer, limit = origin.config.max_connections, "RTMP connection refused: connection limit reached.");
            continue;
        };
        let origin = origin.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _open = OpenConnection::new(&origin.metrics);
            serve(socket, peer, &origin, shutdown).await;
            drop(permit);
        });
    }
    // Stop listening at once: new clients get refused instead of waiting in the backlog.
    drop(listener);
    tracker.close();
    info!(
        open = tracker.len(),
        "RTMP listener stopped; waiting for connections to finish."
    );
    tracker.wait().await;
}

/// Counts an open connection for as long as it lives, panics included.
struct OpenConnection(prometheus_client::metrics::gauge::Gauge);

impl OpenConnection {
    fn new(metrics: &crate::metrics::Metrics) -> Self {
        metrics.connections.inc();
        Self(metrics.connections.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}
