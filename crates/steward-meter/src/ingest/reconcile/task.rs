//! The reconciler inside `steward meter serve`: a run at start, every `interval_secs`,
//! shortly after a gap closes (when the notifications the source missed are lost for good and
//! the ones that were in flight have been committed), and when a period past its grace awaits
//! its close (`crate::close::task`).
//!
//! Several replicas may run it: runs are idempotent and every fact is keyed semantically, so
//! two replicas reconciling at once write each fact once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::{Outcome, reconcile};
use crate::config::ReconcileConfig;
use crate::facts::Origin;
use crate::store::Store;

/// How often the task looks for newly closed gaps.
const GAP_POLL: Duration = Duration::from_secs(30);
/// How long after a gap closed the run starts: what was in flight gets committed first.
const AFTER_GAP: Duration = Duration::from_secs(30);

/// Runs the reconciler until `shutdown` turns true. A cloud that cannot be reached is retried
/// at the next turn; nothing here ends the service.
pub async fn run_periodically(
    store: Arc<dyn Store>,
    config: ReconcileConfig,
    cloud_name: String,
    run_now: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(config.interval_secs.max(60));
    let mut cloud: Option<steward_cloud::Cloud> = None;
    let mut closed_gaps = closed_gap_count(store.as_ref()).await;
    let mut next_run = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_run.min(tokio::time::Instant::now() + GAP_POLL)) => {}
            _ = shutdown.changed() => {}
            _ = run_now.notified() => {
                tracing::info!("a period awaits its close: reconciling now");
                next_run = tokio::time::Instant::now();
            }
        }
        if *shutdown.borrow() {
            return;
        }
        let closed_now = closed_gap_count(store.as_ref()).await;
        if closed_now > closed_gaps {
            tracing::info!("a gap closed: reconciling in {}s", AFTER_GAP.as_secs());
            closed_gaps = closed_now;
            next_run = next_run.min(tokio::time::Instant::now() + AFTER_GAP);
            continue;
        }
        if tokio::time::Instant::now() < next_run {
            continue;
        }
        next_run = tokio::time::Instant::now() + every;
        if cloud.is_none() {
            match steward_cloud::Cloud::connect(&cloud_name, config.clouds_file.as_deref()).await {
                Ok(c) => cloud = Some(c),
                Err(error) => {
                    metrics::counter!(crate::metrics::RECONCILE_RUNS, "result" => "failed")
                        .increment(1);
                    tracing::warn!(cloud = %cloud_name, error = %super::error_chain(&error),
                        "reconcile: cannot connect to the cloud; next try in {}s", every.as_secs());
                    continue;
                }
            }
        }
        let Some(c) = &cloud else { continue };
        match reconcile(store.as_ref(), c, &config.options(false)).await {
            Ok(outcome) => record(&outcome, config.resources.len()),
            Err(error) => {
                metrics::counter!(crate::metrics::RECONCILE_RUNS, "result" => "failed")
                    .increment(1);
                tracing::warn!(error = %super::error_chain(&error), "reconcile failed");
            }
        }
    }
}

async fn closed_gap_count(store: &dyn Store) -> i64 {
    store
        .status()
        .await
        .map(|s| s.gaps_total - s.gaps_open)
        .unwrap_or(0)
}

fn record(outcome: &Outcome, wanted_types: usize) {
    let run = &outcome.run;
    let result = if run.problems.is_some() {
        "problems"
    } else {
        "ok"
    };
    metrics::counter!(crate::metrics::RECONCILE_RUNS, "result" => result).increment(1);
    for origin in [Origin::Reconciled, Origin::Estimated] {
        let n = outcome
            .changes
            .iter()
            .filter(|p| p.fact.origin == origin)
            .count() as u64;
        metrics::counter!(crate::metrics::RECONCILE_FACTS, "origin" => origin.as_str())
            .increment(n);
    }
    if run.problems.is_none() && run.listed.len() >= wanted_types {
        metrics::gauge!(crate::metrics::RECONCILE_LAST_COMPLETE)
            .set(run.finished_at.micros() as f64 / 1e6);
    }
    tracing::info!(
        resources = run.resources_seen,
        facts = run.facts_written,
        estimated = run.estimated,
        servers_read = outcome.looked_at.len(),
        problems = run.problems.as_deref().unwrap_or("none"),
        "reconciled"
    );
    for line in super::describe(&outcome.changes) {
        tracing::info!(change = %line, "reconciled fact");
    }
}
