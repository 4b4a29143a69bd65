//! Period close: a billing period's report made final, with a completeness statement, and the
//! corrections that facts arriving later produce.
//!
//! # Closing
//!
//! A period `[start, end)` can close once `end + grace` has passed **and** a reconciliation
//! without problems started after `end + grace` (the notifications lost before then have been
//! looked for in the APIs). [`close_period`] then computes the report over the whole period,
//! adds the [`Completeness`] statement (sources and their watermarks, every gap overlapping
//! the period and how it was resolved, the estimates and their bounds, facts per origin), marks
//! it `closed`, seals it with its content digest and stores it with the catalogue it was
//! computed with. Closing only with `without_reconcile` skips the reconciliation requirement
//! (for clouds without a reconciler) and says so in the statement.
//!
//! Invariants:
//! - **A closed report never changes.** It is stored once (a unique key on the period); a
//!   second close, by this process or another replica, is a no-op that returns the stored
//!   report byte for byte.
//! - **Late facts become corrections, never edits.** See [`correction`]: each correction names
//!   the closed report's digest (and the previous correction's), carries only the delta, and
//!   is computed with the catalogue the period closed with.
//! - **Nothing is missed between the close and the first check**: the count of facts effective
//!   before the period's end is read *before* the report is computed, so any such fact
//!   committed meanwhile makes the next check recompute.

pub mod correction;
pub mod task;
#[cfg(test)]
mod tests;

use crate::ingest::reconcile::gap_resolved_at;
use crate::record::Gap;
use crate::report::{
    Completeness, EstimateWindow, GapResolution, PeriodState, ReconcileEvidence, Report,
    ReportError, ReportRequest, Resolution, SourceWatermark, build_with_evidence,
};
use crate::store::{ClosedPeriod, ReconcileRun, StatusSummary, Store, StoreError};
use crate::time::Instant;
use crate::usage::catalogue::Product;
use crate::usage::period::Period;

/// How many recorded reconciliations a close looks through.
const RUNS_LOOKED_AT: u32 = 1000;

/// How to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseOptions {
    /// The time now.
    pub now: Instant,
    /// Seconds after the period's end before it may close (late notifications, Ceilometer
    /// posts and backfill arrive in it).
    pub grace_secs: u64,
    /// Close without a reconciliation after the grace (a cloud without a reconciler); the
    /// statement then says the gaps are unresolved.
    pub without_reconcile: bool,
}

/// What [`close_period`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseOutcome {
    /// This call closed the period.
    Closed(Box<Report>),
    /// It was closed before (by an earlier call or another replica); nothing changed.
    AlreadyClosed(Box<Report>),
}

impl CloseOutcome {
    /// The closed report.
    pub fn report(&self) -> &Report {
        match self {
            Self::Closed(r) | Self::AlreadyClosed(r) => r,
        }
    }
}

/// Why a period could not close.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// The period plus its grace is not over.
    #[error(
        "period {period} cannot close before {from} (its end plus meter.close.grace_secs = {grace_secs})"
    )]
    TooEarly {
        /// The period, in words.
        period: String,
        /// When it can.
        from: Instant,
        /// The grace.
        grace_secs: u64,
    },
    /// No reconciliation without problems started after the period's end plus grace.
    #[error(
        "period {period} awaits a reconciliation without problems that starts after {after} \
         (its end plus grace): run `steward meter reconcile --once` (or let `serve` run it), \
         or close with --without-reconcile to state its gaps as unresolved"
    )]
    AwaitingReconcile {
        /// The period, in words.
        period: String,
        /// The earliest start that qualifies.
        after: Instant,
    },
    /// A stored closed report or correction cannot be read back.
    #[error("the stored close of period {period} is unreadable: {reason}")]
    Corrupt {
        /// The period, in words.
        period: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing the store failed.
    #[error("store")]
    Store(#[from] StoreError),
    /// The report could not be computed.
    #[error("computing the report")]
    Report(#[from] ReportError),
}

/// The period in words: `2026-11` for a calendar month, else `START..END`.
pub fn period_label(period: &Period) -> String {
    let start = period.start.to_rfc3339();
    match start.get(..7) {
        Some(month) if Period::month(month).as_ref() == Ok(period) => month.to_owned(),
        _ => format!("{start}..{}", period.end.to_rfc3339()),
    }
}

/// When `period` may close: its end plus the grace.
pub fn closes_from(period: &Period, grace_secs: u64) -> Instant {
    Instant(
        period
            .end
            .micros()
            .saturating_add((grace_secs as i64).saturating_mul(1_000_000)),
    )
}

/// The newest reconciliation without problems that started at or after `after`.
pub fn qualifying_run(runs: &[ReconcileRun], after: Instant) -> Option<&ReconcileRun> {
    runs.iter()
        .filter(|r| r.problems.is_none() && r.started_at >= after)
        .max_by_key(|r| (r.started_at, r.finished_at))
}

/// Reads a stored closed report back.
pub fn stored_report(closed: &ClosedPeriod) -> Result<Report, CloseError> {
    serde_json::from_str(&closed.report).map_err(|e| CloseError::Corrupt {
        period: period_label(&Period {
            start: closed.start,
            end: closed.end,
        }),
        reason: format!("closed report: {e}"),
    })
}

/// Closes `period` (see the module docs); a period closed before is returned as it was.
pub async fn close_period(
    store: &dyn Store,
    period: &Period,
    catalogue: &[Product],
    options: &CloseOptions,
) -> Result<CloseOutcome, CloseError> {
    if let Some(closed) = store.closed_period(period.start, period.end).await? {
        return Ok(CloseOutcome::AlreadyClosed(Box::new(stored_report(
            &closed,
        )?)));
    }
    let label = period_label(period);
    let from = closes_from(period, options.grace_secs);
    if options.now < from {
        return Err(CloseError::TooEarly {
            period: label,
            from,
            grace_secs: options.grace_secs,
        });
    }
    let runs = store.reconcile_runs(RUNS_LOOKED_AT).await?;
    let run = qualifying_run(&runs, from);
    if run.is_none() && !options.without_reconcile {
        return Err(CloseError::AwaitingReconcile {
            period: label,
            after: from,
        });
    }
    // Counted before the report is computed: a fact committed while it is computed makes the
    // first correction check look again.
    let facts_seen = store.fact_count_before(period.end).await?;
    let status = store.status().await?;
    let request = ReportRequest {
        period: *period,
        as_of: options.now,
        project: None,
        detail: false,
    };
    let (mut report, evidence) = build_with_evidence(store, &request, catalogue).await?;
    let gaps = store.gaps_overlapping(period.start, period.end).await?;
    report.period_state = PeriodState::Closed;
    report.completeness = Some(statement(
        &report,
        &Statement {
            status: &status,
            gaps: &gaps,
            runs: &runs,
            run,
            estimates: evidence.estimates,
            origins: evidence.origins,
            closed_at: options.now,
            grace_secs: options.grace_secs,
        },
    ));
    report.seal();
    let closed = ClosedPeriod {
        id: 0,
        start: period.start,
        end: period.end,
        closed_at: options.now,
        digest: report.content_digest.clone(),
        catalogue: serde_json::to_string(catalogue).unwrap_or_default(),
        report: report.json(),
        facts_seen,
    };
    if store.insert_closed_period(&closed).await? {
        metrics::counter!(crate::metrics::PERIODS_CLOSED).increment(1);
        tracing::info!(period = %label, digest = %closed.digest, "period closed");
        Ok(CloseOutcome::Closed(Box::new(report)))
    } else {
        // Another replica closed it between our look and our insert: theirs stands.
        let closed = store
            .closed_period(period.start, period.end)
            .await?
            .ok_or_else(|| CloseError::Corrupt {
                period: label,
                reason: "closed by another writer, then not found".to_owned(),
            })?;
        Ok(CloseOutcome::AlreadyClosed(Box::new(stored_report(
            &closed,
        )?)))
    }
}

struct Statement<'a> {
    status: &'a StatusSummary,
    gaps: &'a [Gap],
    runs: &'a [ReconcileRun],
    run: Option<&'a ReconcileRun>,
    estimates: Vec<EstimateWindow>,
    origins: std::collections::BTreeMap<String, u64>,
    closed_at: Instant,
    grace_secs: u64,
}

fn statement(report: &Report, s: &Statement<'_>) -> Completeness {
    let gaps: Vec<GapResolution> = s
        .gaps
        .iter()
        .map(|gap| {
            let resolved = gap_resolved_at(gap, s.runs);
            let estimates: Vec<EstimateWindow> = match (resolved, gap.ended_at) {
                (Some(_), Some(end)) => s
                    .estimates
                    .iter()
                    .filter(|e| e.not_before <= end && e.not_after >= gap.started_at)
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            };
            let resolution = match resolved {
                None => Resolution::Unresolved,
                Some(_) if estimates.is_empty() => Resolution::Reconciled,
                Some(_) => Resolution::Estimated,
            };
            GapResolution {
                source: gap.source.as_str().to_owned(),
                start: gap.started_at,
                end: gap.ended_at,
                cause: gap.cause.clone(),
                resolution,
                resolved_by_reconcile_at: resolved,
                estimates,
            }
        })
        .collect();
    let unresolved = gaps
        .iter()
        .filter(|g| g.resolution == Resolution::Unresolved)
        .count();
    let with_estimates = gaps
        .iter()
        .filter(|g| g.resolution == Resolution::Estimated)
        .count();
    let unknown_before = report.coverage.unknown.first().map(|w| w.end);
    let complete = unresolved == 0 && unknown_before.is_none() && s.run.is_some();
    let mut summary = Vec::new();
    summary.push(if complete { "complete" } else { "incomplete" }.to_owned());
    summary.push(match s.run {
        Some(run) => format!("reconciled from the APIs at {}", run.started_at),
        None => "closed without a reconciliation".to_owned(),
    });
    summary.push(match gaps.len() {
        0 => "no gaps".to_owned(),
        n => format!(
            "{n} gap(s): {} reconciled, {with_estimates} with estimates, {unresolved} unresolved",
            n - unresolved - with_estimates
        ),
    });
    if let Some(until) = unknown_before {
        summary.push(format!(
            "usage before {until} is unknown (before the store's first input)"
        ));
    }
    if !s.estimates.is_empty() {
        summary.push(format!("{} estimated fact(s)", s.estimates.len()));
    }
    let facts: u64 = s.origins.values().sum();
    summary.push(format!(
        "{facts} fact(s) in the period ({})",
        s.origins
            .iter()
            .map(|(o, n)| format!("{n} {o}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Completeness {
        closed_at: s.closed_at,
        grace_secs: s.grace_secs,
        complete,
        summary: summary.join("; "),
        reconciliation: s.run.map(|r| ReconcileEvidence {
            started_at: r.started_at,
            finished_at: r.finished_at,
            listed: r.listed.clone(),
            resources_seen: r.resources_seen,
            facts_written: r.facts_written,
        }),
        sources: s
            .status
            .sources
            .iter()
            .map(|src| SourceWatermark {
                source: src.source.clone(),
                records: src.records,
                facts: src.facts,
                last_received_at: src.last_received_at,
            })
            .collect(),
        gaps,
        estimates: s.estimates.clone(),
        facts_by_origin: s.origins.clone(),
    }
}

/// The closed report of `period` as `project` sees it (`None`: every project), when the
/// period is closed. A project's view keeps only its entry and sums the totals over it; it
/// carries the closed report's digest, which names what it was cut from.
pub async fn closed_view(
    store: &dyn Store,
    period: &Period,
    project: Option<&str>,
) -> Result<Option<Report>, CloseError> {
    let Some(closed) = store.closed_period(period.start, period.end).await? else {
        return Ok(None);
    };
    let mut report = stored_report(&closed)?;
    if let Some(project) = project {
        cut_to_project(&mut report, Some(project.to_owned()));
    }
    Ok(Some(report))
}

/// Cuts a closed report to one owner's entry (`None`: the usage no fact names an owner of)
/// and sums the totals over it; the digest stays the closed report's, which names what it was
/// cut from.
pub(crate) fn cut_to_project(report: &mut Report, project: Option<String>) {
    report.projects.retain(|p| p.project_id == project);
    report.project = project;
    report.totals = totals_over(&report.projects);
}

/// Exact per-product totals over `projects` (as a report computes them).
pub(crate) fn totals_over(
    projects: &[crate::report::ProjectUsage],
) -> Vec<crate::report::ProductTotal> {
    use crate::usage::engine::Quantity;
    let mut totals: std::collections::BTreeMap<(String, String), (Quantity, u64, u64)> =
        std::collections::BTreeMap::new();
    for p in projects {
        for line in &p.lines {
            let t = totals
                .entry((line.product.clone(), line.unit.clone()))
                .or_default();
            t.0.add(Quantity::parse_exact(&line.quantity_exact).unwrap_or_default());
            t.1 += 1;
            // Called with one project's entry: its line's resources are the total's.
            t.2 += line.resources;
        }
    }
    totals
        .into_iter()
        .map(
            |((product, unit), (q, projects, resources))| crate::report::ProductTotal {
                product,
                unit,
                quantity: q.decimal(crate::report::DECIMALS),
                quantity_exact: q.exact(),
                projects,
                resources,
            },
        )
        .collect()
}
