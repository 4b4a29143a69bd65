//! Report tests on a real SQLite store: determinism, filters, detail, gaps, snapshots.

use serde_json::{Value, json};

use super::{PeriodState, Report, ReportRequest, build_report, to_csv, to_table};
use crate::facts::{Fact, FactKind, ResourceType};
use crate::record::Source;
use crate::store::{SqlStore, Store};
use crate::test_support::{add, at, fact, store_with};
use crate::usage::catalogue::default_catalogue;
use crate::usage::period::Period;

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

/// The report of `request` under the default catalogue.
async fn report_of(store: &dyn Store, request: &ReportRequest) -> Report {
    build_report(store, request, &default_catalogue())
        .await
        .unwrap()
}

/// After October, so October is complete as of it.
const AFTER_OCTOBER: &str = "2026-12-02T00:00:00Z";

fn october(detail: bool, project: Option<&str>) -> ReportRequest {
    ReportRequest {
        period: Period::month("2026-10").unwrap(),
        as_of: at(AFTER_OCTOBER),
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
    let ra = report_of(a.as_ref(), &october(true, None)).await;
    let rb = report_of(b.as_ref(), &october(true, None)).await;
    assert_eq!(ra.json(), rb.json());
    // And computing it again changes nothing.
    let again = report_of(a.as_ref(), &october(true, None)).await;
    assert_eq!(ra.json(), again.json());
    assert!(ra.content_digest().starts_with("sha256:"));
}

#[tokio::test]
async fn quantities_lines_and_unknowns() {
    let (store, _d) = store_with(&scenario()).await;
    let report = report_of(store.as_ref(), &october(false, None)).await;
    let v = &report.value();
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
    let report = report_of(store.as_ref(), &october(false, Some("p-b"))).await;
    let value = report.value();
    let projects = value["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0]["project_id"], "p-b");
    assert_eq!(
        value["gaps"].as_array().unwrap().len(),
        1,
        "only gaps overlapping the period"
    );
    assert_eq!(value["gaps"][0]["cause"], "connection lost");
}

#[tokio::test]
async fn snapshots_of_json_csv_and_table() {
    let (store, _d) = store_with(&scenario()).await;
    let detailed = report_of(store.as_ref(), &october(true, None)).await;
    let plain = report_of(store.as_ref(), &october(false, None)).await;
    insta::assert_snapshot!("report_detail_json", detailed.json());
    insta::assert_snapshot!("report_csv", to_csv(&plain));
    insta::assert_snapshot!("report_table", to_table(&plain));
}

#[tokio::test]
async fn keys_are_sorted_canonically() {
    let (store, _d) = store_with(&scenario()).await;
    let report = report_of(store.as_ref(), &october(false, None)).await;
    let value = report.value();
    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
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
        let report = report_of(store.as_ref(), &october(detail, project)).await;
        let errors: Vec<String> = validator
            .iter_errors(&report.value())
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "detail={detail} project={project:?}: {errors:#?}"
        );
    }
    // The schema is strict enough to catch a broken report.
    let (store, _d2) = store_with(&scenario()).await;
    let mut broken = report_of(store.as_ref(), &october(false, None))
        .await
        .value();
    broken["projects"][0]["lines"][0]["quantity"] = json!(2.0);
    assert!(
        !validator.is_valid(&broken),
        "a float quantity must be rejected"
    );
}

fn request(period: &str, as_of: &str, detail: bool) -> ReportRequest {
    ReportRequest {
        period: Period::month(period).unwrap(),
        as_of: at(as_of),
        project: None,
        detail,
    }
}

fn running_instance() -> Vec<Fact> {
    vec![fact(
        ResourceType::Instance,
        "vm-run",
        "p-a",
        FactKind::Created,
        "2026-12-01T06:00:00Z",
        json!({"flavor_name": "SCS-1V-2", "vcpus": 1}),
    )]
}

#[tokio::test]
async fn an_open_period_bills_a_running_instance_up_to_as_of_exactly() {
    let (store, _d) = store_with(&running_instance()).await;
    let report = report_of(
        store.as_ref(),
        &request("2026-12", "2026-12-02T10:15:30.5Z", true),
    )
    .await;
    assert_eq!(report.period_state, PeriodState::Open);
    assert_eq!(report.billed_until, at("2026-12-02T10:15:30.5Z"));
    let line = &report.projects[0].lines[0];
    // 2026-12-01T06:00 .. 2026-12-02T10:15:30.5 = 28 h 15 min 30.5 s
    assert_eq!(line.quantity, "28.258472");
    assert_eq!(line.quantity_exact, "203461/7200");
    let detail = report.projects[0].resources.as_ref().unwrap();
    assert_eq!(
        detail[0].intervals[0].end,
        at("2026-12-02T10:15:30.5Z"),
        "nothing after as_of"
    );
    let v = report.value();
    assert_eq!(v["period_state"], "open");
    assert_eq!(v["as_of"], "2026-12-02T10:15:30.500000Z");
    // The whole month, asked for after it ended, bills the whole month.
    let later = report_of(
        store.as_ref(),
        &request("2026-12", "2027-01-05T00:00:00Z", false),
    )
    .await;
    assert_eq!(later.period_state, PeriodState::CompleteAsOf);
    assert_eq!(later.billed_until, at("2027-01-01T00:00:00Z"));
    assert_eq!(later.projects[0].lines[0].quantity, "738.000000");
    // The same facts, catalogue and as_of: byte-identical.
    let again = report_of(
        store.as_ref(),
        &request("2026-12", "2026-12-02T10:15:30.5Z", true),
    )
    .await;
    assert_eq!(report.json(), again.json());
}

#[tokio::test]
async fn a_future_period_bills_nothing_and_says_so() {
    let (store, _d) = store_with(&running_instance()).await;
    let report = report_of(
        store.as_ref(),
        &request("2027-06", "2026-12-02T10:00:00Z", false),
    )
    .await;
    assert_eq!(report.period_state, PeriodState::Open);
    assert_eq!(report.billed_until, report.period.start);
    assert!(report.projects.is_empty());
    assert!(report.totals.is_empty());
    let table = to_table(&report);
    assert!(
        table.contains("had not begun as of 2026-12-02T10:00:00.000000Z"),
        "{table}"
    );
    assert!(!table.contains("no usage"), "{table}");
    insta::assert_snapshot!("report_future_table", table);
}

#[tokio::test]
async fn time_before_the_first_input_is_unknown_not_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open(&format!("sqlite://{}/s.db", dir.path().display()))
        .await
        .unwrap();
    // Nothing at all: the whole billed time is unknown.
    let empty = report_of(&store, &request("2026-10", AFTER_OCTOBER, false)).await;
    assert_eq!(empty.coverage.first_input_at, None);
    assert_eq!(empty.coverage.unknown.len(), 1);
    assert_eq!(empty.coverage.unknown[0].start, at("2026-10-01T00:00:00Z"));
    assert_eq!(empty.coverage.unknown[0].end, at("2026-11-01T00:00:00Z"));
    // First input on 2026-11-20: October entirely, November until then, are unknown.
    add(&store, &running_instance(), at("2026-11-20T08:00:00Z")).await;
    let october = report_of(&store, &request("2026-10", AFTER_OCTOBER, false)).await;
    assert_eq!(
        october.coverage.first_input_at,
        Some(at("2026-11-20T08:00:00Z"))
    );
    assert_eq!(october.coverage.unknown[0].end, at("2026-11-01T00:00:00Z"));
    let table = to_table(&october);
    assert!(
        table.contains("usage unknown 2026-10-01T00:00:00.000000Z .. 2026-11-01T00:00:00.000000Z"),
        "{table}"
    );
    assert!(table.contains("no usage known"), "{table}");
    insta::assert_snapshot!("report_before_first_input_table", table);
    let november = report_of(&store, &request("2026-11", AFTER_OCTOBER, false)).await;
    assert_eq!(november.coverage.unknown[0].end, at("2026-11-20T08:00:00Z"));
    // A store with input before the period: no coverage window.
    let december = report_of(&store, &request("2026-12", "2026-12-02T00:00:00Z", false)).await;
    assert!(december.coverage.unknown.is_empty());
    // An open period: unknown up to as_of at most.
    let early = report_of(&store, &request("2026-11", "2026-11-10T00:00:00Z", false)).await;
    assert_eq!(early.coverage.unknown[0].end, at("2026-11-10T00:00:00Z"));
    // History replayed later (a fact describing 2026-10-15) moves the start of knowledge back.
    let replayed = fact(
        ResourceType::FloatingIp,
        "fip-old",
        "p-a",
        FactKind::Created,
        "2026-10-15T00:00:00Z",
        json!({}),
    );
    add(&store, &[replayed], at("2026-11-21T00:00:00Z")).await;
    let october = report_of(&store, &request("2026-10", AFTER_OCTOBER, false)).await;
    assert_eq!(
        october.coverage.first_fact_at,
        Some(at("2026-10-15T00:00:00Z"))
    );
    assert_eq!(october.coverage.unknown[0].end, at("2026-10-15T00:00:00Z"));
    assert_eq!(october.projects[0].lines[0].quantity, "408.000000");
}

#[tokio::test]
async fn the_table_never_adds_different_products_and_totals_are_exact() {
    let (store, _d) = store_with(&scenario()).await;
    let report = report_of(store.as_ref(), &october(false, None)).await;
    let table = to_table(&report);
    // instance hours and floating-IP hours share the unit "hour": never one sum.
    assert!(!table.contains("5.500000 hour"), "{table}");
    assert!(!table.contains("29.500000"), "{table}");
    assert!(table.contains("totals over 2 projects"), "{table}");
    let total = |product: &str| {
        report
            .totals
            .iter()
            .find(|t| t.product == product)
            .unwrap()
            .clone()
    };
    assert_eq!(total("floating_ip").quantity, "24.000000");
    assert_eq!(total("volume:ssd").quantity_exact, "112800/1");
    assert_eq!(total("instance:SCS-4V-8").projects, 1);
}

#[tokio::test]
async fn totals_over_many_lines_are_rounded_once_from_the_exact_sum() {
    // Three projects each use a floating IP for 20 minutes and 1 ms: each line prints
    // 0.333334; the total is exactly 1 hour + 3 ms = 1.000001 (rounded), not 3 × 0.333334.
    let mut facts = Vec::new();
    for p in ["p-1", "p-2", "p-3"] {
        let id = format!("fip-{p}");
        facts.push(fact(
            ResourceType::FloatingIp,
            &id,
            p,
            FactKind::Created,
            "2026-10-01T00:00:00Z",
            json!({}),
        ));
        facts.push(fact(
            ResourceType::FloatingIp,
            &id,
            p,
            FactKind::Deleted,
            "2026-10-01T00:20:00.001Z",
            json!({}),
        ));
    }
    let (store, _d) = store_with(&facts).await;
    let report = report_of(store.as_ref(), &october(false, None)).await;
    assert_eq!(report.projects[0].lines[0].quantity, "0.333334");
    assert_eq!(report.totals[0].quantity, "1.000001");
    assert_eq!(report.totals[0].quantity_exact, "1200001/1200000");
    assert_eq!(report.totals[0].projects, 3);
}

#[tokio::test]
async fn detail_shows_in_every_format() {
    let (store, _d) = store_with(&scenario()).await;
    let report = report_of(store.as_ref(), &october(true, None)).await;
    let table = to_table(&report);
    assert!(table.contains("  instance vm-1"), "{table}");
    assert!(
        table.contains("2026-10-01T12:00:00.000000Z  2026-10-01T13:00:00.000000Z  running"),
        "{table}"
    );
    assert!(
        table.contains("= instance:SCS-4V-8 3.500000 hour"),
        "{table}"
    );
    let csv = to_csv(&report);
    assert!(csv.starts_with(
        "period_start,period_end,as_of,period_state,billed_until,project_id,resource_type,\
         resource_id,product,unit,quantity,quantity_exact\n"
    ));
    assert!(
        csv.contains(",p-a,instance,vm-1,instance:SCS-4V-8,hour,3.500000,7/2\n"),
        "{csv}"
    );
    insta::assert_snapshot!("report_detail_table", table);
    insta::assert_snapshot!("report_detail_csv", csv);
}

#[tokio::test]
async fn the_typed_report_reads_back_what_it_writes() {
    let (store, _d) = store_with(&scenario()).await;
    for detail in [false, true] {
        let report = report_of(store.as_ref(), &october(detail, None)).await;
        let back: Report = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(back, report);
        assert_eq!(back.json(), report.json());
    }
    let mut extra = report_of(store.as_ref(), &october(false, None))
        .await
        .value();
    extra["surprise"] = json!(1);
    assert!(serde_json::from_value::<Report>(extra).is_err());
}

#[tokio::test]
async fn names_that_meet_from_two_catalogue_entries_add_exactly() {
    use crate::usage::catalogue::Product;
    // "volume:{volume_type}" in GiB-hours and a literal "volume:ssd" in GiB-hours with another
    // divisor: one line, summed exactly.
    let mut catalogue: Vec<Product> = default_catalogue()
        .into_iter()
        .filter(|p| p.resource == ResourceType::Volume)
        .collect();
    let mut literal = catalogue[0].clone();
    literal.product = "volume:ssd".to_owned();
    literal.divisor = 3;
    catalogue.push(literal);
    let facts = vec![fact(
        ResourceType::Volume,
        "vol-9",
        "p-a",
        FactKind::Created,
        "2026-10-31T23:00:00Z",
        json!({"size_gb": 1, "volume_type": "ssd"}),
    )];
    let (store, _d) = store_with(&facts).await;
    let report = build_report(store.as_ref(), &october(false, None), &catalogue)
        .await
        .unwrap();
    let lines = &report.projects[0].lines;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].quantity_exact, "4/3");
}
