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
    /// Only in a closed report: what it is complete against (see `crate::close`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completeness: Option<Completeness>,
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

/// The completeness statement of a closed report: what the store had heard when the period
/// closed, how every gap overlapping the period was resolved, and where the facts came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Completeness {
    /// When the period was closed.
    pub closed_at: Instant,
    /// The grace after the period's end that the close waited for.
    pub grace_secs: u64,
    /// `true` when every gap is resolved and the store's knowledge covers the whole period.
    pub complete: bool,
    /// The statement in words.
    pub summary: String,
    /// The reconciliation the close relied on (the newest clean one that started after the
    /// period's end plus grace); `null` when the period was closed without one.
    pub reconciliation: Option<ReconcileEvidence>,
    /// Per source, how much it delivered and its watermark (its newest input).
    pub sources: Vec<SourceWatermark>,
    /// Every gap overlapping the period, with how it was resolved.
    pub gaps: Vec<GapResolution>,
    /// The estimated facts effective in the period that no exact fact replaced, with their
    /// bounds.
    pub estimates: Vec<EstimateWindow>,
    /// Facts effective in the period, per origin (`notification`, `ceilometer`,
    /// `reconciled`, `estimated`, …).
    pub facts_by_origin: BTreeMap<String, u64>,
}

/// The reconciliation a close relied on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileEvidence {
    /// When it began listing.
    pub started_at: Instant,
    /// When it had written its facts.
    pub finished_at: Instant,
    /// The resource types it listed completely.
    pub listed: Vec<String>,
    /// Resources the listings showed.
    pub resources_seen: i64,
    /// Facts it wrote.
    pub facts_written: i64,
}

/// One source's delivery when the period closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceWatermark {
    /// `amqp`, `http` or `reconcile`.
    pub source: String,
    /// Raw records stored from it (all time).
    pub records: i64,
    /// Facts stored from it (all time).
    pub facts: i64,
    /// When its newest input was received.
    pub last_received_at: Option<Instant>,
}

/// How a gap was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resolution {
    /// A clean reconciliation after the gap compared the APIs with the timelines; what it
    /// found is dated exactly.
    Reconciled,
    /// As reconciled, but some of what the gap hid could only be dated between two bounds
    /// (see `estimates`).
    Estimated,
    /// No clean reconciliation since the gap ended (or it is still open): usage the gap hid
    /// may be missing.
    Unresolved,
}

/// A gap overlapping a closed period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GapResolution {
    /// The source that was blind.
    pub source: String,
    /// Start.
    pub start: Instant,
    /// End; `null` when it was still open.
    pub end: Option<Instant>,
    /// Why it happened.
    pub cause: String,
    /// How it was resolved.
    pub resolution: Resolution,
    /// The start of the reconciliation that resolved it.
    pub resolved_by_reconcile_at: Option<Instant>,
    /// The estimates whose bounds overlap it.
    pub estimates: Vec<EstimateWindow>,
}

/// An estimated fact: the change happened somewhere in `[not_before, not_after]`; it is billed
/// as if at `not_before` (the earliest possible time, never more than was used).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimateWindow {
    /// Resource type.
    pub resource_type: ResourceType,
    /// Resource id.
    pub resource_id: String,
    /// The fact kind (`deleted`, …).
    pub kind: String,
    /// Earliest possible time.
    pub not_before: Instant,
    /// Latest possible time.
    pub not_after: Instant,
}
