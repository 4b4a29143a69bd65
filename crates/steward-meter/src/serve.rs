//! `steward meter serve`: the ingest service.
//!
//! Wires the store, the writer, the AMQP source and the HTTP listener (ingest endpoints,
//! `/metrics`, `/healthz`, `/readyz`) and runs them until the shutdown signal. Shutdown order
//! keeps the ack-after-commit promise: the sources stop taking input and hand their last batch
//! to the writer; in-flight HTTP requests finish; the writer commits everything submitted; the
//! AMQP source acknowledges what was committed; then the process exits.
//!
//! HTTP downtime: Ceilometer drops what it cannot post, so a window in which Steward was not
//! listening is a real gap. The HTTP source writes a heartbeat every `heartbeat_secs` and a last
//! one at a clean shutdown; at start, the window since the last heartbeat is recorded as a gap.
//! After a crash the gap starts at the last heartbeat, up to `heartbeat_secs` early: downtime is
//! over-reported by at most that much, never under-reported.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpSocket;
use tokio::sync::watch;

use crate::config::MeterConfig;
use crate::ingest::amqp::{AmqpSource, AmqpState};
use crate::ingest::http::HttpIngest;
use crate::ingest::{Writer, WriterConfig};
use crate::record::Source;
use crate::store::{self, Store, StoreError};
use crate::time::Instant;

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The store could not be opened.
    #[error("cannot open the store")]
    Store(#[source] StoreError),
    /// The HTTP listener could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct Ops {
    metrics: Option<PrometheusHandle>,
    amqp: Option<Arc<AmqpState>>,
}

/// Runs the ingest service until `shutdown` turns true.
pub async fn serve(
    config: MeterConfig,
    metrics: Option<PrometheusHandle>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    crate::metrics::describe();
    crate::metrics::start_at_zero(config.amqp.enabled);
    // One writer per SQLite store, held until this function returns.
    let _writer_lock = if config.store.url.expose().starts_with("sqlite:") {
        Some(store::lock_writer(config.store.url.expose()).map_err(ServeError::Store)?)
    } else {
        None
    };
    let store = store::open_with_timeout(
        config.store.url.expose(),
        Duration::from_secs(config.store.connect_timeout_secs.max(1)),
    )
    .await
    .map_err(ServeError::Store)?;
    tracing::info!(store = %store::redact_url(config.store.url.expose()), "store open");
    let (writer, writer_task) = Writer::spawn(
        store.clone(),
        WriterConfig {
            max_records_per_commit: config.writer.max_records_per_commit,
            ..WriterConfig::default()
        },
    );

    let amqp_state = config.amqp.enabled.then(|| Arc::new(AmqpState::default()));
    let amqp_task = amqp_state.clone().map(|state| {
        let source = AmqpSource::new(
            config.amqp.clone(),
            config.scrub.scrubber(),
            writer.clone(),
            store.clone(),
            state,
            shutdown.clone(),
        );
        tokio::spawn(source.run())
    });

    let http = &config.http;
    let listener =
        listen(http.listen, http.listen_backlog).map_err(|source| ServeError::Listen {
            addr: http.listen,
            source,
        })?;
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(Ops {
            metrics,
            amqp: amqp_state,
        });
    let heartbeat_task = if http.enabled {
        record_http_downtime(store.as_ref()).await;
        app = app.merge(
            HttpIngest::new(
                writer.clone(),
                http.bearer_token.clone(),
                config.scrub.scrubber(),
            )
            .with_body_limits(
                http.max_body_bytes,
                Duration::from_secs(http.body_read_timeout_secs.max(1)),
            )
            .router(),
        );
        Some(tokio::spawn(heartbeat(
            store.clone(),
            Duration::from_secs(http.heartbeat_secs.max(1)),
            shutdown.clone(),
        )))
    } else {
        None
    };
    app = app.merge(report_routes(ReportApi {
        store: store.clone(),
        catalogue: Arc::new(config.catalogue()),
        token: http.bearer_token.clone(),
    }));
    tracing::info!(listen = %http.listen, ingest = http.enabled, "http listening");
    drop(writer);

    let limits = crate::server::ServerLimits {
        header_read_timeout: Duration::from_secs(http.header_read_timeout_secs.max(1)),
        shutdown_grace: Duration::from_secs(http.shutdown_grace_secs),
    };
    crate::server::run(listener, app, limits, shutdown.clone()).await;
    // The HTTP side is done; wait for the AMQP source to flush and acknowledge.
    let _ = shutdown.wait_for(|stop| *stop).await;
    if let Some(task) = amqp_task {
        let _ = task.await;
    }
    if let Some(task) = heartbeat_task {
        let _ = task.await;
    }
    // Every writer handle is gone now: the writer commits what is queued and stops.
    let _ = writer_task.await;
    tracing::info!("ingest stopped; everything acknowledged was committed");
    Ok(())
}

/// State of the report pull API.
#[derive(Clone)]
struct ReportApi {
    store: Arc<dyn Store>,
    catalogue: Arc<Vec<crate::usage::catalogue::Product>>,
    token: Option<crate::config::Secret>,
}

/// Query of `GET /v1/reports`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    period: Option<String>,
    from: Option<String>,
    to: Option<String>,
    project: Option<String>,
    #[serde(default)]
    detail: bool,
}

/// `GET /v1/reports?period=2026-10[&project=ID][&detail=true]` (or `from`/`to` in RFC 3339):
/// the same JSON as `steward meter report -o json`, behind the ingest token when one is set.
fn report_routes(api: ReportApi) -> Router {
    Router::new()
        .route("/v1/reports", get(get_report))
        .with_state(api)
}

async fn get_report(
    State(api): State<ReportApi>,
    headers: axum::http::HeaderMap,
    query: Result<axum::extract::Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> axum::response::Response {
    use axum::Json;
    use serde_json::json;
    let bad = |message: String| {
        (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
    };
    if !crate::ingest::http::authorized(&headers, api.token.as_ref()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "missing or wrong token" })),
        )
            .into_response();
    }
    let query = match query {
        Ok(axum::extract::Query(q)) => q,
        Err(e) => return bad(e.body_text()),
    };
    let period = match (&query.period, &query.from, &query.to) {
        (Some(month), None, None) => crate::usage::period::Period::month(month),
        (None, Some(from), Some(to)) => crate::usage::period::Period::from_rfc3339(from, to),
        _ => return bad("give period=YYYY-MM, or from= and to= (RFC 3339)".to_owned()),
    };
    let period = match period {
        Ok(p) => p,
        Err(e) => return bad(e.to_string()),
    };
    let request = crate::report::ReportRequest {
        period,
        project: query.project,
        detail: query.detail,
    };
    match crate::report::build_report(api.store.as_ref(), &request, &api.catalogue).await {
        Ok(report) => (
            StatusCode::OK,
            [("content-type", "application/json")],
            report.json(),
        )
            .into_response(),
        Err(error) => {
            // The details stay in the log: an answer names no database internals.
            let message = crate::ingest::writer::anyhow_like(&error).to_string();
            tracing::warn!(error = %message, "report failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "5")],
                Json(json!({ "error": "the store is unavailable; retry later" })),
            )
                .into_response()
        }
    }
}

/// Binds with a large backlog (Ceilometer loses posts on refused connections).
fn listen(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    match &ops.amqp {
        Some(amqp) if !amqp.connected() => {
            (StatusCode::SERVICE_UNAVAILABLE, "amqp: not connected\n")
        }
        _ => (StatusCode::OK, "ready\n"),
    }
}

async fn render_metrics(State(ops): State<Ops>) -> impl IntoResponse {
    match &ops.metrics {
        Some(handle) => (StatusCode::OK, handle.render()),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are not enabled\n".to_owned(),
        ),
    }
}

async fn record_http_downtime(store: &dyn Store) {
    let now = Instant::now();
    match store.last_heartbeat(Source::Http).await {
        Ok(Some(last)) => {
            let cause = "steward was not listening for ceilometer posts";
            match store.open_gap(Source::Http, last, cause).await {
                Ok(id) => {
                    let _ = store.close_gap(id, now).await;
                    metrics::counter!(crate::metrics::GAPS, "source" => "http").increment(1);
                    tracing::warn!(from = %last, to = %now, "recorded http downtime gap");
                }
                Err(error) => {
                    tracing::warn!(error = %crate::ingest::writer::anyhow_like(&error), "cannot record gap")
                }
            }
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(error = %crate::ingest::writer::anyhow_like(&error), "cannot read heartbeat")
        }
    }
}

async fn heartbeat(store: Arc<dyn Store>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(error) = store.heartbeat(Source::Http, Instant::now()).await {
            tracing::warn!(error = %crate::ingest::writer::anyhow_like(&error), "cannot write heartbeat");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            let _ = store.heartbeat(Source::Http, Instant::now()).await;
            return;
        }
    }
}
