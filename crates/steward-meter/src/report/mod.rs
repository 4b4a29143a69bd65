//! Usage reports: per project and product, over a period, as of an instant, deterministic.
//!
//! # Schema v2 (see `docs/report-schema.md` and `docs/report-schema.json`)
//!
//! A report ([`Report`], the typed model behind every output form) holds the period, the
//! instant it describes (`as_of`), whether the period was over then (`period_state`), how far
//! usage is billed (`billed_until`), what the store has heard (`coverage`), the generator, a
//! digest of the product catalogue and of its own content, the gaps that overlap the period, per
//! project the lines, the windows that could not be billed (`unknown`) and with `detail` every
//! resource with its intervals, and exact per-product totals.
//!
//! Invariants:
//! - **Nothing after `as_of` is billed**: a running resource bills up to `as_of`, a period not
//!   begun bills nothing. The facts are the store's current facts (late ones included), so a
//!   period recomputed after late facts arrived says more, never less.
//! - **Unknown is not zero.** A resource window that cannot be stated, and billed time before
//!   the store's knowledge begins ([`Coverage::known_from`]), are listed as unknown, never
//!   billed and never printed as zero.
//! - **Deterministic.** The same facts, catalogue and `as_of` give byte-identical output: keys
//!   sorted (canonical JSON), projects, products, resources and windows in a stable order, times
//!   RFC 3339 UTC with microseconds, quantities exact rationals printed with 6 decimals, rounded
//!   half to even, totals summed exactly before rounding.

mod csv;
pub mod model;
mod table;

use std::collections::{BTreeMap, BTreeSet};

use futures_lite::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::facts::{FactKind, ResourceType};
use crate::record::Gap;
use crate::store::{Coverage, FactRow, ResourceFacts, Store, StoreError};
use crate::time::Instant;
use crate::usage::catalogue::Product;
use crate::usage::engine::{MICROS_PER_HOUR, Quantity, ResourceUsage, usage_by_owner};
use crate::usage::period::Period;
use crate::usage::timeline::{UsageFact, build, estimate_bounds, superseded};

pub use csv::to_csv;
pub use model::{
    Completeness, CoverageWindow, EstimateWindow, GapResolution, GapWindow, Generator,
    IntervalDetail, PeriodState, ProductTotal, ProjectUsage, ReconcileEvidence, Report,
    ReportCoverage, Resolution, ResourceDetail, ResourceProduct, SourceWatermark, UnknownUsage,
    UsageLine, Window,
};
pub use table::to_table;

/// Decimal places of printed quantities.
pub const DECIMALS: u32 = 6;
/// The schema version written into every report.
pub const SCHEMA_VERSION: u32 = 2;

/// What to report on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRequest {
    /// The period.
    pub period: Period,
    /// The instant the report describes (usually now): usage is billed up to it.
    pub as_of: Instant,
    /// Only this project, when set.
    pub project: Option<String>,
    /// Include every resource with its intervals.
    pub detail: bool,
}

impl ReportRequest {
    /// Where billing stops: `min(period.end, max(period.start, as_of))`.
    pub fn billed_until(&self) -> Instant {
        self.as_of.clamp(self.period.start, self.period.end)
    }

    /// Whether the period was over at `as_of`.
    pub fn period_state(&self) -> PeriodState {
        if self.as_of >= self.period.end {
            PeriodState::CompleteAsOf
        } else {
            PeriodState::Open
        }
    }

    /// The billed time `[period.start, billed_until)`, `None` when it is empty.
    fn billed(&self) -> Option<Period> {
        Period::new(self.period.start, self.billed_until()).ok()
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Reading the store failed.
    #[error("cannot read the store")]
    Store(#[from] StoreError),
}

#[derive(Debug, Default)]
struct Line {
    quantity: Quantity,
    resources: BTreeSet<(ResourceType, String)>,
    provenance: BTreeSet<String>,
}

/// Lines are keyed by product name and unit: two catalogue entries whose filled-in names meet
/// keep separate lines when their units differ, and add exactly when they do not.
type LineKey = (String, String);

#[derive(Debug, Default)]
struct ProjectReport {
    lines: BTreeMap<LineKey, Line>,
    unknown: Vec<UnknownUsage>,
    resources: Vec<ResourceDetail>,
}

/// The configuration digest of a report header: the digest of the product catalogue, the only
/// configuration that decides what a report says.
pub fn config_digest(catalogue: &[Product]) -> String {
    digest(&serde_json::to_value(catalogue).unwrap_or(Value::Null))
}

pub(crate) fn digest(value: &Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    let hash = Sha256::digest(text.as_bytes());
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

pub(crate) fn usage_facts(
    resource: ResourceFacts,
) -> Option<(ResourceType, String, Vec<UsageFact>)> {
    let resource_type = ResourceType::parse(&resource.resource_type)?;
    let facts = resource
        .facts
        .into_iter()
        .filter_map(
            |FactRow(kind, effective_at, project_id, origin, attributes)| {
                Some(UsageFact {
                    kind: FactKind::parse(&kind)?,
                    effective_at: Instant(effective_at),
                    project_id,
                    attributes,
                    origin,
                })
            },
        )
        .collect();
    Some((resource_type, resource.resource_id, facts))
}

/// Replaces the volume type ids that notifications carry by the names the reconciler listed
/// from cinder (`volume:ssd`, not `volume:26f2c12d-…`), keeping the id as `volume_type_id`.
/// An id cinder did not list (yet) stays as it is.
fn name_volume_types(facts: &mut [UsageFact], names: &BTreeMap<String, String>) {
    for fact in facts {
        let Some(Value::String(id)) = fact.attributes.get("volume_type") else {
            continue;
        };
        if let Some(name) = names.get(id) {
            let id = id.clone();
            fact.attributes
                .insert("volume_type".to_owned(), Value::String(name.clone()));
            fact.attributes
                .insert("volume_type_id".to_owned(), Value::String(id));
        }
    }
}

/// Builds the report: streams the facts resource by resource, builds each timeline, adds up
/// its usage over the billed time. Memory grows with the number of projects and products (and
/// resources, with `detail`), not with the facts.
pub async fn build_report(
    store: &dyn Store,
    request: &ReportRequest,
    catalogue: &[Product],
) -> Result<Report, ReportError> {
    Ok(build_with_evidence(store, request, catalogue).await?.0)
}

/// What a report's facts say about themselves, gathered while they stream past: the
/// completeness statement of a closed period is made of it.
#[derive(Debug, Default)]
pub(crate) struct Evidence {
    /// Estimated facts effective in the billed time that no exact fact supersedes.
    pub estimates: Vec<EstimateWindow>,
    /// Facts effective in the billed time, per origin.
    pub origins: BTreeMap<String, u64>,
}

impl Evidence {
    fn observe(
        &mut self,
        resource_type: ResourceType,
        resource_id: &str,
        facts: &[UsageFact],
        billed: &Period,
    ) {
        for fact in facts {
            if fact.effective_at < billed.start || fact.effective_at >= billed.end {
                continue;
            }
            *self.origins.entry(fact.origin.clone()).or_default() += 1;
            if fact.origin == "estimated" && !superseded(fact, facts) {
                let (not_before, not_after) = estimate_bounds(&fact.attributes)
                    .unwrap_or((fact.effective_at, fact.effective_at));
                self.estimates.push(EstimateWindow {
                    resource_type,
                    resource_id: resource_id.to_owned(),
                    kind: fact.kind.as_str().to_owned(),
                    not_before,
                    not_after,
                });
            }
        }
    }
}

/// [`build_report`], also gathering the [`Evidence`] of the facts it read.
pub(crate) async fn build_with_evidence(
    store: &dyn Store,
    request: &ReportRequest,
    catalogue: &[Product],
) -> Result<(Report, Evidence), ReportError> {
    let mut projects: BTreeMap<Option<String>, ProjectReport> = BTreeMap::new();
    let mut evidence = Evidence::default();
    let volume_types = store.volume_type_names().await?;
    if let Some(billed) = request.billed() {
        let mut stream = store.resources_until(billed.end);
        while let Some(resource) = stream.next().await {
            if let Some((resource_type, resource_id, mut facts)) = usage_facts(resource?) {
                if resource_type == ResourceType::Volume {
                    name_volume_types(&mut facts, &volume_types);
                }
                evidence.observe(resource_type, &resource_id, &facts, &billed);
                add_resource(
                    &mut projects,
                    request,
                    &billed,
                    catalogue,
                    resource_type,
                    &resource_id,
                    &facts,
                );
            }
        }
    }
    let gaps = store
        .gaps_overlapping(request.period.start, request.period.end)
        .await?;
    let coverage = store.coverage().await?;
    Ok((
        assemble(request, catalogue, projects, &gaps, coverage),
        evidence,
    ))
}

fn add_resource(
    projects: &mut BTreeMap<Option<String>, ProjectReport>,
    request: &ReportRequest,
    billed: &Period,
    catalogue: &[Product],
    resource_type: ResourceType,
    resource_id: &str,
    facts: &[UsageFact],
) {
    let timeline = build(resource_type, resource_id, facts);
    for usage in usage_by_owner(&timeline, billed, catalogue) {
        if request
            .project
            .as_ref()
            .is_some_and(|p| usage.project_id.as_ref() != Some(p))
        {
            continue;
        }
        if usage.products.is_empty() && usage.unknown.is_empty() && usage.intervals.is_empty() {
            continue;
        }
        let project = projects.entry(usage.project_id.clone()).or_default();
        add_usage(project, request.detail, resource_type, resource_id, &usage);
    }
}

fn add_usage(
    project: &mut ProjectReport,
    detail: bool,
    resource_type: ResourceType,
    resource_id: &str,
    usage: &ResourceUsage,
) {
    for p in &usage.products {
        let line = project
            .lines
            .entry((p.product.clone(), p.unit.clone()))
            .or_default();
        line.quantity.add(p.quantity);
        line.resources
            .insert((resource_type, resource_id.to_owned()));
        line.provenance.extend(p.origins.iter().cloned());
    }
    project
        .unknown
        .extend(usage.unknown.iter().map(|w| UnknownUsage {
            resource_type,
            resource_id: resource_id.to_owned(),
            start: w.start,
            end: w.end,
            reason: w.reason.clone(),
        }));
    if detail {
        project.resources.push(ResourceDetail {
            resource_type,
            resource_id: resource_id.to_owned(),
            intervals: usage
                .intervals
                .iter()
                .map(|i| IntervalDetail {
                    start: i.start,
                    end: i.end,
                    status: i.status,
                    attributes: i.attributes.clone(),
                })
                .collect(),
            products: usage
                .products
                .iter()
                .map(|p| ResourceProduct {
                    product: p.product.clone(),
                    unit: p.unit.clone(),
                    quantity: p.quantity.decimal(DECIMALS),
                    quantity_exact: p.quantity.exact(),
                })
                .collect(),
        });
    }
}

/// The billed time the store knows nothing about: before its first input or earliest fact
/// (all of it when the store has neither).
fn coverage_unknown(request: &ReportRequest, coverage: Coverage) -> Vec<CoverageWindow> {
    let Some(billed) = request.billed() else {
        return Vec::new();
    };
    let (end, reason) = match coverage.known_from() {
        None => (billed.end, "the store holds no input".to_owned()),
        Some(first) => (
            first.min(billed.end),
            format!("before the store's first input or fact ({first})"),
        ),
    };
    if end <= billed.start {
        return Vec::new();
    }
    vec![CoverageWindow {
        start: billed.start,
        end,
        reason,
    }]
}

#[derive(Default)]
struct Total {
    quantity: Quantity,
    projects: u64,
    resources: BTreeSet<(ResourceType, String)>,
}

fn assemble(
    request: &ReportRequest,
    catalogue: &[Product],
    projects: BTreeMap<Option<String>, ProjectReport>,
    gaps: &[Gap],
    coverage: Coverage,
) -> Report {
    let mut totals: BTreeMap<LineKey, Total> = BTreeMap::new();
    let projects: Vec<ProjectUsage> = projects
        .into_iter()
        .map(|(project_id, mut p)| {
            let lines = p
                .lines
                .into_iter()
                .map(|((product, unit), line)| {
                    let total = totals.entry((product.clone(), unit.clone())).or_default();
                    total.quantity.add(line.quantity);
                    total.projects += 1;
                    total.resources.extend(line.resources.iter().cloned());
                    UsageLine {
                        product,
                        unit,
                        quantity: line.quantity.decimal(DECIMALS),
                        quantity_exact: line.quantity.exact(),
                        resources: line.resources.len() as u64,
                        provenance: line.provenance.into_iter().collect(),
                    }
                })
                .collect();
            p.unknown.sort_by(|a, b| {
                (a.resource_type, &a.resource_id, a.start, a.end, &a.reason).cmp(&(
                    b.resource_type,
                    &b.resource_id,
                    b.start,
                    b.end,
                    &b.reason,
                ))
            });
            p.resources.sort_by(|a, b| {
                (a.resource_type, &a.resource_id).cmp(&(b.resource_type, &b.resource_id))
            });
            ProjectUsage {
                project_id,
                lines,
                unknown: p.unknown,
                resources: request.detail.then_some(p.resources),
            }
        })
        .collect();
    let totals = totals
        .into_iter()
        .map(|((product, unit), t)| ProductTotal {
            product,
            unit,
            quantity: t.quantity.decimal(DECIMALS),
            quantity_exact: t.quantity.exact(),
            projects: t.projects,
            resources: t.resources.len() as u64,
        })
        .collect();
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        generator: Generator {
            name: "steward".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
        period: Window {
            start: request.period.start,
            end: request.period.end,
        },
        as_of: request.as_of,
        period_state: request.period_state(),
        billed_until: request.billed_until(),
        coverage: ReportCoverage {
            first_input_at: coverage.first_input_at,
            last_input_at: coverage.last_input_at,
            first_fact_at: coverage.first_fact_at,
            unknown: coverage_unknown(request, coverage),
        },
        project: request.project.clone(),
        detail: request.detail,
        rounding: format!("half to even, {DECIMALS} decimal places"),
        hour_micros: MICROS_PER_HOUR as i64,
        config_digest: config_digest(catalogue),
        content_digest: String::new(),
        gaps: gaps
            .iter()
            .map(|g| GapWindow {
                source: g.source.as_str().to_owned(),
                start: g.started_at,
                end: g.ended_at,
                cause: g.cause.clone(),
            })
            .collect(),
        projects,
        totals,
        completeness: None,
    };
    report.content_digest = digest(&report.content());
    report
}

/// The fields a content digest covers: what the report says, not who said it.
const NOT_CONTENT: [&str; 6] = [
    "schema_version",
    "generator",
    "rounding",
    "hour_micros",
    "config_digest",
    "content_digest",
];

impl Report {
    /// The canonical JSON value (keys sorted).
    pub fn value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The canonical JSON text: sorted keys, two-space indentation, trailing newline.
    pub fn json(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.value()).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The digest of the content.
    pub fn content_digest(&self) -> &str {
        &self.content_digest
    }

    /// Recomputes the content digest after the content changed (a close).
    pub(crate) fn seal(&mut self) {
        self.content_digest = digest(&self.content());
    }

    fn content(&self) -> Value {
        let mut value = self.value();
        if let Some(map) = value.as_object_mut() {
            for key in NOT_CONTENT {
                map.remove(key);
            }
        }
        value
    }
}

/// A line's provenance names, joined with `+` (for CSV and table output).
fn provenance_text(provenance: &[String]) -> String {
    provenance.join("+")
}

#[cfg(test)]
mod tests;
