//! Corrections: what facts arriving after a period closed change in its usage.
//!
//! A check recomputes the closed period from the current facts, with the catalogue the period
//! closed with, and compares it with the state before: the closed report, or the full report
//! the previous correction led to. A difference in any line's exact quantity, or in the windows
//! that could not be billed, becomes one [`Correction`] carrying only that delta, naming the
//! closed report's digest (`corrects`) and the previous correction's (`previous`), numbered
//! from 1. No difference writes nothing.
//!
//! Invariants:
//! - **One fact, one correction**: a check that finds nothing new writes nothing; the delta
//!   is against the latest state, so a fact is never corrected twice.
//! - **Cheap when idle**: nothing is recomputed while the count of facts effective before the
//!   period's end equals the count it was last compared at. (A fact effective after the end
//!   cannot change the period's usage, with one exception not watched for: a later fact that
//!   names the owner of a resource whose earlier facts named none.)
//! - Two replicas checking at once write one correction (a unique key on its sequence).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{CloseError, period_label, stored_report};
use crate::report::{
    DECIMALS, Generator, Report, ReportRequest, SCHEMA_VERSION, UnknownUsage, Window, build_report,
    config_digest,
};
use crate::store::{ClosedPeriod, Store, StoredCorrection};
use crate::time::Instant;
use crate::usage::catalogue::Product;
use crate::usage::engine::Quantity;
use crate::usage::period::Period;

/// A correction of a closed period (schema version [`SCHEMA_VERSION`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Correction {
    /// The schema version.
    pub schema_version: u32,
    /// What made it.
    pub generator: Generator,
    /// The period corrected.
    pub period: Window,
    /// 1 for the period's first correction, then 2, …
    pub sequence: i64,
    /// The content digest of the closed report this corrects.
    pub corrects: String,
    /// The previous correction's digest; `null` for the first.
    pub previous: Option<String>,
    /// When the facts were read.
    pub as_of: Instant,
    /// `sha256:…` of the catalogue (the one the period closed with).
    pub config_digest: String,
    /// `sha256:…` of the content (everything but generator and this digest).
    pub content_digest: String,
    /// Per project, only what changed.
    pub projects: Vec<ProjectDelta>,
    /// Per product and unit, the change over all projects.
    pub totals: Vec<LineDelta>,
}

/// What changed for one project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectDelta {
    /// The owner; `null` when no fact names one.
    pub project_id: Option<String>,
    /// Lines whose quantity changed.
    pub lines: Vec<LineDelta>,
    /// Windows that can no longer be stated.
    pub unknown_added: Vec<UnknownUsage>,
    /// Windows that are now stated (or billed).
    pub unknown_removed: Vec<UnknownUsage>,
}

/// The change of one product line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineDelta {
    /// The product name.
    pub product: String,
    /// Its unit.
    pub unit: String,
    /// The change, 6 decimals, negative when usage went down.
    pub quantity: String,
    /// The exact change.
    pub quantity_exact: String,
    /// The exact quantity before (`0/1` for a new line).
    pub before_exact: String,
    /// The exact quantity after (`0/1` for a line that went away).
    pub after_exact: String,
}

impl Correction {
    /// The canonical JSON text (sorted keys, two-space indentation, trailing newline).
    pub fn json(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        text
    }

    fn seal(&mut self) {
        let mut value = serde_json::to_value(&*self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.remove("generator");
            map.remove("content_digest");
        }
        self.content_digest = crate::report::digest(&value);
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// No fact arrived since the period was last compared.
    NothingNew,
    /// Facts arrived, but the period's usage is unchanged.
    Unchanged,
    /// A correction was stored.
    Corrected(Box<Correction>),
    /// Another replica stored this correction first.
    CorrectedElsewhere,
}

/// Compares closed period `closed` with the current facts and stores a correction when they
/// differ (see the module docs).
pub async fn check_period(
    store: &dyn Store,
    closed: &ClosedPeriod,
    now: Instant,
) -> Result<CheckOutcome, CloseError> {
    let period = Period {
        start: closed.start,
        end: closed.end,
    };
    let corrupt = |reason: String| CloseError::Corrupt {
        period: period_label(&period),
        reason,
    };
    // Counted before the recomputation, as at the close.
    let facts_seen = store.fact_count_before(closed.end).await?;
    if facts_seen == closed.facts_seen {
        return Ok(CheckOutcome::NothingNew);
    }
    let catalogue: Vec<Product> = serde_json::from_str(&closed.catalogue)
        .map_err(|e| corrupt(format!("stored catalogue: {e}")))?;
    let earlier = store.corrections(closed.id).await?;
    let before: Report = match earlier.last() {
        Some(last) => serde_json::from_str(&last.basis)
            .map_err(|e| corrupt(format!("correction {}: {e}", last.sequence)))?,
        None => stored_report(closed)?,
    };
    let request = ReportRequest {
        period,
        as_of: now,
        project: None,
        detail: false,
    };
    let after = build_report(store, &request, &catalogue).await?;
    let (projects, totals) = delta(&before, &after);
    if projects.is_empty() {
        store.mark_period_checked(closed.id, facts_seen).await?;
        return Ok(CheckOutcome::Unchanged);
    }
    let mut correction = Correction {
        schema_version: SCHEMA_VERSION,
        generator: after.generator.clone(),
        period: after.period,
        sequence: earlier.len() as i64 + 1,
        corrects: closed.digest.clone(),
        previous: earlier.last().map(|c| c.digest.clone()),
        as_of: now,
        config_digest: config_digest(&catalogue),
        content_digest: String::new(),
        projects,
        totals,
    };
    correction.seal();
    let stored = StoredCorrection {
        sequence: correction.sequence,
        created_at: now,
        digest: correction.content_digest.clone(),
        correction: correction.json(),
        basis: after.json(),
    };
    if store
        .insert_correction(closed.id, &stored, facts_seen)
        .await?
    {
        metrics::counter!(crate::metrics::PERIOD_CORRECTIONS).increment(1);
        tracing::info!(period = %period_label(&period), sequence = correction.sequence,
            digest = %correction.content_digest, corrects = %correction.corrects,
            "late facts changed a closed period: correction stored");
        Ok(CheckOutcome::Corrected(Box::new(correction)))
    } else {
        Ok(CheckOutcome::CorrectedElsewhere)
    }
}

/// Reads a stored correction back.
pub fn stored_correction(stored: &StoredCorrection) -> Result<Correction, serde_json::Error> {
    serde_json::from_str(&stored.correction)
}

type Lines = BTreeMap<(String, String), Quantity>;

fn lines_of(report: &Report) -> BTreeMap<Option<String>, (Lines, BTreeSet<UnknownKey>)> {
    report
        .projects
        .iter()
        .map(|p| {
            let lines = p
                .lines
                .iter()
                .map(|l| {
                    let q = Quantity::parse_exact(&l.quantity_exact).unwrap_or_default();
                    ((l.product.clone(), l.unit.clone()), q)
                })
                .collect();
            let unknown = p.unknown.iter().map(UnknownKey::of).collect();
            (p.project_id.clone(), (lines, unknown))
        })
        .collect()
}

/// An unknown window as an ordered key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct UnknownKey(String, String, Instant, Instant, String);

impl UnknownKey {
    fn of(u: &UnknownUsage) -> Self {
        Self(
            u.resource_type.as_str().to_owned(),
            u.resource_id.clone(),
            u.start,
            u.end,
            u.reason.clone(),
        )
    }
}

fn totals_of(report: &Report) -> Lines {
    report
        .totals
        .iter()
        .map(|t| {
            let q = Quantity::parse_exact(&t.quantity_exact).unwrap_or_default();
            ((t.product.clone(), t.unit.clone()), q)
        })
        .collect()
}

/// The lines whose quantity differs between `was` and `is`.
fn line_deltas(was: &Lines, is: &Lines) -> Vec<LineDelta> {
    let zero = Quantity {
        numerator: 0,
        denominator: 1,
    };
    let keys: BTreeSet<&(String, String)> = was.keys().chain(is.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let b = was.get(key).copied().unwrap_or(zero);
            let a = is.get(key).copied().unwrap_or(zero);
            let change = a.minus(b);
            (!change.is_zero()).then(|| LineDelta {
                product: key.0.clone(),
                unit: key.1.clone(),
                quantity: change.decimal(DECIMALS),
                quantity_exact: change.exact(),
                before_exact: b.exact(),
                after_exact: a.exact(),
            })
        })
        .collect()
}

/// Per project the changed lines and unknown windows; per product the change of the totals.
fn delta(before: &Report, after: &Report) -> (Vec<ProjectDelta>, Vec<LineDelta>) {
    let (old, new) = (lines_of(before), lines_of(after));
    let unknown_of = |report: &Report, key: &UnknownKey| {
        report
            .projects
            .iter()
            .flat_map(|p| p.unknown.iter())
            .find(|u| UnknownKey::of(u) == *key)
            .cloned()
    };
    let empty = (Lines::new(), BTreeSet::new());
    let owners: BTreeSet<&Option<String>> = old.keys().chain(new.keys()).collect();
    let mut projects = Vec::new();
    for owner in owners {
        let (was, was_unknown) = old.get(owner).unwrap_or(&empty);
        let (is, is_unknown) = new.get(owner).unwrap_or(&empty);
        let lines = line_deltas(was, is);
        let unknown_added: Vec<UnknownUsage> = is_unknown
            .difference(was_unknown)
            .filter_map(|k| unknown_of(after, k))
            .collect();
        let unknown_removed: Vec<UnknownUsage> = was_unknown
            .difference(is_unknown)
            .filter_map(|k| unknown_of(before, k))
            .collect();
        if lines.is_empty() && unknown_added.is_empty() && unknown_removed.is_empty() {
            continue;
        }
        projects.push(ProjectDelta {
            project_id: owner.clone(),
            lines,
            unknown_added,
            unknown_removed,
        });
    }
    (projects, line_deltas(&totals_of(before), &totals_of(after)))
}
