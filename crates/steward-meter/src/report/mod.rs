//! Usage reports: per project and product, over a period, deterministic.
//!
//! # Schema v1 (see `docs/report-schema.md` and `docs/report-schema.json`)
//!
//! A report holds the period, the generator, a digest of the product catalogue, a digest of its
//! own content, the gaps that overlap the period, and per project the lines (product, unit,
//! quantity as a decimal string, exact quantity, number of resources, provenance), the windows
//! that could not be billed (`unknown`), and with `detail` every resource with its intervals.
//!
//! Determinism: the same facts and catalogue give byte-identical output. Keys are sorted
//! (canonical JSON); projects, products, resources and windows have a stable order; times are
//! RFC 3339 UTC with microseconds; quantities are exact rationals printed with 6 decimals,
//! rounded half to even. "No data" is never printed as zero: it is an `unknown` window.

mod csv;
mod table;

use std::collections::{BTreeMap, BTreeSet};

use futures_lite::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::facts::{FactKind, ResourceType};
use crate::record::Gap;
use crate::store::{FactRow, ResourceFacts, Store, StoreError};
use crate::time::Instant;
use crate::usage::catalogue::Product;
use crate::usage::engine::{MICROS_PER_HOUR, Quantity, ResourceUsage, usage_by_owner};
use crate::usage::period::Period;
use crate::usage::timeline::{UsageFact, build};

pub use csv::to_csv;
pub use table::to_table;

/// Decimal places of printed quantities.
pub const DECIMALS: u32 = 6;
/// The schema version written into every report.
pub const SCHEMA_VERSION: u32 = 1;

/// What to report on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRequest {
    /// The period.
    pub period: Period,
    /// Only this project, when set.
    pub project: Option<String>,
    /// Include every resource with its intervals.
    pub detail: bool,
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Reading the store failed.
    #[error("cannot read the store")]
    Store(#[from] StoreError),
}

/// A finished report; [`Report::json`] is its canonical form.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The canonical JSON value (keys sorted).
    pub value: Value,
}

#[derive(Debug, Default)]
struct Line {
    unit: String,
    quantity: Quantity,
    resources: BTreeSet<(ResourceType, String)>,
    provenance: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct ProjectReport {
    lines: BTreeMap<String, Line>,
    unknown: Vec<Value>,
    resources: Vec<Value>,
}

/// The configuration digest of a report header: the digest of the product catalogue, the only
/// configuration that decides what a report says.
pub fn config_digest(catalogue: &[Product]) -> String {
    digest(&serde_json::to_value(catalogue).unwrap_or(Value::Null))
}

fn digest(value: &Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    let hash = Sha256::digest(text.as_bytes());
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn usage_facts(resource: ResourceFacts) -> Option<(ResourceType, String, Vec<UsageFact>)> {
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

/// Builds the report: streams the facts resource by resource, builds each timeline, adds up
/// its usage. Memory grows with the number of projects and products, not with the facts.
pub async fn build_report(
    store: &dyn Store,
    request: &ReportRequest,
    catalogue: &[Product],
) -> Result<Report, ReportError> {
    let mut projects: BTreeMap<Option<String>, ProjectReport> = BTreeMap::new();
    let mut stream = store.resources_until(request.period.end);
    while let Some(resource) = stream.next().await {
        if let Some((resource_type, resource_id, facts)) = usage_facts(resource?) {
            add_resource(
                &mut projects,
                request,
                catalogue,
                resource_type,
                &resource_id,
                &facts,
            );
        }
    }
    drop(stream);
    let gaps = store
        .gaps_overlapping(request.period.start, request.period.end)
        .await?;
    Ok(assemble(request, catalogue, projects, &gaps))
}

fn add_resource(
    projects: &mut BTreeMap<Option<String>, ProjectReport>,
    request: &ReportRequest,
    catalogue: &[Product],
    resource_type: ResourceType,
    resource_id: &str,
    facts: &[UsageFact],
) {
    let timeline = build(resource_type, resource_id, facts);
    for usage in usage_by_owner(&timeline, &request.period, catalogue) {
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
        let line = project.lines.entry(p.product.clone()).or_default();
        line.unit.clone_from(&p.unit);
        line.quantity.add(p.quantity);
        line.resources
            .insert((resource_type, resource_id.to_owned()));
        line.provenance.extend(p.origins.iter().cloned());
    }
    for w in &usage.unknown {
        project.unknown.push(json!({
            "resource_type": resource_type.as_str(),
            "resource_id": resource_id,
            "start": w.start,
            "end": w.end,
            "reason": w.reason,
        }));
    }
    if detail {
        let intervals: Vec<Value> = usage
            .intervals
            .iter()
            .map(|i| {
                json!({
                    "start": i.start,
                    "end": i.end,
                    "status": i.status.as_str(),
                    "attributes": i.attributes,
                })
            })
            .collect();
        let products: Vec<Value> = usage
            .products
            .iter()
            .map(|p| json!({"product": p.product, "unit": p.unit, "quantity": p.quantity.decimal(DECIMALS)}))
            .collect();
        project.resources.push(json!({
            "resource_type": resource_type.as_str(),
            "resource_id": resource_id,
            "intervals": intervals,
            "products": products,
        }));
    }
}

fn assemble(
    request: &ReportRequest,
    catalogue: &[Product],
    projects: BTreeMap<Option<String>, ProjectReport>,
    gaps: &[Gap],
) -> Report {
    let projects: Vec<Value> = projects
        .into_iter()
        .map(|(project_id, mut p)| {
            let lines: Vec<Value> = p
                .lines
                .iter()
                .map(|(product, line)| {
                    json!({
                        "product": product,
                        "unit": line.unit,
                        "quantity": line.quantity.decimal(DECIMALS),
                        "quantity_exact": line.quantity.exact(),
                        "resources": line.resources.len(),
                        "provenance": line.provenance,
                    })
                })
                .collect();
            let key = |v: &Value| {
                (
                    v["resource_type"].as_str().unwrap_or_default().to_owned(),
                    v["resource_id"].as_str().unwrap_or_default().to_owned(),
                    v["start"].as_str().unwrap_or_default().to_owned(),
                )
            };
            p.unknown.sort_by_key(key);
            p.resources.sort_by_key(key);
            let mut entry = json!({
                "project_id": project_id,
                "lines": lines,
                "unknown": p.unknown,
            });
            if request.detail {
                entry["resources"] = Value::Array(p.resources);
            }
            entry
        })
        .collect();
    let gaps: Vec<Value> = gaps
        .iter()
        .map(|g| json!({"source": g.source.as_str(), "start": g.started_at, "end": g.ended_at, "cause": g.cause}))
        .collect();
    let content = json!({
        "period": {"start": request.period.start, "end": request.period.end},
        "project": request.project,
        "detail": request.detail,
        "gaps": gaps,
        "projects": projects,
    });
    let mut value = content.clone();
    value["schema_version"] = json!(SCHEMA_VERSION);
    value["generator"] = json!({"name": "steward", "version": env!("CARGO_PKG_VERSION")});
    value["rounding"] = json!(format!("half to even, {DECIMALS} decimal places"));
    value["hour_micros"] = json!(MICROS_PER_HOUR as i64);
    value["config_digest"] = json!(config_digest(catalogue));
    value["content_digest"] = json!(digest(&content));
    Report { value }
}

/// A line's provenance names, joined with `+` (for CSV and table output).
fn provenance_text(line: &Value) -> String {
    let names: Vec<&str> = line["provenance"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    names.join("+")
}

impl Report {
    /// The canonical JSON text: sorted keys, two-space indentation, trailing newline.
    pub fn json(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.value).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The digest of the content (period, filter, gaps, projects).
    pub fn content_digest(&self) -> &str {
        self.value["content_digest"].as_str().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
