//! The outbox's state machine: what to deliver for a closed period, and what a row becomes
//! after an attempt.
//!
//! States: `planned` (not delivered yet, or a transient failure to retry at `next_attempt_at`),
//! `confirmed` (the sink has it), `failed-permanent` (retrying cannot help; shown in `status`).
//! Retries back off exponentially from [`RetryPolicy::base_secs`] to [`RetryPolicy::max_secs`],
//! with a jitter of ±20 % derived from the row and attempt (so replicas spread, and a test can
//! predict it).

use sha2::{Digest, Sha256};

use super::{AttemptError, Document, Sink};
use crate::close::correction::stored_correction;
use crate::close::{CloseError, closed_view, stored_report};
use crate::store::{Delivery, DeliveryUpdate, Store};
use crate::time::Instant;
use crate::usage::period::Period;

/// Not delivered yet (or to retry).
pub const PLANNED: &str = "planned";
/// The sink has it.
pub const CONFIRMED: &str = "confirmed";
/// Retrying cannot help.
pub const FAILED_PERMANENT: &str = "failed-permanent";

/// How failed deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry's delay.
    pub base_secs: u64,
    /// The longest delay.
    pub max_secs: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_secs: 30,
            max_secs: 3_600,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempts + 1` of row `id`, in microseconds.
    pub fn delay_micros(&self, id: i64, attempts: i64) -> i64 {
        let exponent = attempts.clamp(0, 30) as u32;
        let secs = self
            .base_secs
            .saturating_mul(1u64 << exponent)
            .min(self.max_secs) as f64;
        let hash = Sha256::digest(format!("{id}:{attempts}").as_bytes());
        let unit = f64::from(u16::from_be_bytes([hash[0], hash[1]])) / f64::from(u16::MAX);
        (secs * (0.8 + 0.4 * unit) * 1e6) as i64
    }
}

/// What row `delivery` becomes after an attempt at `now` that gave `result`.
pub fn after_attempt(
    delivery: &Delivery,
    result: &Result<String, AttemptError>,
    now: Instant,
    policy: &RetryPolicy,
) -> DeliveryUpdate {
    let attempts = delivery.attempts + 1;
    match result {
        Ok(remote_id) => DeliveryUpdate {
            state: CONFIRMED.to_owned(),
            attempts,
            last_error: None,
            remote_id: Some(remote_id.clone()),
            next_attempt_at: now,
        },
        Err(AttemptError::Transient(error)) => DeliveryUpdate {
            state: PLANNED.to_owned(),
            attempts,
            last_error: Some(error.clone()),
            remote_id: None,
            next_attempt_at: Instant(
                now.micros() + policy.delay_micros(delivery.id, delivery.attempts),
            ),
        },
        Err(AttemptError::Permanent(error)) => DeliveryUpdate {
            state: FAILED_PERMANENT.to_owned(),
            attempts,
            last_error: Some(error.clone()),
            remote_id: None,
            next_attempt_at: now,
        },
    }
}

/// The rows closed period `period` needs for `sinks`: per sink, one per owner project of the
/// closed report, and one per project each correction changed. A period that is not closed
/// needs none.
pub async fn rows_for_period(
    store: &dyn Store,
    period: &Period,
    sinks: &[&str],
    now: Instant,
) -> Result<Vec<Delivery>, CloseError> {
    let Some(closed) = store.closed_period(period.start, period.end).await? else {
        return Ok(Vec::new());
    };
    let report = stored_report(&closed)?;
    let row = |sink: &str, project_id: &Option<String>, kind: &str, digest: &str| Delivery {
        id: 0,
        sink: sink.to_owned(),
        period_start: period.start,
        period_end: period.end,
        project_id: project_id.clone(),
        kind: kind.to_owned(),
        digest: digest.to_owned(),
        state: PLANNED.to_owned(),
        attempts: 0,
        last_error: None,
        remote_id: None,
        next_attempt_at: now,
        created_at: now,
        updated_at: now,
    };
    let mut rows = Vec::new();
    for sink in sinks {
        for p in &report.projects {
            rows.push(row(sink, &p.project_id, "report", &closed.digest));
        }
    }
    for stored in store.corrections(closed.id).await? {
        let correction = stored_correction(&stored).map_err(|e| CloseError::Corrupt {
            period: crate::close::period_label(period),
            reason: format!("correction {}: {e}", stored.sequence),
        })?;
        for sink in sinks {
            for p in &correction.projects {
                rows.push(row(sink, &p.project_id, "correction", &stored.digest));
            }
        }
    }
    Ok(rows)
}

/// Plans the rows of [`rows_for_period`]; returns how many were new (none when planned
/// before).
pub async fn plan_period(
    store: &dyn Store,
    period: &Period,
    sinks: &[&str],
    now: Instant,
) -> Result<u64, CloseError> {
    let rows = rows_for_period(store, period, sinks, now).await?;
    Ok(store.plan_deliveries(&rows, now).await?)
}

/// What `push` would do for each row `wanted` given the outbox rows `existing`, one line
/// each: `create`, `correction`, `retry` (with the last error), `no-op` (already confirmed) or
/// `failed-permanent` (with why).
pub fn describe_plan(wanted: &[Delivery], existing: &[Delivery]) -> Vec<String> {
    wanted
        .iter()
        .map(|w| {
            let found = existing
                .iter()
                .find(|e| e.sink == w.sink && e.project_id == w.project_id && e.digest == w.digest);
            let project = w.project_id.as_deref().unwrap_or("(no project)");
            let short: String = w
                .digest
                .trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect();
            let what = match (found, w.kind.as_str()) {
                (None, "correction") => "correction: a late change since the close".to_owned(),
                (None, _) => "create: not delivered yet".to_owned(),
                (Some(e), _) if e.state == CONFIRMED => format!(
                    "no-op: confirmed as {}",
                    e.remote_id.as_deref().unwrap_or("?")
                ),
                (Some(e), _) if e.state == FAILED_PERMANENT => format!(
                    "failed-permanent after {} attempt(s): {}",
                    e.attempts,
                    e.last_error.as_deref().unwrap_or("?")
                ),
                (Some(e), _) if e.attempts > 0 => format!(
                    "retry (attempt {}): {}",
                    e.attempts + 1,
                    e.last_error.as_deref().unwrap_or("?")
                ),
                (Some(_), _) => "create: planned, not attempted yet".to_owned(),
            };
            format!("{} {project} {} {short}: {what}", w.sink, w.kind)
        })
        .collect()
}

/// Rebuilds the document of row `delivery` from the store.
pub async fn document(store: &dyn Store, delivery: &Delivery) -> Result<Document, CloseError> {
    let period = Period {
        start: delivery.period_start,
        end: delivery.period_end,
    };
    let corrupt = |reason: String| CloseError::Corrupt {
        period: crate::close::period_label(&period),
        reason,
    };
    match delivery.kind.as_str() {
        "report" => {
            let mut report = closed_view(store, &period, None)
                .await?
                .ok_or_else(|| corrupt("the period is not closed".to_owned()))?;
            crate::close::cut_to_project(&mut report, delivery.project_id.clone());
            Ok(Document::Report(Box::new(report)))
        }
        "correction" => {
            let closed = store
                .closed_period(period.start, period.end)
                .await?
                .ok_or_else(|| corrupt("the period is not closed".to_owned()))?;
            let stored = store
                .corrections(closed.id)
                .await?
                .into_iter()
                .find(|c| c.digest == delivery.digest)
                .ok_or_else(|| corrupt(format!("no correction {}", delivery.digest)))?;
            let mut correction =
                stored_correction(&stored).map_err(|e| corrupt(format!("correction: {e}")))?;
            correction
                .projects
                .retain(|p| p.project_id == delivery.project_id);
            Ok(Document::Correction {
                correction: Box::new(correction),
                project_id: delivery.project_id.clone(),
            })
        }
        other => Err(corrupt(format!("outbox row of unknown kind {other:?}"))),
    }
}

/// Attempts every row of `sink` due at `now` (at most `limit`) and records each outcome;
/// returns the rows with what they became.
pub async fn deliver_due(
    store: &dyn Store,
    sink: &dyn Sink,
    now: Instant,
    limit: u32,
    policy: &RetryPolicy,
) -> Result<Vec<(Delivery, DeliveryUpdate)>, CloseError> {
    let due = store.due_deliveries(sink.name(), now, limit).await?;
    deliver(store, sink, due, now, policy).await
}

/// Attempts `rows` (of `sink`, not yet confirmed) now, whatever their backoff, and records each
/// outcome (`steward meter push`).
pub async fn deliver(
    store: &dyn Store,
    sink: &dyn Sink,
    rows: Vec<Delivery>,
    now: Instant,
    policy: &RetryPolicy,
) -> Result<Vec<(Delivery, DeliveryUpdate)>, CloseError> {
    let mut done = Vec::new();
    for delivery in rows {
        if delivery.sink != sink.name() || delivery.state != PLANNED {
            continue;
        }
        let result = match document(store, &delivery).await {
            Ok(document) => sink.deliver(&document).await,
            Err(e) => Err(AttemptError::Permanent(e.to_string())),
        };
        let update = after_attempt(&delivery, &result, now, policy);
        store.update_delivery(delivery.id, &update, now).await?;
        done.push((delivery, update));
    }
    Ok(done)
}
