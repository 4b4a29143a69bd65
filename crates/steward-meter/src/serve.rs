//! `steward meter serve`: the ingest service.
//!
//! Wires the store, the writer, the AMQP source, the HTTP listener (ingest endpoints,
//! `/metrics`, `/healthz`, `/readyz`) and, when `meter.reconcile.cloud` is set, the reconciler,
//! and runs them until the shutdown signal. Shutdown order
//! keeps the ack-after-commit promise: the sources stop taking input and hand their last batch
//! to the writer; in-flight HTTP requests finish; the writer commits everything submitted; the
//! AMQP source acknowledges what was committed; then the process exits.
//!
//! HTTP downtime: Ceilometer drops what it cannot post, so a window in which no Steward replica
//! was listening is a real gap. Every `serve` process is a replica with its own heartbeat row
//! (listening since its start, alive at its latest beat), written every `heartbeat_secs` and at
//! a clean shutdown. A gap can only end when some replica starts listening, so each replica
//! checks once, a heartbeat interval and a half after its start (when live replicas have shown
//! themselves), for every hole in the union of the replicas' listening windows — so a replica
//! that dies before it looked is covered by the next. Recording a window is idempotent. After a crash the
//! gap starts at the last heartbeat, up to `heartbeat_secs` early: downtime is over-reported by
//! at most that much, never under-reported.

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
        let replica = Replica::this_process();
        let every = Duration::from_secs(http.heartbeat_secs.max(1));
        let downtime_task =
            tokio::spawn(record_http_downtime(store.clone(), every, shutdown.clone()));
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
        let heartbeat_task =
            tokio::spawn(heartbeat(store.clone(), replica, every, shutdown.clone()));
        Some((heartbeat_task, downtime_task))
    } else {
        None
    };
    app = app.merge(report_routes(ReportApi {
        store: store.clone(),
        catalogue: Arc::new(config.catalogue()),
        token: http.bearer_token.clone(),
    }));
    let reconcile_now = config
        .reconcile
        .cloud
        .as_ref()
        .map(|_| Arc::new(tokio::sync::Notify::new()));
    let reconcile_task = config.reconcile.cloud.clone().map(|cloud| {
        tracing::info!(cloud = %cloud, every_secs = config.reconcile.interval_secs, "reconciler on");
        tokio::spawn(crate::ingest::reconcile::task::run_periodically(
            store.clone(),
            config.reconcile.clone(),
            cloud,
            reconcile_now.clone().unwrap_or_default(),
            shutdown.clone(),
        ))
    });
    let document_sinks: Vec<_> = config
        .sinks
        .iter()
        .filter(|s| s.delivers_documents())
        .cloned()
        .collect();
    let push_task = (!document_sinks.is_empty()).then(|| {
        tracing::info!(
            sinks = document_sinks.len(),
            "pushing closed periods to meter.sinks"
        );
        tokio::spawn(crate::sinks::task::run_periodically(
            store.clone(),
            document_sinks,
            shutdown.clone(),
        ))
    });
    let mut forward_tasks = Vec::new();
    for sink in &config.sinks {
        match sink.forwarder() {
            Some(Ok(forwarder)) => {
                tracing::info!(sink = %sink.name, "forwarding stored events in Ceilometer format");
                forward_tasks.push(tokio::spawn(crate::sinks::ceilometer::run_periodically(
                    store.clone(),
                    forwarder,
                    shutdown.clone(),
                )));
            }
            Some(Err(error)) => {
                tracing::error!(sink = %sink.name, %error, "event forwarder cannot run");
            }
            None => {}
        }
    }
    let close_task = config.close.auto.then(|| {
        tracing::info!(
            grace_secs = config.close.grace_secs,
            "monthly period close on"
        );
        tokio::spawn(crate::close::task::run_periodically(
            store.clone(),
            config.close.clone(),
            config.catalogue(),
            reconcile_now.clone(),
            shutdown.clone(),
        ))
    });
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
    if let Some(task) = reconcile_task {
        let _ = task.await;
    }
    if let Some(task) = close_task {
        let _ = task.await;
    }
    if let Some(task) = push_task {
        let _ = task.await;
    }
    for task in forward_tasks {
        let _ = task.await;
    }
    if let Some((heartbeat, downtime)) = heartbeat_task {
        let _ = heartbeat.await;
        let _ = downtime.await;
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
    as_of: Option<String>,
    project: Option<String>,
    #[serde(default)]
    detail: bool,
}

/// `GET /v1/reports?period=2026-10[&as_of=TIME][&project=ID][&detail=true]` (or `from`/`to` in RFC 3339):
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
    let as_of = match query.as_of.as_deref().map(crate::time::parse_timestamp) {
        None => crate::time::Instant::now(),
        Some(Ok(Some(t))) => t,
        Some(_) => {
            return bad("as_of is not an RFC 3339 time like 2026-10-01T00:00:00Z".to_owned());
        }
    };
    // A closed period answers with its closed report (a project's view of it), unless detail
    // or a past instant is asked for: those are computed from the current facts.
    let live = query.detail || query.as_of.is_some();
    let request = crate::report::ReportRequest {
        period,
        as_of,
        project: query.project,
        detail: query.detail,
    };
    let report = async {
        if !live
            && let Some(closed) =
                crate::close::closed_view(api.store.as_ref(), &period, request.project.as_deref())
                    .await?
        {
            return Ok(closed);
        }
        crate::report::build_report(api.store.as_ref(), &request, &api.catalogue)
            .await
            .map_err(crate::close::CloseError::from)
    };
    match report.await {
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
        Some(amqp) if !amqp.connected() => (
            StatusCode::SERVICE_UNAVAILABLE,
            match amqp.last_failure() {
                Some(failure) => format!("amqp: not connected: {failure}\n"),
                None => "amqp: not connected\n".to_owned(),
            },
        ),
        _ => (StatusCode::OK, "ready\n".to_owned()),
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

/// One `serve` process in the heartbeats: host, process id and start, so that a restarted
/// process is a new replica.
#[derive(Debug, Clone)]
struct Replica {
    id: String,
    started_at: Instant,
}

impl Replica {
    fn this_process() -> Self {
        let started_at = Instant::now();
        Self {
            id: format!(
                "{}/{}/{}",
                crate::host_name(),
                std::process::id(),
                started_at.micros()
            ),
            started_at,
        }
    }
}

/// Every window since the first heartbeat in which no replica was listening: the holes in the
/// union of the replicas' `[started_at, alive_at]`. A hole always ends where some replica
/// started; holes are found again by every later replica, so one that dies before it looked is
/// still covered (recording is idempotent).
fn http_downtime(beats: &[store::Heartbeat]) -> Vec<(Instant, Instant)> {
    let mut by_start: Vec<&store::Heartbeat> = beats.iter().collect();
    by_start.sort_by_key(|b| (b.started_at, b.alive_at));
    let mut holes = Vec::new();
    let mut covered_until: Option<Instant> = None;
    for beat in by_start {
        match covered_until {
            Some(until) if beat.started_at > until => {
                holes.push((until, beat.started_at));
                covered_until = Some(beat.alive_at);
            }
            Some(until) => covered_until = Some(until.max(beat.alive_at)),
            None => covered_until = Some(beat.alive_at),
        }
    }
    holes
}

/// Records every HTTP downtime window not recorded yet, once the other replicas have had time
/// to show that they are alive (one heartbeat interval and a half after this one started: a
/// live replica's last beat may be up to an interval old), or at shutdown.
async fn record_http_downtime(
    store: Arc<dyn Store>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = tokio::time::sleep(every + every / 2) => {}
        _ = shutdown.changed() => {}
    }
    let beats = match store.heartbeats(Source::Http).await {
        Ok(beats) => beats,
        Err(error) => {
            tracing::warn!(error = %crate::ingest::writer::anyhow_like(&error), "cannot read heartbeats");
            return;
        }
    };
    let cause = "no steward replica was listening for ceilometer posts";
    for (from, to) in http_downtime(&beats) {
        match store.record_gap(Source::Http, from, to, cause).await {
            Ok(true) => {
                metrics::counter!(crate::metrics::GAPS, "source" => "http").increment(1);
                tracing::warn!(%from, %to, "recorded http downtime gap");
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(error = %crate::ingest::writer::anyhow_like(&error), "cannot record gap")
            }
        }
    }
}

async fn heartbeat(
    store: Arc<dyn Store>,
    replica: Replica,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let beat = |at| {
        let store = store.clone();
        let replica = replica.clone();
        async move {
            store
                .heartbeat(Source::Http, &replica.id, replica.started_at, at)
                .await
        }
    };
    loop {
        if let Err(error) = beat(Instant::now()).await {
            tracing::warn!(error = %crate::ingest::writer::anyhow_like(&error), "cannot write heartbeat");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            let _ = beat(Instant::now()).await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::http_downtime;
    use crate::store::Heartbeat;
    use crate::time::Instant;

    fn beat(replica: &str, started: i64, alive: i64) -> Heartbeat {
        Heartbeat {
            replica: replica.to_owned(),
            started_at: Instant(started),
            alive_at: Instant(alive),
        }
    }

    fn holes(beats: &[Heartbeat]) -> Vec<(i64, i64)> {
        http_downtime(beats)
            .into_iter()
            .map(|(a, b)| (a.micros(), b.micros()))
            .collect()
    }

    #[test]
    fn a_restart_alone_is_a_gap_from_the_last_beat() {
        assert_eq!(
            holes(&[beat("old", 0, 100), beat("me", 150, 160)]),
            [(100, 150)]
        );
    }

    #[test]
    fn a_restart_while_another_replica_listens_is_no_gap() {
        let beats = [
            beat("old-b", 0, 100),
            beat("a", 10, 170),
            beat("me", 150, 160),
        ];
        assert_eq!(holes(&beats), []);
    }

    #[test]
    fn after_a_full_outage_the_gap_starts_at_the_last_replica_alive() {
        let beats = [
            beat("a", 0, 90),
            beat("b", 5, 100),
            beat("me", 150, 170),
            beat("late", 155, 170),
        ];
        assert_eq!(holes(&beats), [(100, 150)]);
    }

    #[test]
    fn a_replica_that_died_before_it_looked_still_gets_its_gap_found() {
        // Killed at 210 before its own check; the next one finds both windows.
        let beats = [
            beat("a", 0, 100),
            beat("short", 200, 210),
            beat("me", 300, 310),
        ];
        assert_eq!(holes(&beats), [(100, 200), (210, 300)]);
    }

    #[test]
    fn the_very_first_start_is_no_gap() {
        assert_eq!(holes(&[beat("me", 5, 5)]), []);
    }
}
