//! Report tests on a real SQLite store: determinism, filters, detail, gaps, snapshots.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{ReportRequest, build_report, to_csv, to_table};
use crate::facts::{Fact, FactKind, Origin, ResourceType, TimeSource};
use crate::record::{Accepted, Batch, RawRecord, RecordKind, Source};
use crate::store::{SqlStore, Store};
use crate::time::{Instant, parse_timestamp};
use crate::usage::catalogue::default_catalogue;
use crate::usage::period::Period;

fn at(s: &str) -> Instant {
    parse_timestamp(s).unwrap().unwrap()
}

fn fact(
    rt: ResourceType,
    id: &str,
    project: &str,
    kind: FactKind,
    time: &str,
    attrs: Value,
) -> Fact {
    Fact {
        resource_type: rt,
        resource_id: id.to_owned(),
        project_id: Some(project.to_owned()),
        user_id: None,
        kind,
        effective_at: at(time),
        time_source: TimeSource::Payload,
        origin: Origin::Notification,
        event_type: "test".to_owned(),
        attributes: attrs.as_object().unwrap().clone().into_iter().collect(),
    }
}

fn scenario() -> Vec<Fact> {
    use FactKind as K;
    use ResourceType as R;
    let small = json!({"flavor_name": "SCS-2V-4", "vcpus": 2});
    let large = json!({"flavor_name": "SCS-4V-8", "vcpus": 4});
    vec![
        fact(
            R::Instance,
            "vm-1",
            "p-a",
            K::Created,
            "2026-10-01T10:00:00Z",
            small.clone(),
        ),
        fact(
            R::Instance,
            "vm-1",
            "p-a",
            K::Resized,
            "2026-10-01T12:00:00Z",
            large.clone(),
        ),
        fact(
            R::Instance,
            "vm-1",
            "p-a",
            K::Stopped,
            "2026-10-01T13:00:00Z",
            large.clone(),
        ),
        fact(
            R::Instance,
            "vm-1",
            "p-a",
            K::Started,
            "2026-10-01T14:00:00Z",
            large.clone(),
        ),
        fact(
            R::Instance,
            "vm-1",
            "p-a",
            K::Deleted,
            "2026-10-01T15:30:00Z",
            large,
        ),
        fact(
            R::Volume,
            "vol-1",
            "p-a",
            K::Created,
            "2026-09-15T00:00:00Z",
            json!({"size_gb": 100, "volume_type": "ssd"}),
        ),
        fact(
            R::Volume,
            "vol-1",
            "p-a",
            K::Resized,
            "2026-10-16T00:00:00Z",
            json!({"size_gb": 200, "volume_type": "ssd"}),
        ),
        fact(
            R::FloatingIp,
            "fip-1",
            "p-b",
            K::Created,
            "2026-10-31T00:00:00Z",
            json!({"floating_ip_address": "203.0.113.7"}),
        ),
        fact(
            R::Instance,
            "vm-2",
            "p-b",
            K::Deleted,
            "2026-10-02T00:00:00Z",
            small,
        ),
        // Outside the period: after its end.
        fact(
            R::Router,
            "r-1",
            "p-b",
            K::Created,
            "2026-11-05T00:00:00Z",
            json!({}),
        ),
    ]
}

async fn store_with(facts: &[Fact]) -> (Arc<SqlStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open(&format!("sqlite://{}/s.db", dir.path().display()))
        .await
        .unwrap();
    let accepted = facts
        .iter()
        .enumerate()
        .map(|(i, f)| Accepted {
            record: RawRecord {
                dedup_key: format!("msg:{}", f.semantic_key()),
                source: Source::Amqp,
                kind: RecordKind::Notification,
                message_id: Some(i.to_string()),
                exchange: None,
                routing_key: None,
                envelope_version: None,
                publisher_id: None,
                event_type: None,
                priority: None,
                emitted_at: None,
                received_at: Instant(0),
                body: "{}".to_owned(),
                scrubbed: None,
            },
            facts: vec![f.clone()],
        })
        .collect();
    store
        .commit(&[Batch {
            accepted,
            quarantined: vec![],
        }])
        .await
        .unwrap();
    (Arc::new(store), dir)
}

fn october(detail: bool, project: Option<&str>) -> ReportRequest {
    ReportRequest {
        period: Period::month("2026-10").unwrap(),
        project: project.map(str::to_owned),
        detail,
    }
}

#[tokio::test]
async fn same_facts_in_any_order_give_byte_identical_reports() {
    let facts = scenario();
    let (a, _da) = store_with(&facts).await;
    let mut reversed = facts.clone();
    reversed.reverse();
    let (b, _db) = store_with(&reversed).await;
    let ra = build_report(a.as_ref(), &october(true, None), &default_catalogue())
        .await
        .unwrap();
    let rb = build_report(b.as_ref(), &october(true, None), &default_catalogue())
        .await
        .unwrap();
    assert_eq!(ra.json(), rb.json());
    // And computing it again changes nothing.
    let again = build_report(a.as_ref(), &october(true, None), &default_catalogue())
        .await
        .unwrap();
    assert_eq!(ra.json(), again.json());
    assert!(ra.content_digest().starts_with("sha256:"));
}

#[tokio::test]
async fn quantities_lines_and_unknowns() {
    let (store, _d) = store_with(&scenario()).await;
    let report = build_report(store.as_ref(), &october(false, None), &default_catalogue())
        .await
        .unwrap();
    let v = &report.value;
    let projects = v["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 2);
    let a = &projects[0];
    assert_eq!(a["project_id"], "p-a");
    let line = |p: &Value, product: &str| {
        p["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["product"] == product)
            .unwrap()
            .clone()
    };
    assert_eq!(line(a, "instance:SCS-2V-4")["quantity"], "2.000000");
    assert_eq!(line(a, "instance:SCS-4V-8")["quantity"], "3.500000");
    // 15 days × 24 h × 100 GiB + 16 days × 24 h × 200 GiB
    assert_eq!(line(a, "volume:ssd")["quantity"], "112800.000000");
    assert_eq!(line(a, "volume:ssd")["quantity_exact"], "112800/1");
    assert_eq!(line(a, "volume:ssd")["provenance"], json!(["notification"]));
    let b = &projects[1];
    assert_eq!(line(b, "floating_ip")["quantity"], "24.000000");
    // vm-2 was deleted without its creation seen: unknown, never a zero line.
    assert_eq!(b["lines"].as_array().unwrap().len(), 1);
    assert_eq!(b["unknown"][0]["resource_id"], "vm-2");
    assert_eq!(b["unknown"][0]["end"], "2026-10-02T00:00:00.000000Z");
    // The router created after the period is not in it.
    assert!(!report.json().contains("r-1"));
}

#[tokio::test]
async fn project_filter_and_gaps() {
    let (store, _d) = store_with(&scenario()).await;
    let gap = store
        .open_gap(Source::Amqp, at("2026-10-10T00:00:00Z"), "connection lost")
        .await
        .unwrap();
    store
        .close_gap(gap, at("2026-10-10T00:05:00Z"))
        .await
        .unwrap();
    let outside = store
        .open_gap(Source::Http, at("2026-09-01T00:00:00Z"), "down")
        .await
        .unwrap();
    store
        .close_gap(outside, at("2026-09-01T01:00:00Z"))
        .await
        .unwrap();
    let report = build_report(
        store.as_ref(),
        &october(false, Some("p-b")),
        &default_catalogue(),
    )
    .await
    .unwrap();
    let projects = report.value["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0]["project_id"], "p-b");
    assert_eq!(
        report.value["gaps"].as_array().unwrap().len(),
        1,
        "only gaps overlapping the period"
    );
    assert_eq!(report.value["gaps"][0]["cause"], "connection lost");
}

#[tokio::test]
async fn snapshots_of_json_csv_and_table() {
    let (store, _d) = store_with(&scenario()).await;
    let detailed = build_report(store.as_ref(), &october(true, None), &default_catalogue())
        .await
        .unwrap();
    let plain = build_report(store.as_ref(), &october(false, None), &default_catalogue())
        .await
        .unwrap();
    insta::assert_snapshot!("report_detail_json", detailed.json());
    insta::assert_snapshot!("report_csv", to_csv(&plain));
    insta::assert_snapshot!("report_table", to_table(&plain));
}

#[tokio::test]
async fn keys_are_sorted_canonically() {
    let (store, _d) = store_with(&scenario()).await;
    let report = build_report(store.as_ref(), &october(false, None), &default_catalogue())
        .await
        .unwrap();
    let keys: Vec<&String> = report.value.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let text = report.json();
    assert!(text.find("\"config_digest\"").unwrap() < text.find("\"content_digest\"").unwrap());
}

#[tokio::test]
async fn every_report_validates_against_the_published_schema() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/report-schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let (store, _d) = store_with(&scenario()).await;
    let gap = store
        .open_gap(Source::Amqp, at("2026-10-10T00:00:00Z"), "connection lost")
        .await
        .unwrap();
    store
        .close_gap(gap, at("2026-10-10T00:05:00Z"))
        .await
        .unwrap();
    store
        .open_gap(Source::Http, at("2026-10-20T00:00:00Z"), "still down")
        .await
        .unwrap();
    for (detail, project) in [
        (false, None),
        (true, None),
        (true, Some("p-b")),
        (false, Some("none")),
    ] {
        let report = build_report(
            store.as_ref(),
            &october(detail, project),
            &default_catalogue(),
        )
        .await
        .unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&report.value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "detail={detail} project={project:?}: {errors:#?}"
        );
    }
    // The schema is strict enough to catch a broken report.
    let (store, _d2) = store_with(&scenario()).await;
    let mut broken = build_report(store.as_ref(), &october(false, None), &default_catalogue())
        .await
        .unwrap()
        .value;
    broken["projects"][0]["lines"][0]["quantity"] = json!(2.0);
    assert!(
        !validator.is_valid(&broken),
        "a float quantity must be rejected"
    );
}
