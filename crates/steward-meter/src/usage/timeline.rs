//! Resource timelines: the facts of one resource turned into state intervals.
//!
//! A [`Timeline`] is a sequence of [`Segment`]s `[start, end)` that together cover all time
//! (the first starts at −∞, the last ends at +∞), never overlap and never leave holes. Each says
//! whether the resource was present, absent or **unknown** then, and with which billable
//! attributes, status and owner.
//!
//! Invariants (property-tested):
//! - the timeline is a pure function of the *set* of facts: order and duplicates do not matter
//!   (facts are sorted by time, a fixed kind order, then their content; equal facts are one);
//! - segments are contiguous and adjacent segments differ;
//! - before the first fact, a resource whose creation was seen is absent; one whose creation
//!   was never seen is *unknown* until a payload time says since when it existed (an
//!   instance's `launched_at`, any other resource's `created_at`), and from then until its first
//!   fact *undescribed*: it existed, but with which size, flavor or run state is not known.
//!   Unknown is never billed, neither as zero nor as full; undescribed bills only products that
//!   need nothing but its existence and owner;
//! - an instance whose payload says it was never launched (`launched_at` empty) and a failed
//!   build never bill;
//! - the owner belongs to the resource, not to a fact: time before the first fact that names
//!   an owner is the first named owner's (a transfer changes the owner from then on);
//! - an estimate (origin `estimated`, the reconciler's inference between two bounds) is
//!   superseded by any other fact of the same kind within its bounds (widened by
//!   [`ESTIMATE_SLACK_MICROS`]): a late notification replaces it, and only there;
//! - facts are applied in time order to the microsecond; facts at the same instant in a fixed
//!   order: life begins first, ends last, all others in the order of [`FactKind`]. The rules
//!   are written down, for every event, in `docs/billing-semantics.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use crate::facts::{FactKind, ResourceType};
use crate::time::{Instant, parse_timestamp};

/// A fact as the usage engine reads it (from the store).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageFact {
    /// What happened.
    pub kind: FactKind,
    /// When.
    pub effective_at: Instant,
    /// Owner project, if the fact names one.
    pub project_id: Option<String>,
    /// Attributes as stored.
    pub attributes: BTreeMap<String, Value>,
    /// `notification`, `ceilometer`, … (provenance).
    pub origin: String,
}

/// Whether the resource existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Nothing dates the resource yet.
    Unknown,
    /// It existed (a payload time says so) but no fact describes it yet: its attributes and
    /// run state are not known.
    Undescribed,
    /// It existed.
    Present,
    /// It did not exist (not yet created, or deleted).
    Absent,
}

/// Run state of an instance (other resources stay `Running`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Active (also while resizing, migrating or rebuilding), or any state of a resource
    /// without run states.
    Running,
    /// Paused: frozen in memory on its host.
    Paused,
    /// Powered off (`SHUTOFF`), still holding its host's resources.
    Stopped,
    /// Suspended to disk on its host.
    Suspended,
    /// Shelved but not yet offloaded: powered off, still on its host.
    Shelved,
    /// Shelved and offloaded: holds no host resources.
    ShelvedOffloaded,
    /// Booted into its rescue image.
    Rescued,
    /// Soft-deleted: gone for its owner, reclaimable until nova reclaims it.
    SoftDeleted,
}

impl Status {
    /// The stable name used in reports and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
            Self::Suspended => "suspended",
            Self::Shelved => "shelved",
            Self::ShelvedOffloaded => "shelved_offloaded",
            Self::Rescued => "rescued",
            Self::SoftDeleted => "soft_deleted",
        }
    }

    /// The status a nova `vm_state` (the payload's `state`) stands for; `None` for states
    /// that say nothing about the run state (`building`, `resized`, `error`, `deleted`).
    pub fn from_vm_state(state: &str) -> Option<Self> {
        Some(match state {
            "active" => Self::Running,
            "paused" => Self::Paused,
            "stopped" => Self::Stopped,
            "suspended" => Self::Suspended,
            "shelved" => Self::Shelved,
            "shelved_offloaded" => Self::ShelvedOffloaded,
            "rescued" => Self::Rescued,
            "soft-delete" | "soft_deleted" => Self::SoftDeleted,
            _ => return None,
        })
    }
}

/// One interval of a timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Start (`None` = since always).
    pub start: Option<Instant>,
    /// End, exclusive (`None` = still so).
    pub end: Option<Instant>,
    /// Whether the resource existed.
    pub presence: Presence,
    /// Run state (instances).
    pub status: Status,
    /// Billable attributes in force.
    pub attributes: BTreeMap<String, Value>,
    /// Owner in force.
    pub project_id: Option<String>,
    /// Where the facts behind this segment came from.
    pub origins: BTreeSet<String>,
}

/// The state intervals of one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Resource type.
    pub resource_type: ResourceType,
    /// Resource id.
    pub resource_id: String,
    /// Contiguous segments from −∞ to +∞.
    pub segments: Vec<Segment>,
}

/// Attributes that describe an event rather than the resource's billable state.
const NOT_BILLABLE: &[&str] = &[
    "audit_period_beginning",
    "audit_period_ending",
    "caller_project_id",
    "created_at",
    "estimate_not_after",
    "estimate_not_before",
    "launched_at",
    "meter",
    "power_state",
    "state",
    "status",
    "unit",
    "volume",
];

/// Kinds that begin a resource's life: before the first of them it did not exist.
fn begins_life(kind: FactKind, resource_type: ResourceType) -> bool {
    match kind {
        FactKind::Created => true,
        FactKind::Uploaded | FactKind::Activated => resource_type == ResourceType::Image,
        _ => false,
    }
}

/// Fixed order for facts at the same instant: life begins first, ends last.
fn rank(kind: FactKind) -> u8 {
    match kind {
        FactKind::Created | FactKind::Uploaded | FactKind::CreateFailed => 0,
        FactKind::Activated => 1,
        FactKind::Deleted => 9,
        _ => 5,
    }
}

/// Whether the fact's payload says the instance had never been launched by then (nova sends
/// `launched_at` empty until the first boot; the normaliser keeps that as `null`).
fn never_launched(fact: &UsageFact, resource_type: ResourceType) -> bool {
    resource_type == ResourceType::Instance
        && matches!(fact.attributes.get("launched_at"), Some(Value::Null))
}

/// The state between two facts. Cloned once per fact, so the heavy parts are shared: the
/// attributes are copied only when a fact really changes one.
#[derive(Debug, Clone, PartialEq)]
struct State {
    presence: Presence,
    status: Status,
    attributes: Arc<BTreeMap<String, Value>>,
    project_id: Option<Arc<str>>,
    origins: Origins,
}

/// Provenance names as a small set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Origins(u8);

const ORIGIN_NAMES: [&str; 5] = [
    "ceilometer",
    "estimated",
    "notification",
    "other",
    "reconciled",
];

impl Origins {
    fn of(name: &str) -> Self {
        let i = ORIGIN_NAMES.iter().position(|n| *n == name).unwrap_or(3);
        Self(1 << i)
    }

    fn names(self) -> BTreeSet<String> {
        ORIGIN_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| (*n).to_owned())
            .collect()
    }
}

fn billable(attributes: &BTreeMap<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
    attributes
        .iter()
        .filter(|(k, _)| !NOT_BILLABLE.contains(&k.as_str()))
}

/// The time a fact's payload says the resource already existed since: an instance's
/// `launched_at` (its `created_at` is when the request arrived, before any boot), any other
/// resource's `created_at`. An audit period's beginning dates nothing: the audit lists what
/// existed at any time in its period.
fn dated_since(fact: &UsageFact, resource_type: ResourceType) -> Option<Instant> {
    let key = match resource_type {
        ResourceType::Instance => "launched_at",
        _ => "created_at",
    };
    let text = fact.attributes.get(key)?.as_str()?;
    parse_timestamp(text)
        .ok()
        .flatten()
        .filter(|t| *t <= fact.effective_at)
}

impl State {
    fn apply(&mut self, fact: &UsageFact, resource_type: ResourceType) {
        if fact.kind == FactKind::CreateFailed {
            // A failed build: an instance that is not running never was (a rescheduled build
            // that then succeeds begins its life with its `create.end`).
            if self.presence != Presence::Present {
                self.presence = Presence::Absent;
            }
            return;
        }
        if self.presence == Presence::Absent && !begins_life(fact.kind, resource_type) {
            // Before creation or after deletion only a new life matters: late audits and
            // samples of a deleted resource change nothing.
            return;
        }
        let first_description = self.presence != Presence::Present;
        self.origins = Origins::of(&fact.origin);
        // Audits and samples only fill in what is not known yet; transitions overwrite.
        let fill_only = matches!(fact.kind, FactKind::Exists | FactKind::Measured);
        if let Some(project) = &fact.project_id
            && (!fill_only || self.project_id.is_none())
        {
            self.project_id = Some(Arc::from(project.as_str()));
        }
        let vm_state = fact
            .attributes
            .get("state")
            .and_then(Value::as_str)
            .and_then(Status::from_vm_state);
        match fact.kind {
            FactKind::Deleted => {
                self.presence = Presence::Absent;
                return;
            }
            FactKind::Stopped => self.status = Status::Stopped,
            FactKind::Suspended => self.status = Status::Suspended,
            FactKind::Paused => self.status = Status::Paused,
            FactKind::Shelved => self.status = Status::Shelved,
            FactKind::ShelvedOffloaded => self.status = Status::ShelvedOffloaded,
            FactKind::Rescued => self.status = Status::Rescued,
            FactKind::SoftDeleted => self.status = Status::SoftDeleted,
            FactKind::Started
            | FactKind::Resumed
            | FactKind::Unpaused
            | FactKind::Unshelved
            | FactKind::Unrescued
            | FactKind::Restored => self.status = Status::Running,
            // A rebuilt instance keeps its power state (nova powers a stopped one off again).
            FactKind::Rebuilt => {
                self.status = match vm_state {
                    Some(Status::Stopped) => Status::Stopped,
                    _ => Status::Running,
                }
            }
            k if begins_life(k, resource_type) => self.status = Status::Running,
            // The first fact about a resource whose creation was not seen: its payload's
            // state, if it names one.
            _ if first_description => self.status = vm_state.unwrap_or(Status::Running),
            _ => {}
        }
        self.presence = Presence::Present;
        for (k, v) in billable(&fact.attributes) {
            let keep = match self.attributes.get(k) {
                Some(old) => fill_only || old == v,
                None => false,
            };
            if !keep {
                Arc::make_mut(&mut self.attributes).insert(k.clone(), v.clone());
            }
        }
    }
}

/// How far outside its bounds a fact still supersedes an estimate: envelope times and the
/// APIs' whole seconds differ from each other by up to a second or two.
pub const ESTIMATE_SLACK_MICROS: i64 = 2_000_000;

/// The bounds an estimate states, `(not before, not after)`.
pub fn estimate_bounds(attributes: &BTreeMap<String, Value>) -> Option<(Instant, Instant)> {
    let bound = |key: &str| {
        attributes
            .get(key)
            .and_then(Value::as_str)
            .and_then(|t| parse_timestamp(t).ok().flatten())
    };
    Some((bound("estimate_not_before")?, bound("estimate_not_after")?))
}

/// Whether `fact` is an estimate that another fact of `facts` supersedes.
pub(crate) fn superseded(fact: &UsageFact, facts: &[UsageFact]) -> bool {
    if fact.origin != "estimated" {
        return false;
    }
    let (lo, hi) =
        estimate_bounds(&fact.attributes).unwrap_or((fact.effective_at, fact.effective_at));
    let (lo, hi) = (
        lo.micros() - ESTIMATE_SLACK_MICROS,
        hi.micros() + ESTIMATE_SLACK_MICROS,
    );
    facts.iter().any(|other| {
        other.origin != "estimated"
            && other.kind == fact.kind
            && (lo..=hi).contains(&other.effective_at.micros())
    })
}

/// Builds the timeline of one resource from its facts (in any order, duplicates allowed).
pub fn build(resource_type: ResourceType, resource_id: &str, facts: &[UsageFact]) -> Timeline {
    let mut sorted: Vec<&UsageFact> = facts.iter().filter(|f| !superseded(f, facts)).collect();
    // A total order on content, so the input order never matters; full ties are duplicates.
    sorted.sort_by(|a, b| {
        (
            a.effective_at,
            rank(a.kind),
            a.kind,
            &a.project_id,
            &a.origin,
        )
            .cmp(&(
                b.effective_at,
                rank(b.kind),
                b.kind,
                &b.project_id,
                &b.origin,
            ))
            .then_with(|| canonical(&a.attributes).cmp(&canonical(&b.attributes)))
    });
    sorted.dedup_by(|a, b| a == b);
    let canonical_start = canonical_start(resource_type, &sorted);
    let sorted = match &canonical_start {
        Some(moved) => {
            let mut with: Vec<&UsageFact> = sorted.iter().skip(1).copied().collect();
            with.insert(0, moved);
            with
        }
        None => sorted,
    };

    let initial = match sorted.first() {
        Some(f)
            if begins_life(f.kind, resource_type)
                || f.kind == FactKind::CreateFailed
                || never_launched(f, resource_type) =>
        {
            Presence::Absent
        }
        _ => Presence::Unknown,
    };
    let mut state = State {
        presence: initial,
        status: Status::Running,
        attributes: Arc::new(BTreeMap::new()),
        project_id: None,
        origins: Origins::default(),
    };

    // The state after every fact, in time order (plus the dating of an unseen creation).
    let mut transitions: Vec<(Instant, State)> = Vec::with_capacity(sorted.len() + 1);
    if let (Presence::Unknown, Some(first)) = (initial, sorted.first())
        && let Some(since) = sorted
            .iter()
            .filter_map(|f| dated_since(f, resource_type))
            .min()
            .filter(|t| *t < first.effective_at)
    {
        // A payload dates the resource: it existed since then, but what it was like before
        // its first fact is not known (a size or flavor may have changed in between).
        let dated = State {
            presence: Presence::Undescribed,
            status: Status::Running,
            attributes: Arc::new(BTreeMap::new()),
            project_id: first.project_id.as_deref().map(Arc::from),
            origins: Origins::of(&first.origin),
        };
        transitions.push((since, dated));
    }
    let mut current = state.clone();
    for fact in &sorted {
        if let Some((_, last)) = transitions.last() {
            current = last.clone();
        }
        current.apply(fact, resource_type);
        match transitions.last_mut() {
            // Several facts at one instant: the state after the last of them holds.
            Some((at, last)) if *at == fact.effective_at => *last = current.clone(),
            _ => transitions.push((fact.effective_at, current.clone())),
        }
    }

    let mut segments = Vec::with_capacity(transitions.len() + 1);
    let mut start: Option<Instant> = None;
    for (at, next) in transitions {
        if same(&state, &next) {
            state.origins.0 |= next.origins.0;
            continue;
        }
        segments.push(segment(start, Some(at), &state));
        start = Some(at);
        state = next;
    }
    segments.push(segment(start, None, &state));
    // One owner per resource: time before the first fact that names one is that owner's.
    if let Some(owner) = segments.iter().find_map(|s| s.project_id.clone()) {
        for s in segments.iter_mut().take_while(|s| s.project_id.is_none()) {
            s.project_id = Some(owner.clone());
        }
    }
    merge_equal_neighbours(&mut segments);
    Timeline {
        resource_type,
        resource_id: resource_id.to_owned(),
        segments,
    }
}

/// For resources billed from their `created_at` (not instances, whose life begins at the
/// launch, nor images, at the upload): when the first fact is the creation and a fact carries
/// an earlier `created_at` (a creation seen only through a copy that lacks it, such as
/// Ceilometer's neutron events, dated when generated), the creation moved to that time. So a
/// resource has one start whichever sources reported it.
fn canonical_start(resource_type: ResourceType, sorted: &[&UsageFact]) -> Option<UsageFact> {
    if matches!(resource_type, ResourceType::Instance | ResourceType::Image) {
        return None;
    }
    let first = sorted.first()?;
    if first.kind != FactKind::Created {
        return None;
    }
    let since = sorted
        .iter()
        .filter_map(|f| dated_since(f, resource_type))
        .min()
        .filter(|t| *t < first.effective_at)?;
    let mut moved = (*first).clone();
    moved.effective_at = since;
    Some(moved)
}

/// Joins adjacent segments that became equal when the owner was filled in.
fn merge_equal_neighbours(segments: &mut Vec<Segment>) {
    let mut merged: Vec<Segment> = Vec::with_capacity(segments.len());
    for s in segments.drain(..) {
        match merged.last_mut() {
            Some(last)
                if last.presence == s.presence
                    && last.status == s.status
                    && last.attributes == s.attributes
                    && last.project_id == s.project_id =>
            {
                last.end = s.end;
                last.origins.extend(s.origins);
            }
            _ => merged.push(s),
        }
    }
    *segments = merged;
}

fn canonical(attributes: &BTreeMap<String, Value>) -> String {
    serde_json::to_string(attributes).unwrap_or_default()
}

fn same(a: &State, b: &State) -> bool {
    a.presence == b.presence
        && a.status == b.status
        && a.attributes == b.attributes
        && a.project_id == b.project_id
}

fn segment(start: Option<Instant>, end: Option<Instant>, s: &State) -> Segment {
    Segment {
        start,
        end,
        presence: s.presence,
        status: s.status,
        attributes: (*s.attributes).clone(),
        project_id: s.project_id.as_deref().map(str::to_owned),
        origins: s.origins.names(),
    }
}
