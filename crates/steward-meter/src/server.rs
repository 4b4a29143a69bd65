//! The HTTP server under the ingest, report and operations endpoints.
//!
//! hyper's HTTP/1 connection driver with the limits a service that faces Ceilometer (and the
//! network) needs:
//! - a **header read timeout**: a client that opens a connection and sends its request head
//!   slowly or not at all is dropped after `header_read_timeout`, instead of holding a
//!   connection and a task forever (the body has its own deadline in the ingest handler);
//! - **bounded shutdown**: on the shutdown signal the listener closes, idle keep-alive
//!   connections close at once, requests in flight may finish (their commits and answers are
//!   the ack-after-commit promise), and whatever still runs after `shutdown_grace` is dropped —
//!   the sender gets no answer and retries, and nothing was acknowledged that is not durable;
//! - `TCP_NODELAY` on every accepted connection.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Longest time a client may take to send a request's head.
    pub header_read_timeout: Duration,
    /// Longest time in-flight requests may take after the shutdown signal.
    pub shutdown_grace: Duration,
}

/// Serves `app` on `listener` until `shutdown` turns true, then shuts down within
/// [`ServerLimits::shutdown_grace`].
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(app.clone());
                let mut stop = stop_rx.clone();
                connections.spawn(async move {
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(limits.header_read_timeout)
                        .keep_alive(true);
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        _ = stopped(&mut stop) => conn.as_mut().graceful_shutdown(),
                    }
                    let _ = conn.await;
                });
            }
            // Reap finished connection tasks so the set does not grow with every connection.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let in_flight = connections.len();
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            of = in_flight,
            grace_secs = limits.shutdown_grace.as_secs(),
            "http connections still open after the shutdown grace; dropping them unanswered"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// Resolves once `signal` is true (or its sender is gone).
async fn stopped(signal: &mut watch::Receiver<bool>) {
    let _ = signal.wait_for(|stop| *stop).await;
}
