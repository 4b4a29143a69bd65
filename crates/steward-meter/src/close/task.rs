//! Period close inside `steward meter serve`: every minute, each calendar month (UTC) from the
//! store's first input on whose grace has passed is closed once a reconciliation after its
//! grace has run (the reconciler is asked for one right then, instead of at its next turn);
//! every `check_interval_secs`, closed periods are checked for late facts (corrections).
//!
//! Several replicas may run it: a period is closed once (a unique key) and a correction stored
//! once (a unique key on its sequence); the loser of a race reads the winner's.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::correction::{CheckOutcome, check_period};
use super::{CloseError, CloseOptions, CloseOutcome, close_period, closes_from, period_label};
use crate::config::CloseConfig;
use crate::store::Store;
use crate::time::Instant;
use crate::usage::catalogue::Product;
use crate::usage::period::Period;

/// How often due periods are looked for.
const POLL: Duration = Duration::from_secs(60);
/// The most months one pass looks at (a store whose facts reach back further closes the
/// oldest first, this many per pass).
const MONTHS_PER_PASS: usize = 120;

/// The calendar month (UTC) that holds `at`.
pub fn month_of(at: Instant) -> Option<Period> {
    Period::month(at.to_rfc3339().get(..7)?).ok()
}

/// Where automatic closing begins: the store's first input (history replayed into a new
/// store predates it, and its months are closed by hand if at all), else its earliest fact.
async fn first_month_from(store: &dyn Store) -> Result<Option<Instant>, CloseError> {
    let coverage = store.coverage().await?;
    Ok(coverage.first_input_at.or(coverage.first_fact_at))
}

/// What one pass over the due periods did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DuePass {
    /// Periods this pass closed.
    pub closed: Vec<String>,
    /// Periods past their grace that still await a reconciliation.
    pub awaiting: Vec<String>,
    /// The end of the newest closed period after the pass.
    pub newest_closed_end: Option<Instant>,
}

/// Closes every month that is due at `now` (see the module docs).
pub async fn close_due(
    store: &dyn Store,
    config: &CloseConfig,
    catalogue: &[Product],
    now: Instant,
) -> Result<DuePass, CloseError> {
    let mut pass = DuePass::default();
    let Some(first) = first_month_from(store).await? else {
        return Ok(pass);
    };
    let closed: BTreeSet<(Instant, Instant)> = store
        .closed_periods()
        .await?
        .into_iter()
        .map(|p| (p.start, p.end))
        .collect();
    let options = CloseOptions {
        now,
        grace_secs: config.grace_secs,
        without_reconcile: config.without_reconcile,
    };
    pass.newest_closed_end = closed.iter().map(|(_, end)| *end).max();
    let mut month = month_of(first);
    let mut looked_at = 0;
    while let Some(period) = month {
        if closes_from(&period, config.grace_secs) > now || looked_at == MONTHS_PER_PASS {
            break;
        }
        looked_at += 1;
        month = month_of(period.end);
        if closed.contains(&(period.start, period.end)) {
            continue;
        }
        match close_period(store, &period, catalogue, &options).await {
            Ok(CloseOutcome::Closed(_)) => {
                pass.closed.push(period_label(&period));
                pass.newest_closed_end = pass.newest_closed_end.max(Some(period.end));
            }
            Ok(CloseOutcome::AlreadyClosed(_)) => {}
            Err(CloseError::AwaitingReconcile { .. }) => pass.awaiting.push(period_label(&period)),
            Err(e) => return Err(e),
        }
    }
    Ok(pass)
}

/// Checks every closed period for late facts; returns the corrections stored.
pub async fn check_closed(store: &dyn Store, now: Instant) -> Result<usize, CloseError> {
    let mut stored = 0;
    for summary in store.closed_periods().await? {
        let Some(closed) = store.closed_period(summary.start, summary.end).await? else {
            continue;
        };
        if let CheckOutcome::Corrected(_) = check_period(store, &closed, now).await? {
            stored += 1;
        }
    }
    Ok(stored)
}

/// Runs the close and correction passes until `shutdown` turns true. `reconcile_now` (when
/// the reconciler runs) is notified once per period that awaits a reconciliation.
pub async fn run_periodically(
    store: Arc<dyn Store>,
    config: CloseConfig,
    catalogue: Vec<Product>,
    reconcile_now: Option<Arc<Notify>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let check_every = Duration::from_secs(config.check_interval_secs.max(60));
    let mut next_check = tokio::time::Instant::now();
    let mut asked: BTreeSet<String> = BTreeSet::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = Instant::now();
        match close_due(store.as_ref(), &config, &catalogue, now).await {
            Ok(pass) => {
                metrics::gauge!(crate::metrics::PERIODS_AWAITING_CLOSE)
                    .set(pass.awaiting.len() as f64);
                if let Some(newest) = pass.newest_closed_end {
                    metrics::gauge!(crate::metrics::LAST_CLOSED_PERIOD_END)
                        .set(newest.micros() as f64 / 1e6);
                }
                for period in &pass.awaiting {
                    if asked.insert(period.clone()) {
                        match &reconcile_now {
                            Some(reconcile) => {
                                tracing::info!(period = %period,
                                    "period past its grace: asking the reconciler for a run");
                                reconcile.notify_one();
                            }
                            None => tracing::warn!(period = %period,
                                "period past its grace awaits a reconciliation, and no reconciler \
                                 runs: set meter.reconcile.cloud, or meter.close.without_reconcile"),
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(error = %crate::ingest::reconcile::error_chain(&error),
                "closing due periods failed; next try in {}s", POLL.as_secs()),
        }
        if tokio::time::Instant::now() >= next_check {
            next_check = tokio::time::Instant::now() + check_every;
            if let Err(error) = check_closed(store.as_ref(), Instant::now()).await {
                tracing::warn!(error = %crate::ingest::reconcile::error_chain(&error),
                    "checking closed periods for late facts failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Where a month stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum PeriodStanding {
    /// The month is not over.
    Open,
    /// Over, inside its grace.
    InGrace {
        /// When it may close.
        closes_from: Instant,
    },
    /// Past its grace; awaits a reconciliation that started after it.
    AwaitingReconcile {
        /// When it could have closed.
        closes_from: Instant,
    },
    /// Closed.
    Closed {
        /// When.
        closed_at: Instant,
        /// The closed report's digest.
        digest: String,
        /// Corrections since.
        corrections: i64,
    },
}

/// The newest `limit` months from the store's first knowledge up to the one holding `now`,
/// newest first, with where each stands.
pub async fn standings(
    store: &dyn Store,
    config: &CloseConfig,
    now: Instant,
    limit: usize,
) -> Result<Vec<(String, PeriodStanding)>, CloseError> {
    let Some(first) = first_month_from(store).await? else {
        return Ok(Vec::new());
    };
    let closed = store.closed_periods().await?;
    let runs = store.reconcile_runs(1000).await?;
    let mut out = Vec::new();
    let mut month = month_of(now);
    while let Some(period) = month {
        if out.len() == limit || period.end <= first {
            break;
        }
        let from = closes_from(&period, config.grace_secs);
        let standing = if let Some(c) = closed
            .iter()
            .find(|c| c.start == period.start && c.end == period.end)
        {
            PeriodStanding::Closed {
                closed_at: c.closed_at,
                digest: c.digest.clone(),
                corrections: c.corrections,
            }
        } else if now < period.end {
            PeriodStanding::Open
        } else if now < from {
            PeriodStanding::InGrace { closes_from: from }
        } else if super::qualifying_run(&runs, from).is_some() || config.without_reconcile {
            // Closes at the next pass.
            PeriodStanding::InGrace { closes_from: from }
        } else {
            PeriodStanding::AwaitingReconcile { closes_from: from }
        };
        out.push((period_label(&period), standing));
        month = month_of(Instant(period.start.micros() - 1));
    }
    Ok(out)
}
