//! The pusher inside `steward meter serve`: every 30 s, every closed month is planned for every
//! configured sink (once: the outbox's unique key), and each sink's due rows are attempted;
//! transient failures come back after their backoff, permanent ones stay for a person
//! (`status`, `steward_outbox_failed_permanent`).
//!
//! Several replicas may run it: planning is idempotent, and a row two replicas attempt at once
//! is delivered under one digest-keyed name, so the sink keeps one record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Sink;
use super::outbox::{CONFIRMED, FAILED_PERMANENT, RetryPolicy, deliver_due, plan_period};
use crate::close::CloseError;
use crate::config::SinkConfig;
use crate::store::Store;
use crate::time::Instant;
use crate::usage::period::Period;

/// How often the pusher looks.
const POLL: Duration = Duration::from_secs(30);
/// The most rows one sink attempts per pass.
const ROWS_PER_PASS: u32 = 200;

/// The closed months a pusher has planned, with the corrections each had then: a month is
/// planned again (its stored report and corrections read and parsed) only when it is new or
/// has a new correction, not on every pass.
pub type Planned = BTreeMap<(Instant, Instant), i64>;

/// One pass: plans every closed month for `sinks` that `planned` does not hold as it is,
/// attempts the due rows; returns how many attempts were made.
pub async fn push_once(
    store: &dyn Store,
    sinks: &[Box<dyn Sink>],
    planned: &mut Planned,
    now: Instant,
    policy: &RetryPolicy,
) -> Result<usize, CloseError> {
    let names: Vec<&str> = sinks.iter().map(|s| s.name()).collect();
    for closed in store.closed_periods().await? {
        let key = (closed.start, closed.end);
        if planned.get(&key) == Some(&closed.corrections) {
            continue;
        }
        let period = Period {
            start: closed.start,
            end: closed.end,
        };
        plan_period(store, &period, &names, now).await?;
        planned.insert(key, closed.corrections);
    }
    let mut attempts = 0;
    for sink in sinks {
        for (row, update) in deliver_due(store, sink.as_ref(), now, ROWS_PER_PASS, policy).await? {
            attempts += 1;
            metrics::counter!(crate::metrics::DELIVERIES, "sink" => sink.name().to_owned(),
                "result" => update.state.clone())
            .increment(1);
            if update.state != CONFIRMED {
                tracing::warn!(sink = sink.name(), project = row.project_id.as_deref().unwrap_or("-"),
                    kind = %row.kind, state = %update.state,
                    error = update.last_error.as_deref().unwrap_or(""), "delivery failed");
            }
        }
    }
    for (sink, state, rows) in store.outbox_summary().await? {
        if state == FAILED_PERMANENT {
            metrics::gauge!(crate::metrics::DELIVERIES_FAILED, "sink" => sink).set(rows as f64);
        }
    }
    Ok(attempts)
}

/// Runs [`push_once`] every 30 s until `shutdown` turns true.
pub async fn run_periodically(
    store: Arc<dyn Store>,
    sinks: Vec<SinkConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let sinks: Vec<Box<dyn Sink>> = sinks
        .iter()
        .filter_map(|config| match config.build() {
            Ok(sink) => Some(sink),
            Err(error) => {
                tracing::error!(sink = %config.name, %error, "sink cannot run; its rows wait");
                None
            }
        })
        .collect();
    let policy = RetryPolicy::default();
    let mut planned = Planned::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let pass = push_once(
            store.as_ref(),
            &sinks,
            &mut planned,
            Instant::now(),
            &policy,
        );
        if let Err(error) = pass.await {
            tracing::warn!(error = %crate::ingest::reconcile::error_chain(&error),
                "pushing closed periods failed; next try in {}s", POLL.as_secs());
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.changed() => {}
        }
    }
}
