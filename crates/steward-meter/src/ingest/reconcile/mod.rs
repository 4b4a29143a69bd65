//! The reconciler: fills in, from the OpenStack APIs, what the notifications did not bring.
//!
//! A notification lost before it reached Steward's queue (a transient exchange deleted by a
//! broker restart, a producer that gave up, a Ceilometer publisher that failed) cannot be
//! redelivered. The APIs still know the outcome: nova lists servers with exact
//! `launched_at`/`terminated_at`, deleted ones too (`changes-since`), and dates every
//! stop, start, resize or shelve in its instance actions; cinder, neutron and octavia list what
//! exists with its `created_at`.
//!
//! One run:
//! 1. lists servers (live, and changed since the previous run's listing, deleted ones
//!    included), page by page;
//! 2. summarises the store, one resource at a time ([`known`]);
//! 3. reads the instance actions only of servers the store disagrees with, does not know (or
//!    whose creation it lacks), or that nova changed since the previous listing
//!    ([`servers::why_look`]): the work follows the cloud's churn, not its size;
//! 4. lists volumes (and their types), snapshots, floating IPs, routers and load balancers;
//! 5. derives the facts those records state ([`servers`], [`listed`]) and keeps those the store
//!    does not already hold;
//! 6. commits each with its evidence (a raw record of source `reconcile`, kind
//!    `api_observation`, holding the API record it came from) and records the run.
//!
//! Invariants:
//! - **exact where the API dates it** (origin `reconciled`, the API's own time); **estimated
//!   where it does not** (origin `estimated`, with `estimate_not_before`/`estimate_not_after`),
//!   and an estimate is dated so that time the resource may not have existed, or run, is never
//!   billed. Any notification that arrives later within the bounds replaces the estimate;
//! - **idempotent**: a fact is written only when the store holds no fact of the same kind for
//!   the resource within [`SAME_FACT_SLACK_MICROS`]; a second run over the same state writes
//!   nothing, and notification copies still win over reconciled ones ([`crate::facts::CopyRank`]);
//! - **never from a partial view**: a deletion is inferred only from a listing that completed
//!   (every page); a failed listing is reported and infers nothing;
//! - memory holds the listings' narrow records and one summary per stored resource, never all
//!   facts.

mod known;
mod listed;
mod servers;
pub mod task;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use steward_cloud::CloudError;
use steward_cloud::inventory::{
    FloatingIp, InstanceAction, LoadBalancer, Router, Server, Snapshot, Volume, VolumeType,
};

use crate::facts::{Fact, FactKind, Origin, ResourceType};
use crate::record::{Accepted, Batch, RawRecord, RecordKind, Source};
use crate::store::{ReconcileRun, Store, StoreError};
use crate::time::Instant;
use crate::usage::timeline::{ESTIMATE_SLACK_MICROS, Presence, estimate_bounds};

use known::Known;
use listed::{Listed, narrow_to_gaps, vanished};

/// How close in time a stored fact of the same kind must be for a derived fact to count as
/// already known: notifications date by the envelope, a little after the API's second.
pub const SAME_FACT_SLACK_MICROS: i64 = 2_000_000;

/// Facts committed per transaction.
const FACTS_PER_COMMIT: usize = 500;

/// The resource types the reconciler compares, by listing.
pub const RECONCILED: [ResourceType; 6] = [
    ResourceType::Instance,
    ResourceType::Volume,
    ResourceType::Snapshot,
    ResourceType::FloatingIp,
    ResourceType::Router,
    ResourceType::LoadBalancer,
];

/// What the reconciler reads from the cloud: [`steward_cloud::Cloud`] in service, recorded
/// answers in tests and benchmarks.
pub trait Api: Sync {
    /// Live servers of every project; with `changes_since`, those changed since (deleted too).
    fn servers(
        &self,
        changes_since: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<Vec<Server>, CloudError>> + Send;
    /// One server's instance actions with their steps.
    fn instance_actions(
        &self,
        server_id: &str,
    ) -> impl Future<Output = Result<Vec<InstanceAction>, CloudError>> + Send;
    /// Every volume.
    fn volumes(&self) -> impl Future<Output = Result<Vec<Volume>, CloudError>> + Send;
    /// Every volume type (the names for the ids notifications carry).
    fn volume_types(&self) -> impl Future<Output = Result<Vec<VolumeType>, CloudError>> + Send;
    /// Every snapshot.
    fn snapshots(&self) -> impl Future<Output = Result<Vec<Snapshot>, CloudError>> + Send;
    /// Every floating IP.
    fn floating_ips(&self) -> impl Future<Output = Result<Vec<FloatingIp>, CloudError>> + Send;
    /// Every router.
    fn routers(&self) -> impl Future<Output = Result<Vec<Router>, CloudError>> + Send;
    /// Every load balancer.
    fn load_balancers(&self) -> impl Future<Output = Result<Vec<LoadBalancer>, CloudError>> + Send;
}

impl Api for steward_cloud::Cloud {
    fn servers(
        &self,
        changes_since: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<Vec<Server>, CloudError>> + Send {
        steward_cloud::Cloud::servers(self, changes_since)
    }
    fn instance_actions(
        &self,
        server_id: &str,
    ) -> impl Future<Output = Result<Vec<InstanceAction>, CloudError>> + Send {
        steward_cloud::Cloud::instance_actions(self, server_id)
    }
    fn volumes(&self) -> impl Future<Output = Result<Vec<Volume>, CloudError>> + Send {
        steward_cloud::Cloud::volumes(self)
    }
    fn volume_types(&self) -> impl Future<Output = Result<Vec<VolumeType>, CloudError>> + Send {
        steward_cloud::Cloud::volume_types(self)
    }
    fn snapshots(&self) -> impl Future<Output = Result<Vec<Snapshot>, CloudError>> + Send {
        steward_cloud::Cloud::snapshots(self)
    }
    fn floating_ips(&self) -> impl Future<Output = Result<Vec<FloatingIp>, CloudError>> + Send {
        steward_cloud::Cloud::floating_ips(self)
    }
    fn routers(&self) -> impl Future<Output = Result<Vec<Router>, CloudError>> + Send {
        steward_cloud::Cloud::routers(self)
    }
    fn load_balancers(&self) -> impl Future<Output = Result<Vec<LoadBalancer>, CloudError>> + Send {
        steward_cloud::Cloud::load_balancers(self)
    }
}

/// How a run behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileOptions {
    /// Compute and return the changes without writing anything.
    pub dry_run: bool,
    /// How far before the previous listing nova's `changes-since` reaches back (clock skew,
    /// a listing that took a while).
    pub margin_secs: u64,
    /// Servers whose instance actions are read at once.
    pub concurrency: usize,
    /// The resource types to list (default: all of [`RECONCILED`]).
    pub resources: Vec<ResourceType>,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            margin_secs: 300,
            concurrency: 8,
            resources: RECONCILED.to_vec(),
        }
    }
}

/// One fact the reconciler derived, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The fact.
    pub fact: Fact,
    /// Why it was derived (for the diff and the evidence).
    pub why: String,
}

impl Planned {
    fn new(fact: Fact, why: impl Into<String>) -> Self {
        Self {
            fact,
            why: why.into(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The run as recorded (or as it would be, for a dry run).
    pub run: ReconcileRun,
    /// The facts written (or, for a dry run, that would be), in resource and time order.
    pub changes: Vec<Planned>,
    /// Servers whose instance actions were read, with the reason.
    pub looked_at: Vec<(String, String)>,
}

/// Why a run could not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// The store could not be read or written.
    #[error("reconcile: cannot use the store")]
    Store(#[from] StoreError),
}

/// The UTC time an API record states.
pub(crate) fn instant(t: DateTime<Utc>) -> Instant {
    Instant::from_datetime(t)
}

/// The bounds of an estimate as attributes.
pub(crate) fn estimate_attributes(
    not_before: Instant,
    not_after: Instant,
) -> BTreeMap<String, Value> {
    BTreeMap::from([
        (
            "estimate_not_before".to_owned(),
            json!(not_before.to_rfc3339()),
        ),
        (
            "estimate_not_after".to_owned(),
            json!(not_after.to_rfc3339()),
        ),
    ])
}

/// Whether the store lacks `planned` (see the idempotence invariant).
fn is_new(planned: &Fact, known: Option<&Known>) -> bool {
    let Some(known) = known else { return true };
    if known.has_near(planned.kind, planned.effective_at, SAME_FACT_SLACK_MICROS) {
        return false;
    }
    // A life begins and ends once: a stored creation or deletion, dated by another source
    // a few seconds apart (octavia's envelope, cinder's payload), is the same transition.
    if matches!(planned.kind, FactKind::Created | FactKind::Deleted)
        && known.facts.iter().any(|(k, _)| *k == planned.kind)
    {
        return false;
    }
    if planned.origin == Origin::Estimated
        && let Some((lo, hi)) = estimate_bounds(&planned.attributes)
    {
        let (lo, hi) = (
            lo.micros() - ESTIMATE_SLACK_MICROS,
            hi.micros() + ESTIMATE_SLACK_MICROS,
        );
        return !known
            .facts
            .iter()
            .any(|(k, t)| *k == planned.kind && (lo..=hi).contains(t));
    }
    true
}

/// One non-nova listing in the reconciler's terms: `None` when it failed or was not wanted.
struct ListedType {
    resource_type: ResourceType,
    items: Option<Vec<Listed>>,
    listed_at: Instant,
}

impl ListedType {
    fn of<T>(resource_type: ResourceType, listing: Listing<T>, convert: fn(T) -> Listed) -> Self {
        Self {
            resource_type,
            items: listing
                .records
                .map(|r| r.into_iter().map(convert).collect()),
            listed_at: listing.done_at,
        }
    }
}

/// One listing's result: the records and when it completed, or the problem.
struct Listing<T> {
    records: Option<Vec<T>>,
    done_at: Instant,
}

async fn list<T>(
    what: &str,
    wanted: bool,
    problems: &mut Vec<String>,
    call: impl Future<Output = Result<Vec<T>, CloudError>>,
) -> Listing<T> {
    if !wanted {
        return Listing {
            records: None,
            done_at: Instant::now(),
        };
    }
    let began = std::time::Instant::now();
    let records = match call.await {
        Ok(records) => {
            tracing::info!(
                listing = what,
                items = records.len(),
                secs = began.elapsed().as_secs_f64(),
                "listed"
            );
            Some(records)
        }
        Err(error) => {
            let mut message = format!("listing {what}: {}", error_chain(&error));
            if message.contains("is not configured for interface") {
                message.push_str(
                    " (the catalog has no such service: leave it out of meter.reconcile.resources)",
                );
            }
            tracing::warn!(problem = %message, "listing failed; nothing is inferred from it");
            problems.push(message);
            None
        }
    };
    Listing {
        records,
        done_at: Instant::now(),
    }
}

pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Runs one reconciliation; see the module docs.
pub async fn reconcile<A: Api>(
    store: &dyn Store,
    api: &A,
    options: &ReconcileOptions,
) -> Result<Outcome, ReconcileError> {
    let started_at = Instant::now();
    let wants = |t: ResourceType| options.resources.contains(&t);
    let runs = store.reconcile_runs(100).await?;
    let previous_listing = |t: ResourceType| {
        runs.iter()
            .find(|r| r.listed.iter().any(|l| l == t.as_str()))
            .map(|r| r.started_at)
    };
    let known_from = store.coverage().await?.known_from();
    let margin = options.margin_secs as i64 * 1_000_000;
    let servers_since = Instant(
        previous_listing(ResourceType::Instance)
            .or(known_from)
            .unwrap_or(started_at)
            .micros()
            .saturating_sub(margin),
    );

    // 1. Nova's listings.
    let mut problems = Vec::new();
    let want_servers = wants(ResourceType::Instance);
    let live = list("servers", want_servers, &mut problems, api.servers(None)).await;
    let changed_servers = list(
        "servers changed since",
        want_servers,
        &mut problems,
        api.servers(Some(servers_since.to_datetime())),
    )
    .await;
    // One record per server, sorted by id; where both listings have it, the changed one's.
    let servers: Option<Vec<Server>> = match (live.records, changed_servers.records) {
        (Some(live), Some(changed)) => {
            let mut all: Vec<Server> = changed.into_iter().chain(live).collect();
            all.sort_by(|a, b| a.id.cmp(&b.id));
            all.dedup_by(|later, first| later.id == first.id);
            Some(all)
        }
        _ => None,
    };
    let servers_listed_at = changed_servers.done_at;
    // 2. The store's view, and the windows in which it could not hear.
    let known = known::known(store, &options.resources).await?;
    let now = Instant::now();
    let gaps: Vec<(Instant, Instant)> = store
        .gaps_overlapping(Instant(i64::MIN), now)
        .await?
        .into_iter()
        .map(|g| (g.started_at, g.ended_at.unwrap_or(now)))
        .collect();
    let lower_bound = |known: &Known, t: ResourceType| {
        known
            .last_fact_at
            .into_iter()
            .chain(previous_listing(t))
            .max()
            .unwrap_or(Instant(i64::MIN))
    };

    let mut planned: Vec<(Planned, Value)> = Vec::new();
    let mut listed_types: BTreeSet<&'static str> = BTreeSet::new();
    let mut resources_seen = 0i64;

    // 3–4. Servers.
    let mut looked_at = Vec::new();
    if let Some(servers) = &servers {
        listed_types.insert(ResourceType::Instance.as_str());
        resources_seen += servers.len() as i64;
        // Every server nova changed since the last listing is read: a loss need not leave a
        // gap (a producer that gave up, a binding missing while Steward stayed connected), and
        // the work is bounded by the churn, not by the cloud's size.
        let changed_since = Some(servers_since);
        let mut to_read = Vec::new();
        for server in servers {
            let k = known.get(&(ResourceType::Instance, server.id.clone()));
            if let Some(why) = servers::why_look(server, k, changed_since) {
                looked_at.push((server.id.clone(), why));
                to_read.push(server);
            }
        }
        tracing::info!(
            servers = servers.len(),
            to_read = to_read.len(),
            "reading instance actions"
        );
        let concurrency = options.concurrency.max(1);
        let reads: Vec<_> = to_read
            .into_iter()
            .map(|server| read_actions(api, server))
            .collect();
        let mut actions = futures_util::stream::iter(reads).buffer_unordered(concurrency);
        while let Some((server, result)) = actions.next().await {
            match result {
                Ok(actions) => {
                    let k = known.get(&(ResourceType::Instance, server.id.clone()));
                    let evidence = json!({"server": server, "instance_actions": actions});
                    for p in servers::server_facts(server, &actions) {
                        if is_new(&p.fact, k) {
                            planned.push((p, evidence.clone()));
                        }
                    }
                }
                Err(error) => problems.push(format!(
                    "instance actions of server {}: {}",
                    server.id,
                    error_chain(&error)
                )),
            }
        }
        for ((t, id), k) in &known {
            if *t == ResourceType::Instance
                && matches!(k.presence, Presence::Present | Presence::Undescribed)
                && servers.binary_search_by(|s| s.id.as_str().cmp(id)).is_err()
            {
                let (lo, hi) = narrow_to_gaps(lower_bound(k, *t), servers_listed_at, &gaps);
                let p = vanished(
                    *t,
                    id,
                    None,
                    lo,
                    hi,
                    format!("nova no longer lists it (not even as deleted since {servers_since})"),
                );
                if is_new(&p.fact, Some(k)) {
                    planned.push((p, json!({"listed_at": servers_listed_at})));
                }
            }
        }
    }

    // The other listings come after nova's instance actions: openstack_sdk refuses compute
    // microversions after a lookup of a service the catalog lacks (a cloud without octavia).
    let mut others: Vec<ListedType> = Vec::new();
    let volumes = list(
        "volumes",
        wants(ResourceType::Volume),
        &mut problems,
        api.volumes(),
    )
    .await;
    others.push(ListedType::of(
        ResourceType::Volume,
        volumes,
        Listed::volume,
    ));
    let types = list(
        "volume types",
        wants(ResourceType::Volume),
        &mut problems,
        api.volume_types(),
    )
    .await;
    if let Some(records) = types.records
        && !options.dry_run
    {
        let names: Vec<(String, String)> = records.into_iter().map(|t| (t.id, t.name)).collect();
        store.record_volume_types(&names, types.done_at).await?;
    }
    let t = ResourceType::Snapshot;
    let l = list("snapshots", wants(t), &mut problems, api.snapshots()).await;
    others.push(ListedType::of(t, l, Listed::snapshot));
    let t = ResourceType::FloatingIp;
    let l = list("floating IPs", wants(t), &mut problems, api.floating_ips()).await;
    others.push(ListedType::of(t, l, Listed::floating_ip));
    let t = ResourceType::Router;
    let l = list("routers", wants(t), &mut problems, api.routers()).await;
    others.push(ListedType::of(t, l, Listed::router));
    let t = ResourceType::LoadBalancer;
    let l = list(
        "load balancers",
        wants(t),
        &mut problems,
        api.load_balancers(),
    )
    .await;
    others.push(ListedType::of(t, l, Listed::load_balancer));

    // 3–4. Everything else.
    for ListedType {
        resource_type,
        items: listing,
        listed_at,
    } in &others
    {
        let Some(listing) = listing else { continue };
        listed_types.insert(resource_type.as_str());
        resources_seen += listing.len() as i64;
        let mut seen = std::collections::HashSet::with_capacity(listing.len());
        for item in listing {
            seen.insert(item.id.as_str());
            let k = known.get(&(*resource_type, item.id.clone()));
            let present =
                k.filter(|k| matches!(k.presence, Presence::Present | Presence::Undescribed));
            let evidence = || json!({"listed": item.attributes(), "status": item.status});
            let candidate = match present {
                _ if item.gone => present.map(|_| item.deleted()),
                _ if !item.billable => None,
                None => Some(item.created()),
                Some(k) => changed(item, k, lower_bound, *listed_at),
            };
            if let Some(p) = candidate
                && is_new(&p.fact, k)
            {
                planned.push((p, evidence()));
            }
        }
        for ((t, id), k) in &known {
            if t == resource_type
                && matches!(k.presence, Presence::Present | Presence::Undescribed)
                && !seen.contains(id.as_str())
            {
                let (lo, hi) = narrow_to_gaps(lower_bound(k, *t), *listed_at, &gaps);
                let p = vanished(
                    *t,
                    id,
                    None,
                    lo,
                    hi,
                    format!("no longer listed at {listed_at}"),
                );
                if is_new(&p.fact, Some(k)) {
                    planned.push((p, json!({"listed_at": listed_at})));
                }
            }
        }
    }

    planned.sort_by(|(a, _), (b, _)| {
        (
            a.fact.resource_type,
            &a.fact.resource_id,
            a.fact.effective_at,
        )
            .cmp(&(
                b.fact.resource_type,
                &b.fact.resource_id,
                b.fact.effective_at,
            ))
    });
    let estimated = planned
        .iter()
        .filter(|(p, _)| p.fact.origin == Origin::Estimated)
        .count() as i64;

    // 5. Commit with evidence.
    let mut facts_written = 0i64;
    if !options.dry_run {
        for chunk in planned.chunks(FACTS_PER_COMMIT) {
            let received_at = Instant::now();
            let batch = Batch {
                accepted: chunk
                    .iter()
                    .map(|(p, evidence)| Accepted {
                        record: evidence_record(p, evidence, received_at),
                        facts: vec![p.fact.clone()],
                    })
                    .collect(),
                quarantined: Vec::new(),
            };
            for outcome in store.commit(std::slice::from_ref(&batch)).await? {
                facts_written += outcome.facts as i64;
            }
        }
    }
    let run = ReconcileRun {
        started_at,
        finished_at: Instant::now(),
        listed: listed_types.into_iter().map(str::to_owned).collect(),
        resources_seen,
        facts_written: if options.dry_run {
            planned.len() as i64
        } else {
            facts_written
        },
        estimated,
        problems: (!problems.is_empty()).then(|| problems.join("; ")),
    };
    if !options.dry_run {
        store.record_reconcile_run(&run).await?;
    }
    Ok(Outcome {
        run,
        changes: planned.into_iter().map(|(p, _)| p).collect(),
        looked_at,
    })
}

/// One server's instance actions, with the server.
async fn read_actions<'a, A: Api>(
    api: &'a A,
    server: &'a Server,
) -> (&'a Server, Result<Vec<InstanceAction>, CloudError>) {
    (server, api.instance_actions(&server.id).await)
}

/// A size or type change of a listed resource the store has present.
fn changed(
    item: &Listed,
    known: &Known,
    lower_bound: impl Fn(&Known, ResourceType) -> Instant,
    listed_at: Instant,
) -> Option<Planned> {
    if let (Some(now), Some(before)) = (item.size_gb, known.size_gb)
        && now != before
    {
        return Some(item.changed(
            FactKind::Resized,
            lower_bound(known, item.resource_type),
            listed_at,
            now > before,
            format!("listed with {now} GiB; store: {before} GiB"),
        ));
    }
    if let (Some(now), Some(before)) = (item.volume_type.as_deref(), known.volume_type.as_deref())
        && now != before
    {
        return Some(item.changed(
            FactKind::Retyped,
            lower_bound(known, item.resource_type),
            listed_at,
            false,
            format!("listed with type {now}; store: {before}"),
        ));
    }
    None
}

/// The raw record behind a reconciled fact: what the API said, and why the fact follows.
fn evidence_record(planned: &Planned, evidence: &Value, received_at: Instant) -> RawRecord {
    let body = json!({
        "fact": planned.fact.semantic_key(),
        "why": planned.why,
        "observed": evidence,
    });
    RawRecord {
        dedup_key: format!("api:{}", planned.fact.semantic_key()),
        source: Source::Reconcile,
        kind: RecordKind::ApiObservation,
        message_id: None,
        exchange: None,
        routing_key: None,
        envelope_version: None,
        publisher_id: Some("steward-reconciler".to_owned()),
        event_type: Some(planned.fact.event_type.clone()),
        priority: None,
        emitted_at: Some(planned.fact.effective_at),
        received_at,
        body: body.to_string(),
        scrubbed: None,
    }
}

/// When `gap` was resolved: the start of the first reconciliation without problems that began
/// after the gap ended (what the source missed, the APIs have then been compared for). `None`
/// while the gap is open or no such run has happened. `runs` in any order.
pub fn gap_resolved_at(gap: &crate::record::Gap, runs: &[ReconcileRun]) -> Option<Instant> {
    let ended = gap.ended_at?;
    runs.iter()
        .filter(|r| r.problems.is_none() && r.started_at >= ended)
        .map(|r| r.started_at)
        .min()
}

/// The changes of an outcome as text lines, one per fact (`steward meter reconcile`).
pub fn describe(changes: &[Planned]) -> Vec<String> {
    changes
        .iter()
        .map(|p| {
            let f = &p.fact;
            let bounds = estimate_bounds(&f.attributes)
                .map(|(lo, hi)| format!(" (between {lo} and {hi})"))
                .unwrap_or_default();
            format!(
                "{} {} {} {} at {}{bounds}: {}",
                f.origin.as_str(),
                f.resource_type.as_str(),
                f.resource_id,
                f.kind.as_str(),
                f.effective_at,
                p.why
            )
        })
        .collect()
}
