//! The typed report: one model behind the JSON, CSV, table and pull-API forms, and what a sink
//! reads back (every type deserializes what it serializes, and refuses unknown fields).
//!
//! Field names are the same wherever a concept appears: a window is `start`/`end` (half-open,
//! RFC 3339 UTC with microseconds), a quantity is `quantity` (6 decimals, rounded half to even)
//! with `quantity_exact` (the exact fraction in lowest terms).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::facts::ResourceType;
use crate::time::Instant;
use crate::usage::timeline::Status;

/// A usage report (schema version [`super::SCHEMA_VERSION`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The schema version.
    pub schema_version: u32,
    /// What made the report.
    pub generator: Generator,
    /// The period asked for.
    pub period: Window,
    /// The instant the report describes: usage is billed up to it. Reports from the same
    /// store contents, catalogue and `as_of` are byte-identical.
    pub as_of: Instant,
    /// Whether the period was over at `as_of`.
    pub period_state: PeriodState,
    /// The end of the billed time: `min(period.end, max(period.start, as_of))`. Nothing after it
    /// is billed; a period not begun at `as_of` has `billed_until == period.start`.
    pub billed_until: Instant,
    /// What the store has heard.
    pub coverage: ReportCoverage,
    /// The project filter, if any.
    pub project: Option<String>,
    /// Whether `projects[].resources` is included.
    pub detail: bool,
    /// How printed quantities are rounded.
    pub rounding: String,
    /// Microseconds per hour, the time unit of exact quantities.
    pub hour_micros: i64,
    /// `sha256:…` of the product catalogue.
    pub config_digest: String,
    /// `sha256:…` of the content (everything but generator, digests and constants).
    pub content_digest: String,
    /// Ingest gaps overlapping the period.
    pub gaps: Vec<GapWindow>,
    /// One entry per owner project.
    pub projects: Vec<ProjectUsage>,
    /// Per product and unit, the exact sum over all projects of the report.
    pub totals: Vec<ProductTotal>,
}

/// The program that made a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generator {
    /// `steward`.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// A half-open UTC window `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// First instant inside.
    pub start: Instant,
    /// First instant after.
    pub end: Instant,
}

/// Whether a period was over when the report was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeriodState {
    /// `as_of` is before the period's end: usage is billed up to `as_of` only (nothing, when
    /// the period has not begun) and will still grow.
    Open,
    /// The period was over at `as_of`; facts arriving later (late notifications, backfill) can
    /// still change it until it is closed.
    CompleteAsOf,
    /// Closed with a completeness statement; never changes (billing periods).
    Closed,
}

impl PeriodState {
    /// The name used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::CompleteAsOf => "complete-as-of",
            Self::Closed => "closed",
        }
    }
}

/// What the store has heard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportCoverage {
    /// When the store's first input was received; `null` when it has none.
    pub first_input_at: Option<Instant>,
    /// When its last input was received.
    pub last_input_at: Option<Instant>,
    /// The earliest time any fact describes (history replayed or delivered late can predate
    /// every reception).
    pub first_fact_at: Option<Instant>,
    /// Billed time the store knows nothing about: before its first input or fact, whichever
    /// is earlier (all of it, when the store holds neither). Usage there is unknown, not zero.
    pub unknown: Vec<CoverageWindow>,
}

/// A window of the billed time the store has no input for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageWindow {
    /// Start.
    pub start: Instant,
    /// End (exclusive).
    pub end: Instant,
    /// Why, in words.
    pub reason: String,
}

/// An ingest gap overlapping the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GapWindow {
    /// The source that was blind (`amqp`, `http`).
    pub source: String,
    /// Start.
    pub start: Instant,
    /// End; `null` while it is open.
    pub end: Option<Instant>,
    /// Why, in words.
    pub cause: String,
}

/// The usage of one owner project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectUsage {
    /// The owner; `null` when no fact names one.
    pub project_id: Option<String>,
    /// Per product and unit.
    pub lines: Vec<UsageLine>,
    /// Windows not billed because usage cannot be stated.
    pub unknown: Vec<UnknownUsage>,
    /// With `detail`: every resource with its intervals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<ResourceDetail>>,
}

/// What one project used of one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageLine {
    /// The product name, placeholders filled in.
    pub product: String,
    /// Its unit.
    pub unit: String,
    /// The quantity, 6 decimals.
    pub quantity: String,
    /// The exact quantity `numerator/denominator`.
    pub quantity_exact: String,
    /// Distinct resources behind the line.
    pub resources: u64,
    /// Where the intervals came from (`notification`, `ceilometer`, …).
    pub provenance: Vec<String>,
}

/// A window of one resource whose usage cannot be stated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnknownUsage {
    /// Resource type.
    pub resource_type: ResourceType,
    /// Resource id.
    pub resource_id: String,
    /// Start.
    pub start: Instant,
    /// End (exclusive).
    pub end: Instant,
    /// Why, in words.
    pub reason: String,
}

/// One resource with its billed intervals (`--detail`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDetail {
    /// Resource type.
    pub resource_type: ResourceType,
    /// Resource id.
    pub resource_id: String,
    /// Present intervals inside the billed time.
    pub intervals: Vec<IntervalDetail>,
    /// What it used, per product.
    pub products: Vec<ResourceProduct>,
}

/// One present interval of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntervalDetail {
    /// Start.
    pub start: Instant,
    /// End (exclusive).
    pub end: Instant,
    /// Run state.
    pub status: Status,
    /// Attributes in force (flavor, size, …).
    pub attributes: BTreeMap<String, serde_json::Value>,
}

/// What one resource used of one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceProduct {
    /// The product name.
    pub product: String,
    /// Its unit.
    pub unit: String,
    /// The quantity, 6 decimals.
    pub quantity: String,
    /// The exact quantity.
    pub quantity_exact: String,
}

/// One product's exact sum over every project of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductTotal {
    /// The product name.
    pub product: String,
    /// Its unit.
    pub unit: String,
    /// The quantity, 6 decimals (rounded once, from the exact sum).
    pub quantity: String,
    /// The exact sum.
    pub quantity_exact: String,
    /// Projects with a line of it.
    pub projects: u64,
    /// Distinct resources behind it.
    pub resources: u64,
}
