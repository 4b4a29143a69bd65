//! The 242 notifications captured from real nova, neutron, cinder and octavia
//! (`../shared/fixtures/real/notifications.jsonl`) replayed into a store and reported: the
//! billed intervals equal what the same services' APIs state (`../shared/fixtures/real/api/`:
//! launch and termination times, instance actions, creation times), exactly where the payload
//! carries the time, within the second the API rounds to where the envelope dates the event.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use steward_meter::ingest::amqp::decode_delivery;
use steward_meter::record::{Batch, Decoded};
use steward_meter::report::model::{IntervalDetail, ResourceDetail};
use steward_meter::report::{Report, ReportRequest, build_report};
use steward_meter::scrub::Scrubber;
use steward_meter::store;
use steward_meter::time::{Instant, parse_timestamp};
use steward_meter::usage::catalogue::default_catalogue;
use steward_meter::usage::period::Period;
use steward_meter::usage::timeline::Status;

fn real() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/real")
}

fn api(name: &str) -> Value {
    let path = real().join("api").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn t(text: &str) -> Instant {
    parse_timestamp(text).unwrap().unwrap()
}

async fn replayed() -> Report {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("real.db").display());
    let store = store::open(&url).await.unwrap();
    let mut batch = Batch {
        accepted: Vec::new(),
        quarantined: Vec::new(),
    };
    let jsonl = std::fs::read_to_string(real().join("notifications.jsonl")).unwrap();
    for line in jsonl.lines() {
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
    assert_eq!(batch.accepted.len(), 242);
    store.commit(&[batch]).await.unwrap();
    let request = ReportRequest {
        period: Period::new(t("2026-12-02T03:00:00Z"), t("2026-12-02T04:00:00Z")).unwrap(),
        as_of: t("2026-12-02T04:00:00Z"),
        project: None,
        detail: true,
    };
    build_report(&*store, &request, &default_catalogue())
        .await
        .unwrap()
}

fn resources(report: &Report) -> BTreeMap<String, ResourceDetail> {
    report
        .projects
        .iter()
        .flat_map(|p| p.resources.clone().unwrap_or_default())
        .map(|r| (r.resource_id.clone(), r))
        .collect()
}

/// The API states whole seconds (its microseconds are zero); the envelope that dates the
/// billed transition was sent within that second.
fn within_a_second(billed: Instant, api: Instant, what: &str) {
    let diff = billed.micros() - api.micros();
    assert!(
        (-1_000_000..1_000_000).contains(&diff),
        "{what}: billed {billed}, API {api}"
    );
}

fn flavor(i: &IntervalDetail) -> &str {
    i.attributes["flavor_name"].as_str().unwrap()
}

/// The `finish_time` of an instance action's event, from `os-instance-actions`.
fn action_finish(server: &str, action: &str) -> Instant {
    let actions = api("nova_instance_actions_deleted.json");
    for a in actions[server]["detail"].as_object().unwrap().values() {
        let a = &a["instanceAction"];
        if a["action"] == action {
            let finish = a["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["finish_time"].as_str())
                .max()
                .unwrap();
            return t(finish);
        }
    }
    panic!("{server} has no {action} action")
}

#[tokio::test]
async fn the_real_captures_bill_what_the_real_apis_state() {
    let report = replayed().await;
    let by_id = resources(&report);
    let servers = api("nova_detail_changes_since_deleted.json");
    let server = |name: &str| -> (String, Instant, Instant) {
        let s = servers["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap();
        (
            s["id"].as_str().unwrap().to_owned(),
            t(s["OS-SRV-USG:launched_at"].as_str().unwrap()),
            t(s["OS-SRV-USG:terminated_at"].as_str().unwrap()),
        )
    };

    // beta-1: created and deleted; nova's launched_at and terminated_at, to the microsecond.
    let (id, launched, terminated) = server("beta-1");
    let beta = &by_id[&id].intervals;
    assert_eq!(beta.len(), 1, "{beta:?}");
    assert_eq!((beta[0].start, beta[0].end), (launched, terminated));
    assert_eq!(
        (flavor(&beta[0]), beta[0].status),
        ("rs.small", Status::Running)
    );

    // alpha-1: rs.small until the resize finished (the API's launched_at was reset to it),
    // rs.medium until terminated, stopped between the stop and start actions.
    let (id, resized, terminated) = server("alpha-1");
    let alpha = &by_id[&id].intervals;
    // Its first launch, as `GET /servers/{id}` stated it while it was ACTIVE, before the
    // resize reset it.
    let active = api("nova_server_active.json");
    assert_eq!(active["id"].as_str(), Some(id.as_str()));
    assert_eq!(
        alpha[0].start,
        t(active["OS-SRV-USG:launched_at"].as_str().unwrap())
    );
    assert_eq!(flavor(&alpha[0]), "rs.small");
    let medium: Vec<&IntervalDetail> = alpha.iter().filter(|i| flavor(i) == "rs.medium").collect();
    assert_eq!(medium[0].start, resized, "the resize, to the microsecond");
    assert_eq!(medium.last().unwrap().end, terminated);
    let stopped = alpha
        .iter()
        .find(|i| i.status == Status::Stopped)
        .expect("a stopped interval");
    within_a_second(stopped.start, action_finish(&id, "stop"), "alpha-1 stopped");
    within_a_second(stopped.end, action_finish(&id, "start"), "alpha-1 started");

    // alpha-2: shelved (billed like stopped) and offloaded (not billed) within the shelve
    // action, then deleted from the offloaded state.
    let (id, launched, terminated) = server("alpha-2");
    let shelved = &by_id[&id].intervals;
    assert_eq!(shelved[0].start, launched);
    assert_eq!(shelved.last().unwrap().end, terminated);
    let statuses: Vec<Status> = shelved.iter().map(|i| i.status).collect();
    assert_eq!(
        statuses,
        vec![Status::Running, Status::Shelved, Status::ShelvedOffloaded]
    );
    within_a_second(
        shelved[2].start,
        action_finish(&id, "shelve"),
        "alpha-2 offloaded",
    );
    let billed: f64 = by_id[&id].products[0].quantity.parse().unwrap();
    let expected = (shelved[2].start.micros() - launched.micros()) as f64 / 3.6e9;
    assert!(
        (billed - expected).abs() < 1e-6,
        "{billed} h, expected {expected} h"
    );

    // The volume starts at cinder's created_at, the snapshot too; the floating IP at
    // neutron's created_at; the load balancer when octavia made it ACTIVE (`updated_at`).
    let volume = api("cinder_volume_available.json");
    let v = &by_id[volume["id"].as_str().unwrap()];
    assert_eq!(
        v.intervals[0].start,
        t(volume["created_at"].as_str().unwrap())
    );
    assert_eq!(v.intervals[0].attributes["size_gb"], volume["size"]);
    let snapshot = api("cinder_snapshot_available.json");
    let s = &by_id[snapshot["id"].as_str().unwrap()];
    assert_eq!(
        s.intervals[0].start,
        t(snapshot["created_at"].as_str().unwrap())
    );
    let fip = api("neutron_floatingip_created.json");
    let f = &by_id[fip["id"].as_str().unwrap()];
    assert_eq!(f.intervals[0].start, t(fip["created_at"].as_str().unwrap()));
    let lb = api("octavia_loadbalancer_active.json");
    let l = &by_id[lb["id"].as_str().unwrap()];
    within_a_second(
        l.intervals[0].start,
        t(&format!("{}Z", lb["updated_at"].as_str().unwrap())),
        "load balancer ACTIVE",
    );

    // Every resource of the captures is billed to its own project, and nothing is unknown:
    // every creation was seen.
    for p in &report.projects {
        assert!(p.project_id.as_deref().is_some_and(|id| id.len() == 32));
        assert!(p.unknown.is_empty(), "{:?}", p.unknown);
    }
}
