//! The reconciler over real captures: the 242 notifications of real nova, neutron, cinder and
//! octavia, and those services' API answers at the time (`../shared/fixtures/real/`), served
//! by a recorded [`Api`]. What is lost of the notifications, the reconciler writes back from the
//! APIs, and the bill comes out as with nothing lost (within the second the APIs round to); a
//! store that lost nothing gets nothing; a deletion no API dates is estimated inside the gap.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use steward_cloud::CloudError;
use steward_cloud::inventory::{
    FloatingIp, InstanceAction, LoadBalancer, Router, Server, Snapshot, Volume, VolumeType,
    parse_items,
};
use steward_meter::facts::{FactKind, Origin, ResourceType};
use steward_meter::ingest::amqp::decode_delivery;
use steward_meter::ingest::reconcile::{Api, ReconcileOptions, reconcile};
use steward_meter::record::{Batch, Decoded, Source};
use steward_meter::report::{ReportRequest, build_report};
use steward_meter::scrub::Scrubber;
use steward_meter::store::{self, Store};
use steward_meter::time::{Instant, parse_timestamp};
use steward_meter::usage::catalogue::default_catalogue;
use steward_meter::usage::period::Period;

fn real() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/real")
}

fn api(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(real().join("api").join(name)).unwrap()).unwrap()
}

fn t(text: &str) -> Instant {
    parse_timestamp(text).unwrap().unwrap()
}

/// The cloud as the captures recorded it: every server deleted (live listing empty, the
/// deleted ones under `changes-since`), the other resources as listed while they existed.
#[derive(Default)]
struct Recorded {
    live: Vec<Value>,
    changed: Vec<Value>,
    actions: BTreeMap<String, Vec<Value>>,
    volumes: Option<Vec<Value>>,
    snapshots: Vec<Value>,
    floating_ips: Vec<Value>,
    routers: Vec<Value>,
    load_balancers: Vec<Value>,
    /// Servers whose actions were read.
    read: std::sync::Mutex<Vec<String>>,
}

fn items(name: &str, key: &str) -> Vec<Value> {
    api(name)[key].as_array().unwrap().clone()
}

impl Recorded {
    fn captured() -> Self {
        let all = api("nova_instance_actions_deleted.json");
        let actions = all
            .as_object()
            .unwrap()
            .iter()
            .map(|(id, v)| {
                let detail = v["detail"].as_object().unwrap();
                (
                    id.clone(),
                    detail
                        .values()
                        .map(|a| a["instanceAction"].clone())
                        .collect(),
                )
            })
            .collect();
        Self {
            live: items("nova_detail_all_tenants_plain.json", "servers"),
            changed: items("nova_detail_changes_since.json", "servers"),
            actions,
            volumes: Some(items("cinder_volumes_detail_all_tenants.json", "volumes")),
            snapshots: items("cinder_snapshots_detail_all_tenants.json", "snapshots"),
            floating_ips: items("neutron_floatingips_admin_all.json", "floatingips"),
            routers: items("neutron_routers_admin_all.json", "routers"),
            load_balancers: items("octavia_loadbalancers_admin_all.json", "loadbalancers"),
            read: Default::default(),
        }
    }
}

#[allow(clippy::result_large_err)] // the Api trait's error type
fn parsed<T: serde::de::DeserializeOwned>(
    items: &[Value],
    key: &str,
) -> Result<Vec<T>, CloudError> {
    parse_items(items, key).map_err(|e| CloudError::Unexpected {
        what: key.to_owned(),
        detail: e.to_string(),
    })
}

impl Api for Recorded {
    async fn servers(
        &self,
        changes_since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Vec<Server>, CloudError> {
        match changes_since {
            None => parsed(&self.live, "servers"),
            Some(_) => parsed(&self.changed, "servers"),
        }
    }
    async fn instance_actions(&self, server_id: &str) -> Result<Vec<InstanceAction>, CloudError> {
        self.read.lock().unwrap().push(server_id.to_owned());
        parsed(
            self.actions.get(server_id).map_or(&[][..], Vec::as_slice),
            "instanceAction",
        )
    }
    async fn volumes(&self) -> Result<Vec<Volume>, CloudError> {
        match &self.volumes {
            Some(v) => parsed(v, "volumes"),
            None => Err(CloudError::Unexpected {
                what: "listing volumes/detail".to_owned(),
                detail: "503 Service Unavailable".to_owned(),
            }),
        }
    }
    /// The types the volume listing names (`volume_type` and `volume_type_id`, 3.63).
    async fn volume_types(&self) -> Result<Vec<VolumeType>, CloudError> {
        let types: BTreeMap<String, String> = self
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| {
                Some((
                    v["volume_type_id"].as_str()?.to_owned(),
                    v["volume_type"].as_str()?.to_owned(),
                ))
            })
            .collect();
        Ok(types
            .into_iter()
            .map(|(id, name)| VolumeType { id, name })
            .collect())
    }
    async fn snapshots(&self) -> Result<Vec<Snapshot>, CloudError> {
        parsed(&self.snapshots, "snapshots")
    }
    async fn floating_ips(&self) -> Result<Vec<FloatingIp>, CloudError> {
        parsed(&self.floating_ips, "floatingips")
    }
    async fn routers(&self) -> Result<Vec<Router>, CloudError> {
        parsed(&self.routers, "routers")
    }
    async fn load_balancers(&self) -> Result<Vec<LoadBalancer>, CloudError> {
        parsed(&self.load_balancers, "loadbalancers")
    }
}

/// A SQLite store holding the captured notifications that `keep` lets through.
async fn store_with(keep: impl Fn(&str) -> bool) -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = store::open(&url).await.unwrap();
    let mut batch = Batch {
        accepted: Vec::new(),
        quarantined: Vec::new(),
    };
    let jsonl = std::fs::read_to_string(real().join("notifications.jsonl")).unwrap();
    for line in jsonl.lines().filter(|l| keep(l)) {
        let capture: Value = serde_json::from_str(line).unwrap();
        match decode_delivery(
            capture["body"].to_string().as_bytes(),
            capture["exchange"].as_str().unwrap(),
            capture["routing_key"].as_str().unwrap(),
            t("2026-12-02T04:00:00Z"),
            &Scrubber::default(),
        ) {
            Decoded::Accepted(a) => batch.accepted.push(a),
            Decoded::Quarantined(q) => panic!("quarantined: {}", q.reason),
        }
    }
    store.commit(&[batch]).await.unwrap();
    (dir, store)
}

/// Billed seconds per (resource, product) over the capture's hour; none may be unknown.
async fn billed(store: &dyn Store) -> BTreeMap<(String, String), f64> {
    let (billed, unknown) = billed_and_unknown(store).await;
    assert!(unknown.is_empty(), "unknown usage: {unknown:?}");
    billed
}

/// Billed seconds per (resource, product), and the unknown windows (resource, start, end,
/// reason).
async fn billed_and_unknown(
    store: &dyn Store,
) -> (
    BTreeMap<(String, String), f64>,
    Vec<(String, Instant, Instant, String)>,
) {
    let request = ReportRequest {
        period: Period::new(t("2026-12-02T03:00:00Z"), t("2026-12-02T04:00:00Z")).unwrap(),
        as_of: t("2026-12-02T04:00:00Z"),
        project: None,
        detail: true,
    };
    let report = build_report(store, &request, &default_catalogue())
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    let mut unknown = Vec::new();
    for p in &report.projects {
        for u in &p.unknown {
            unknown.push((u.resource_id.clone(), u.start, u.end, u.reason.clone()));
        }
        for r in p.resources.as_deref().unwrap_or_default() {
            for product in &r.products {
                let quantity: f64 = product.quantity.parse().unwrap();
                let seconds = if product.unit == "hour" {
                    quantity * 3600.0
                } else {
                    quantity
                };
                out.insert((r.resource_id.clone(), product.product.clone()), seconds);
            }
        }
    }
    (out, unknown)
}

const ALPHA_1: &str = "366177c4-39b7-4aea-8108-2a86a67f5983";
const ALPHA_2: &str = "9fd3561e-c519-4231-afe4-adf116c451a3";

fn servers_only() -> ReconcileOptions {
    ReconcileOptions {
        resources: vec![ResourceType::Instance],
        ..ReconcileOptions::default()
    }
}

#[tokio::test]
async fn lost_nova_notifications_are_written_back_and_bill_the_same() {
    let (_a, complete) = store_with(|_| true).await;
    let expected = billed(&*complete).await;

    // Everything nova said about alpha-1 (resized, stopped, started) and alpha-2 (shelved,
    // offloaded) is lost.
    let is_lost = |line: &str| {
        (line.contains(ALPHA_1) || line.contains(ALPHA_2))
            && line.contains("\"exchange\": \"nova\"")
    };
    let (_b, lossy) = store_with(|l| !is_lost(l)).await;
    let before = billed(&*lossy).await;
    assert!(
        !before.keys().any(|(id, _)| id == ALPHA_1 || id == ALPHA_2),
        "the loss is real: {before:?}"
    );

    let cloud = Recorded::captured();
    let outcome = reconcile(&*lossy, &cloud, &servers_only()).await.unwrap();
    assert_eq!(outcome.run.problems, None);
    assert_eq!(outcome.run.listed, vec!["instance".to_owned()]);
    let kinds: Vec<(String, FactKind, Origin)> = outcome
        .changes
        .iter()
        .map(|p| (p.fact.resource_id.clone(), p.fact.kind, p.fact.origin))
        .collect();
    use FactKind as K;
    assert_eq!(
        kinds,
        vec![
            (ALPHA_1.into(), K::Created, Origin::Reconciled),
            (ALPHA_1.into(), K::Resized, Origin::Reconciled),
            (ALPHA_1.into(), K::Stopped, Origin::Reconciled),
            (ALPHA_1.into(), K::Started, Origin::Reconciled),
            (ALPHA_1.into(), K::Deleted, Origin::Reconciled),
            (ALPHA_2.into(), K::Created, Origin::Reconciled),
            (ALPHA_2.into(), K::Shelved, Origin::Reconciled),
            (ALPHA_2.into(), K::ShelvedOffloaded, Origin::Estimated),
            (ALPHA_2.into(), K::Deleted, Origin::Reconciled),
        ]
    );
    assert_eq!(outcome.run.facts_written, 9);
    assert_eq!(outcome.run.estimated, 1);
    // Every server nova changed since the store began is read (beta-1 too, whose
    // notifications all arrived: nothing new for it).
    let read = cloud.read.lock().unwrap().clone();
    assert_eq!(read.len(), 3, "{read:?}");

    let (after, unknown) = billed_and_unknown(&*lossy).await;
    // No API says which flavor alpha-1 had before its resize: that time is unknown, not
    // billed, and not billed as an "unknown" flavor either.
    assert_eq!(
        unknown,
        vec![(
            ALPHA_1.to_owned(),
            t("2026-12-02T03:29:23Z"),
            t("2026-12-02T03:29:37Z"),
            "instance:{flavor_name} has no flavor_name".to_owned()
        )]
    );
    let mut expected_keys: Vec<_> = expected.keys().collect();
    let before_resize = (ALPHA_1.to_owned(), "instance:rs.small".to_owned());
    expected_keys.retain(|k| **k != before_resize);
    assert_eq!(after.keys().collect::<Vec<_>>(), expected_keys);
    for (key, seconds) in expected.iter().filter(|(k, _)| **k != before_resize) {
        let got = after[key];
        assert!(
            (got - seconds).abs() <= 2.0,
            "{key:?}: {got} s billed after reconciling, {seconds} s with nothing lost"
        );
    }

    // The evidence is stored with the facts, under source `reconcile`.
    let status = lossy.status().await.unwrap();
    let reconciled = status
        .sources
        .iter()
        .find(|s| s.source == Source::Reconcile.as_str())
        .expect("reconcile records");
    assert_eq!(reconciled.records, 9);

    // A second run finds nothing more, and the bill does not move.
    let again = reconcile(&*lossy, &cloud, &servers_only()).await.unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(billed_and_unknown(&*lossy).await.0, after);
    assert_eq!(lossy.reconcile_runs(5).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_store_that_lost_nothing_gets_nothing() {
    let (_a, complete) = store_with(|_| true).await;
    let expected = billed(&*complete).await;
    let cloud = Recorded::captured();
    // With a gap open over the whole capture, every server is looked at; still nothing is new.
    complete
        .record_gap(
            Source::Amqp,
            t("2026-12-02T03:29:00Z"),
            t("2026-12-02T03:30:00Z"),
            "broker restart",
        )
        .await
        .unwrap();
    let outcome = reconcile(&*complete, &cloud, &servers_only())
        .await
        .unwrap();
    assert!(outcome.changes.is_empty(), "{:#?}", outcome.changes);
    assert_eq!(billed(&*complete).await, expected);
}

#[tokio::test]
async fn an_empty_store_learns_every_listed_resource_with_the_notifications_times() {
    let (_a, complete) = store_with(|_| true).await;
    let notified = complete.facts(10_000).await.unwrap();
    let (_b, empty) = store_with(|_| false).await;
    let cloud = Recorded::captured();
    let outcome = reconcile(&*empty, &cloud, &ReconcileOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome.run.problems, None);
    assert_eq!(outcome.run.listed.len(), 6, "{:?}", outcome.run.listed);
    let created: BTreeMap<&str, Instant> = outcome
        .changes
        .iter()
        .filter(|p| p.fact.kind == FactKind::Created)
        .map(|p| (p.fact.resource_id.as_str(), p.fact.effective_at))
        .collect();
    // 3 servers, 2 volumes, 1 snapshot, 2 floating IPs, 1 router, 2 load balancers (the
    // third is still PENDING_CREATE: not billed yet).
    assert_eq!(created.len(), 11, "{created:?}");
    for (id, at) in &created {
        let notified_at = notified
            .iter()
            .find(|f| f.resource_id == *id && f.kind == "created")
            .map(|f| f.effective_at)
            .unwrap_or_else(|| panic!("no created notification for {id}"));
        let slack = if notified
            .iter()
            .any(|f| f.resource_id == *id && f.resource_type == "load_balancer")
        {
            // Octavia's notification is dated when it went ACTIVE, the API by the request.
            10_000_000
        } else {
            // An API second; a launch reset by a resize is dated by the build's last step.
            2_000_000
        };
        assert!(
            (notified_at.micros() - at.micros()).abs() < slack,
            "{id}: reconciled {at}, notified {notified_at}"
        );
    }
    let volume = outcome
        .changes
        .iter()
        .find(|p| p.fact.resource_type == ResourceType::Volume)
        .unwrap();
    assert_eq!(
        volume.fact.attributes["volume_type"], "26f2c12d-3ffd-45c3-9cba-c7f26d684c56",
        "the type's id, as cinder's notifications carry it"
    );
    // Reports name the product by the type's name, which the reconciler listed. (alpha-1's
    // flavor before its resize is unknown to an empty store: reported so, not billed.)
    let (billed, _unknown) = billed_and_unknown(&*empty).await;
    assert!(
        billed.keys().any(|(_, p)| p == "volume:__DEFAULT__"),
        "{billed:?}"
    );
    assert!(
        !billed.keys().any(|(_, p)| p.contains("26f2c12d")),
        "{billed:?}"
    );
}

#[tokio::test]
async fn a_deletion_no_api_dates_is_estimated_inside_the_gap_and_a_late_notification_wins() {
    // Both volumes' deletions are lost in a broker restart; cinder no longer lists them.
    let lost = |l: &str| l.contains("volume.delete.end");
    let (_a, complete) = store_with(|_| true).await;
    let expected = billed(&*complete).await;
    let (_b, lossy) = store_with(|l| !lost(l)).await;
    let gap = (t("2026-12-02T03:31:24Z"), t("2026-12-02T03:31:40Z"));
    lossy
        .record_gap(Source::Amqp, gap.0, gap.1, "broker restart")
        .await
        .unwrap();
    let cloud = Recorded {
        volumes: Some(vec![]),
        ..Recorded::captured()
    };
    let options = ReconcileOptions {
        resources: vec![ResourceType::Volume],
        ..ReconcileOptions::default()
    };
    let outcome = reconcile(&*lossy, &cloud, &options).await.unwrap();
    let deletions: Vec<_> = outcome
        .changes
        .iter()
        .filter(|p| p.fact.kind == FactKind::Deleted)
        .collect();
    assert_eq!(deletions.len(), 2, "{:#?}", outcome.changes);
    for d in &deletions {
        assert_eq!(d.fact.origin, Origin::Estimated);
        assert_eq!(d.fact.effective_at, gap.0, "the earliest the gap allows");
        assert_eq!(d.fact.attributes["estimate_not_before"], gap.0.to_rfc3339());
    }
    assert_eq!(outcome.run.estimated, 2);
    let estimated = billed(&*lossy).await;
    for ((id, product), seconds) in &estimated {
        if product.starts_with("volume:") {
            assert!(
                *seconds <= expected[&(id.clone(), product.clone())] + 1e-6,
                "an estimate never bills more than the truth"
            );
        }
    }

    // The lost deletions turn up late (from a quarantine replay, say): they replace the
    // estimates, and the bill is the one with nothing lost.
    let replay = {
        let mut batch = Batch {
            accepted: Vec::new(),
            quarantined: Vec::new(),
        };
        let jsonl = std::fs::read_to_string(real().join("notifications.jsonl")).unwrap();
        for line in jsonl.lines().filter(|l| lost(l)) {
            let capture: Value = serde_json::from_str(line).unwrap();
            if let Decoded::Accepted(a) = decode_delivery(
                capture["body"].to_string().as_bytes(),
                capture["exchange"].as_str().unwrap(),
                capture["routing_key"].as_str().unwrap(),
                t("2026-12-02T04:00:00Z"),
                &Scrubber::default(),
            ) {
                batch.accepted.push(a);
            }
        }
        batch
    };
    assert_eq!(replay.accepted.len(), 2);
    lossy.commit(&[replay]).await.unwrap();
    assert_eq!(billed(&*lossy).await, expected);
}

#[tokio::test]
async fn a_failed_listing_is_reported_and_infers_no_deletion() {
    let (_a, complete) = store_with(|l| !l.contains("volume.delete.end")).await;
    let cloud = Recorded {
        volumes: None,
        ..Recorded::captured()
    };
    let options = ReconcileOptions {
        resources: vec![ResourceType::Volume, ResourceType::Snapshot],
        ..ReconcileOptions::default()
    };
    let outcome = reconcile(&*complete, &cloud, &options).await.unwrap();
    let problems = outcome.run.problems.clone().unwrap();
    assert!(
        problems.contains("listing volumes") && problems.contains("503"),
        "{problems}"
    );
    assert_eq!(outcome.run.listed, vec!["snapshot".to_owned()]);
    assert!(
        outcome
            .changes
            .iter()
            .all(|p| p.fact.resource_type != ResourceType::Volume),
        "{:#?}",
        outcome.changes
    );
    // The failed run is recorded; the next one's deletion window starts at the last run that
    // listed volumes, not at this one.
    let runs = complete.reconcile_runs(5).await.unwrap();
    assert_eq!(runs[0].problems.as_deref(), Some(problems.as_str()));
}

/// Whether line `i` of the captures is one of nova's (the ones a loss mask may drop).
fn nova_lines() -> Vec<usize> {
    let jsonl = std::fs::read_to_string(real().join("notifications.jsonl")).unwrap();
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("\"exchange\": \"nova\""))
        .map(|(i, _)| i)
        .collect()
}

/// Billed plus unknown seconds per server (every second of its life is one or the other).
fn accounted(
    billed: &BTreeMap<(String, String), f64>,
    unknown: &[(String, Instant, Instant, String)],
    id: &str,
) -> f64 {
    let billed: f64 = billed
        .iter()
        .filter(|((r, p), _)| r == id && p.starts_with("instance:"))
        .map(|(_, s)| s)
        .sum();
    let unknown: f64 = unknown
        .iter()
        .filter(|(r, ..)| r == id)
        .map(|(_, a, b, _)| (b.micros() - a.micros()) as f64 / 1e6)
        .sum();
    billed + unknown
}

/// Any subset of nova's notifications lost, then reconciled: a second run writes nothing; no
/// server bills a product longer than with nothing lost (2 s: API seconds against envelope
/// times); and every second of each server's life is billed or reported unknown.
fn check_loss(lost: &[bool]) -> Result<(), proptest::test_runner::TestCaseError> {
    use proptest::prop_assert;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let nova = nova_lines();
        let dropped: std::collections::BTreeSet<usize> = nova
            .iter()
            .zip(lost)
            .filter(|(_, l)| **l)
            .map(|(i, _)| *i)
            .collect();
        let (_a, complete) = store_with(|_| true).await;
        let truth = billed(&*complete).await;
        let line_no = std::cell::Cell::new(0usize);
        let (_b, lossy) = store_with(|_| {
            let i = line_no.get();
            line_no.set(i + 1);
            !dropped.contains(&i)
        })
        .await;
        let cloud = Recorded::captured();
        reconcile(&*lossy, &cloud, &servers_only()).await.unwrap();
        let again = reconcile(&*lossy, &cloud, &servers_only()).await.unwrap();
        let lines: Vec<String> = std::fs::read_to_string(real().join("notifications.jsonl"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let what_was_lost: Vec<String> = dropped
            .iter()
            .map(|i| {
                let l = &lines[*i];
                let start = l.find("event_type").unwrap_or(0);
                l[start..(start + 60).min(l.len())].to_owned()
            })
            .collect();
        prop_assert!(
            again.changes.is_empty(),
            "second run: {:?}, lost {what_was_lost:?}",
            again.changes
        );
        let (after, unknown) = billed_and_unknown(&*lossy).await;
        for ((id, product), seconds) in &after {
            if !product.starts_with("instance:") {
                continue;
            }
            let limit = truth
                .get(&(id.clone(), product.clone()))
                .copied()
                .unwrap_or(0.0);
            prop_assert!(
                *seconds <= limit + 2.0,
                "{id} {product}: {seconds} s billed, {limit} s with nothing lost; lost {what_was_lost:?}"
            );
        }
        for id in [
            "366177c4-39b7-4aea-8108-2a86a67f5983",
            ALPHA_2,
            "8e21f4fe-4d82-40c0-8a58-9db1e1359cca",
        ] {
            let want = accounted(&truth, &[], id);
            let got = accounted(&after, &unknown, id);
            prop_assert!(
                (got - want).abs() <= 4.0,
                "{id}: {got} s accounted, {want} s lived"
            );
        }
        Ok(())
    })
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: 24, failure_persistence: None, ..proptest::test_runner::Config::default()
    })]

    #[test]
    fn any_loss_of_nova_notifications_reconciles_idempotently_and_never_overbills(
        lost in proptest::collection::vec(proptest::prelude::any::<bool>(), 178)
    ) {
        check_loss(&lost)?;
    }
}

#[test]
fn losing_everything_or_nothing_of_nova() {
    check_loss(&[true; 178]).unwrap();
    check_loss(&[false; 178]).unwrap();
}
