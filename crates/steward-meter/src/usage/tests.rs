//! Scenario tests with hand-computed expectations, and properties of timelines and usage.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::catalogue::{Product, default_catalogue};
use super::engine::{ResourceUsage, usage_by_owner};
use super::period::Period;
use super::timeline::{Presence, Status, UsageFact, build};
use crate::facts::{FactKind, ResourceType};
use crate::time::{Instant, parse_timestamp};

fn at(s: &str) -> Instant {
    parse_timestamp(s).unwrap().unwrap()
}

fn fact(kind: FactKind, time: &str, attrs: Value) -> UsageFact {
    let attributes: BTreeMap<String, Value> = match attrs {
        Value::Object(m) => m.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    UsageFact {
        kind,
        effective_at: at(time),
        project_id: Some("p-1".to_owned()),
        attributes,
        origin: "notification".to_owned(),
    }
}

fn day() -> Period {
    Period::from_rfc3339("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z").unwrap()
}

fn quantities(usage: &[ResourceUsage]) -> BTreeMap<String, String> {
    usage
        .iter()
        .flat_map(|u| u.products.iter())
        .map(|p| (p.product.clone(), p.quantity.decimal(6)))
        .collect()
}

fn small() -> Value {
    json!({"flavor_name": "SCS-2V-4", "vcpus": 2, "memory_mb": 4096})
}
fn large() -> Value {
    json!({"flavor_name": "SCS-4V-8", "vcpus": 4, "memory_mb": 8192})
}

/// Created 10:00, resized at 12:00, stopped 13:00–14:00, deleted 15:30.
fn lifecycle() -> Vec<UsageFact> {
    vec![
        fact(FactKind::Created, "2026-10-01T10:00:00Z", small()),
        fact(FactKind::Resized, "2026-10-01T12:00:00Z", large()),
        fact(FactKind::Stopped, "2026-10-01T13:00:00Z", large()),
        fact(FactKind::Started, "2026-10-01T14:00:00Z", large()),
        fact(FactKind::Deleted, "2026-10-01T15:30:00Z", large()),
    ]
}

#[test]
fn resize_and_stop_bill_each_flavor_for_its_hours() {
    let t = build(ResourceType::Instance, "vm-1", &lifecycle());
    let usage = usage_by_owner(&t, &day(), &default_catalogue());
    // The default catalogue bills stopped instances (their resources stay reserved).
    assert_eq!(
        quantities(&usage),
        BTreeMap::from([
            ("instance:SCS-2V-4".to_owned(), "2.000000".to_owned()),
            ("instance:SCS-4V-8".to_owned(), "3.500000".to_owned()),
        ])
    );
    // A catalogue that bills running time only, plus vCPU-hours and RAM-GiB-hours.
    let running = Some(vec![Status::Running]);
    let catalogue = vec![
        Product {
            statuses: running.clone(),
            ..default_catalogue()[0].clone()
        },
        Product {
            product: "instance.vcpu".to_owned(),
            resource: ResourceType::Instance,
            unit: "vCPU-hour".to_owned(),
            attribute: Some("vcpus".to_owned()),
            divisor: 1,
            statuses: running.clone(),
        },
        Product {
            product: "instance.ram".to_owned(),
            resource: ResourceType::Instance,
            unit: "GiB-hour".to_owned(),
            attribute: Some("memory_mb".to_owned()),
            divisor: 1024,
            statuses: running,
        },
    ];
    let usage = usage_by_owner(&t, &day(), &catalogue);
    assert_eq!(
        quantities(&usage),
        BTreeMap::from([
            ("instance:SCS-2V-4".to_owned(), "2.000000".to_owned()),
            ("instance:SCS-4V-8".to_owned(), "2.500000".to_owned()),
            // 2 h × 2 vCPU + 2.5 h × 4 vCPU
            ("instance.vcpu".to_owned(), "14.000000".to_owned()),
            // 2 h × 4 GiB + 2.5 h × 8 GiB
            ("instance.ram".to_owned(), "28.000000".to_owned()),
        ])
    );
}

#[test]
fn shelved_offloaded_instances_bill_no_compute() {
    let facts = vec![
        fact(FactKind::Created, "2026-10-01T00:00:00Z", small()),
        fact(FactKind::ShelvedOffloaded, "2026-10-01T06:00:00Z", small()),
        fact(FactKind::Unshelved, "2026-10-01T18:00:00Z", small()),
    ];
    let usage = usage_by_owner(
        &build(ResourceType::Instance, "vm", &facts),
        &day(),
        &default_catalogue(),
    );
    assert_eq!(quantities(&usage)["instance:SCS-2V-4"], "12.000000");
}

#[test]
fn volume_extended_mid_period_bills_each_size_for_its_time() {
    let facts = vec![
        fact(
            FactKind::Created,
            "2026-09-20T00:00:00Z",
            json!({"size_gb": 100, "volume_type": "ssd"}),
        ),
        fact(
            FactKind::Resized,
            "2026-10-01T06:00:00Z",
            json!({"size_gb": 200, "volume_type": "ssd"}),
        ),
    ];
    let usage = usage_by_owner(
        &build(ResourceType::Volume, "vol", &facts),
        &day(),
        &default_catalogue(),
    );
    // 6 h × 100 GiB + 18 h × 200 GiB
    assert_eq!(quantities(&usage)["volume:ssd"], "4200.000000");
    assert_eq!(usage[0].products[0].unit, "GiB-hour");
}

#[test]
fn deleted_without_seen_creation_is_unknown_not_zero_and_not_full() {
    // Only the delete arrived, and its payload does not date the launch.
    let facts = vec![fact(FactKind::Deleted, "2026-10-01T15:00:00Z", small())];
    let t = build(ResourceType::Instance, "vm", &facts);
    assert_eq!(t.segments[0].presence, Presence::Unknown);
    let usage = usage_by_owner(&t, &day(), &default_catalogue());
    assert!(usage[0].products.is_empty(), "unknown is never billed");
    assert_eq!(usage[0].unknown.len(), 1);
    assert_eq!(
        (usage[0].unknown[0].start, usage[0].unknown[0].end),
        (day().start, at("2026-10-01T15:00:00Z"))
    );
    assert_eq!(usage[0].project_id.as_deref(), Some("p-1"));
}

#[test]
fn payload_launch_time_dates_an_unseen_creation_but_not_its_flavor() {
    let mut attrs = small();
    attrs["launched_at"] = json!("2026-10-01T09:00:00.000000Z");
    let facts = vec![
        fact(FactKind::Stopped, "2026-10-01T12:00:00Z", attrs.clone()),
        fact(FactKind::Deleted, "2026-10-01T15:00:00Z", attrs),
    ];
    let t = build(ResourceType::Instance, "vm", &facts);
    assert_eq!(t.segments[1].presence, Presence::Undescribed);
    let usage = usage_by_owner(&t, &day(), &default_catalogue());
    // Known: 12:00–15:00 stopped with SCS-2V-4. 09:00–12:00 it existed, but the flavor and
    // run state then are not known (a resize may have happened before the first fact).
    assert_eq!(quantities(&usage)["instance:SCS-2V-4"], "3.000000");
    let windows: Vec<_> = usage[0]
        .unknown
        .iter()
        .map(|w| (w.start, w.end, w.reason.as_str()))
        .collect();
    assert_eq!(
        windows,
        vec![
            (day().start, at("2026-10-01T09:00:00Z"), "creation not seen"),
            (
                at("2026-10-01T09:00:00Z"),
                at("2026-10-01T12:00:00Z"),
                "creation not seen: it existed, but its instance:{flavor_name} before its first \
                 fact is not known"
            ),
        ]
    );
    // A product that needs nothing but existence bills the dated time.
    let hours = vec![Product {
        product: "instance.hours".to_owned(),
        resource: ResourceType::Instance,
        unit: "hour".to_owned(),
        attribute: None,
        divisor: 1,
        statuses: None,
    }];
    assert_eq!(
        quantities(&usage_by_owner(&t, &day(), &hours))["instance.hours"],
        "6.000000"
    );
}

#[test]
fn a_late_fact_changes_the_next_computation_and_only_that() {
    let mut facts = vec![fact(FactKind::Created, "2026-10-01T00:00:00Z", small())];
    let before = quantities(&usage_by_owner(
        &build(ResourceType::Instance, "vm", &facts),
        &day(),
        &default_catalogue(),
    ));
    assert_eq!(before["instance:SCS-2V-4"], "24.000000");
    // The delete at 20:00 arrives late, after the report above was computed.
    facts.push(fact(FactKind::Deleted, "2026-10-01T20:00:00Z", small()));
    let after = quantities(&usage_by_owner(
        &build(ResourceType::Instance, "vm", &facts),
        &day(),
        &default_catalogue(),
    ));
    assert_eq!(after["instance:SCS-2V-4"], "20.000000");
}

#[test]
fn transferred_volume_bills_donor_then_recipient() {
    let mut transfer = fact(
        FactKind::Transferred,
        "2026-10-01T08:00:00Z",
        json!({"size_gb": 10, "volume_type": "ssd"}),
    );
    transfer.project_id = Some("p-2".to_owned());
    let facts = vec![
        fact(
            FactKind::Created,
            "2026-09-01T00:00:00Z",
            json!({"size_gb": 10, "volume_type": "ssd"}),
        ),
        transfer,
    ];
    let usage = usage_by_owner(
        &build(ResourceType::Volume, "vol", &facts),
        &day(),
        &default_catalogue(),
    );
    let by: BTreeMap<_, _> = usage
        .iter()
        .map(|u| {
            (
                u.project_id.clone().unwrap(),
                u.products[0].quantity.decimal(6),
            )
        })
        .collect();
    assert_eq!(by["p-1"], "80.000000");
    assert_eq!(by["p-2"], "160.000000");
}

#[test]
fn missing_billing_attribute_is_unknown_not_zero() {
    let facts = vec![fact(
        FactKind::Uploaded,
        "2026-10-01T00:00:00Z",
        json!({"name": "ubuntu"}),
    )];
    let usage = usage_by_owner(
        &build(ResourceType::Image, "img", &facts),
        &day(),
        &default_catalogue(),
    );
    assert!(usage[0].products.is_empty());
    assert_eq!(usage[0].unknown[0].reason, "image has no size_bytes");
}

#[test]
fn images_bill_gib_hours_from_bytes() {
    let facts = vec![fact(
        FactKind::Uploaded,
        "2026-10-01T12:00:00Z",
        json!({"size_bytes": 3_221_225_472u64}),
    )];
    let usage = usage_by_owner(
        &build(ResourceType::Image, "img", &facts),
        &day(),
        &default_catalogue(),
    );
    assert_eq!(quantities(&usage)["image"], "36.000000");
}

/// Default catalogue plus vCPU-hours of running time only.
fn with_running_vcpus() -> Vec<Product> {
    let mut c = default_catalogue();
    c.push(Product {
        product: "instance.vcpu".to_owned(),
        resource: ResourceType::Instance,
        unit: "vCPU-hour".to_owned(),
        attribute: Some("vcpus".to_owned()),
        divisor: 1,
        statuses: Some(vec![Status::Running]),
    });
    c
}

fn day_usage(rt: ResourceType, facts: &[UsageFact], catalogue: &[Product]) -> Vec<ResourceUsage> {
    usage_by_owner(&build(rt, "r", facts), &day(), catalogue)
}

/// A fact on the test day at `hh:mm`.
fn on_day(kind: FactKind, hh_mm: &str, attrs: Value) -> UsageFact {
    fact(kind, &format!("2026-10-01T{hh_mm}:00Z"), attrs)
}

/// What `facts` bill on the test day, per product, to six decimals.
fn billed(
    rt: ResourceType,
    facts: &[UsageFact],
    catalogue: &[Product],
) -> BTreeMap<String, String> {
    quantities(&day_usage(rt, facts, catalogue))
}

#[test]
fn a_shelved_server_bills_like_a_stopped_one_until_its_offload() {
    // Running 00–06, shelved 06–10 (powered off, on its host), offloaded 10–24.
    let facts = vec![
        on_day(FactKind::Created, "00:00", small()),
        on_day(FactKind::Shelved, "06:00", small()),
        on_day(FactKind::ShelvedOffloaded, "10:00", small()),
    ];
    let q = billed(ResourceType::Instance, &facts, &with_running_vcpus());
    assert_eq!(
        q["instance:SCS-2V-4"], "10.000000",
        "flavor: running + shelved"
    );
    assert_eq!(q["instance.vcpu"], "12.000000", "vCPUs: 6 h running × 2");
}

#[test]
fn a_reverted_resize_bills_the_old_flavor_again() {
    // SCS-2V-4 00–08, resized to SCS-4V-8 08–09 (verify), reverted at 09:00 to SCS-2V-4.
    let facts = vec![
        on_day(FactKind::Created, "00:00", small()),
        on_day(FactKind::Resized, "08:00", large()),
        on_day(FactKind::ResizeReverted, "09:00", small()),
    ];
    let q = billed(ResourceType::Instance, &facts, &default_catalogue());
    assert_eq!(q["instance:SCS-2V-4"], "23.000000");
    assert_eq!(q["instance:SCS-4V-8"], "1.000000");
}

#[test]
fn a_failed_build_never_bills_with_or_without_its_error() {
    let mut never = small();
    never["launched_at"] = Value::Null;
    never["created_at"] = json!("2026-10-01T01:00:00Z");
    let with_error = vec![
        fact(
            FactKind::CreateFailed,
            "2026-10-01T01:00:05Z",
            never.clone(),
        ),
        on_day(FactKind::Deleted, "05:00", never.clone()),
    ];
    let only_delete = vec![on_day(FactKind::Deleted, "05:00", never)];
    for facts in [with_error, only_delete] {
        let usage = day_usage(ResourceType::Instance, &facts, &default_catalogue());
        assert!(
            usage
                .iter()
                .all(|u| u.products.is_empty() && u.unknown.is_empty()),
            "{usage:?}"
        );
    }
    // A rescheduled build: the first attempt failed, the second launched at 02:00.
    let facts = vec![
        fact(FactKind::CreateFailed, "2026-10-01T01:00:05Z", small()),
        on_day(FactKind::Created, "02:00", small()),
    ];
    let q = billed(ResourceType::Instance, &facts, &default_catalogue());
    assert_eq!(q["instance:SCS-2V-4"], "22.000000");
}

#[test]
fn soft_delete_stops_billing_and_restore_or_reclaim_follow() {
    // Running 00–04, soft-deleted 04–06, restored 06–12, soft-deleted 12–20, reclaimed 20:00.
    let facts = vec![
        on_day(FactKind::Created, "00:00", small()),
        on_day(FactKind::SoftDeleted, "04:00", small()),
        on_day(FactKind::Restored, "06:00", small()),
        on_day(FactKind::SoftDeleted, "12:00", small()),
        on_day(FactKind::Deleted, "20:00", small()),
    ];
    let q = billed(ResourceType::Instance, &facts, &default_catalogue());
    assert_eq!(q["instance:SCS-2V-4"], "10.000000");
    // An operator who bills the reclaim window lists soft_deleted.
    let mut catalogue = default_catalogue();
    catalogue[0]
        .statuses
        .as_mut()
        .unwrap()
        .push(Status::SoftDeleted);
    let q = quantities(&day_usage(ResourceType::Instance, &facts, &catalogue));
    assert_eq!(q["instance:SCS-2V-4"], "20.000000");
}

#[test]
fn paused_and_rescued_bill_by_default_and_a_stopped_rebuild_stays_stopped() {
    let mut stopped_state = small();
    stopped_state["state"] = json!("stopped");
    let facts = vec![
        on_day(FactKind::Created, "00:00", small()),
        on_day(FactKind::Paused, "02:00", small()),
        on_day(FactKind::Unpaused, "03:00", small()),
        on_day(FactKind::Rescued, "04:00", small()),
        on_day(FactKind::Unrescued, "05:00", small()),
        on_day(FactKind::Stopped, "06:00", small()),
        on_day(FactKind::Rebuilt, "07:00", stopped_state),
        on_day(FactKind::Started, "10:00", small()),
    ];
    let q = billed(ResourceType::Instance, &facts, &with_running_vcpus());
    assert_eq!(q["instance:SCS-2V-4"], "24.000000");
    // Running: 00–02, 03–04, 05–06, 10–24 = 18 h × 2 vCPUs.
    assert_eq!(q["instance.vcpu"], "36.000000");
}

#[test]
fn the_owner_named_by_a_later_fact_owns_the_earlier_ownerless_time() {
    // A floating IP created through Ceilometer (no owner), associated later by a notification.
    let mut created = on_day(FactKind::Created, "00:00", json!({}));
    created.project_id = None;
    created.origin = "ceilometer".to_owned();
    let updated = on_day(FactKind::Updated, "06:00", json!({"port_id": "p-9"}));
    let usage = day_usage(
        ResourceType::FloatingIp,
        &[created, updated],
        &default_catalogue(),
    );
    assert_eq!(usage.len(), 1, "one owner: {usage:?}");
    assert_eq!(usage[0].project_id.as_deref(), Some("p-1"));
    assert_eq!(quantities(&usage)["floating_ip"], "24.000000");
}

#[test]
fn a_creation_seen_without_its_created_at_starts_at_the_created_at_of_later_facts() {
    // Ceilometer's neutron create event carries no created_at: dated when generated, 00:00:03.
    let mut created = fact(FactKind::Created, "2026-10-01T00:00:03Z", json!({}));
    created.project_id = None;
    let deleted = on_day(
        FactKind::Deleted,
        "12:00",
        json!({"created_at": "2026-10-01T00:00:00Z"}),
    );
    let q = quantities(&day_usage(
        ResourceType::FloatingIp,
        &[created, deleted],
        &default_catalogue(),
    ));
    assert_eq!(q["floating_ip"], "12.000000");
}

#[test]
fn an_undescribed_floating_ip_bills_its_hours_from_created_at() {
    // Only the delete arrived; its payload dates the creation. The hourly product needs
    // nothing but existence and owner, so the whole life bills.
    let deleted = on_day(
        FactKind::Deleted,
        "18:00",
        json!({"created_at": "2026-10-01T06:00:00Z"}),
    );
    let usage = day_usage(ResourceType::FloatingIp, &[deleted], &default_catalogue());
    assert_eq!(quantities(&usage)["floating_ip"], "12.000000");
    assert_eq!(usage[0].unknown.len(), 1, "before 06:00: creation not seen");
}

#[test]
fn retype_bills_each_type_and_attach_detach_change_nothing() {
    let ssd = json!({"size_gb": 10, "volume_type": "ssd"});
    let hdd = json!({"size_gb": 10, "volume_type": "hdd"});
    let facts = vec![
        on_day(FactKind::Created, "00:00", ssd.clone()),
        on_day(FactKind::Attached, "02:00", ssd.clone()),
        on_day(FactKind::Retyped, "06:00", hdd.clone()),
        on_day(FactKind::Detached, "09:00", hdd.clone()),
        on_day(FactKind::Deleted, "12:00", hdd),
    ];
    let q = billed(ResourceType::Volume, &facts, &default_catalogue());
    assert_eq!(q["volume:ssd"], "60.000000", "6 h × 10 GiB");
    assert_eq!(q["volume:hdd"], "60.000000", "6 h × 10 GiB");
}

#[test]
fn associating_a_floating_ip_changes_nothing_billed_and_updates_change_no_load_balancer() {
    let facts = vec![
        on_day(FactKind::Created, "00:00", json!({"port_id": null})),
        on_day(FactKind::Updated, "03:00", json!({"port_id": "port-1"})),
        on_day(FactKind::Updated, "05:00", json!({"port_id": null})),
        on_day(FactKind::Deleted, "10:00", json!({})),
    ];
    let q = billed(ResourceType::FloatingIp, &facts, &default_catalogue());
    assert_eq!(q["floating_ip"], "10.000000");
    let facts = vec![
        on_day(FactKind::Created, "00:00", json!({"name": "lb"})),
        on_day(FactKind::Updated, "03:00", json!({"name": "web"})),
        on_day(FactKind::Deleted, "08:30", json!({})),
    ];
    let q = billed(ResourceType::LoadBalancer, &facts, &default_catalogue());
    assert_eq!(q["load_balancer"], "8.500000");
}

// --- properties ---------------------------------------------------------------------------

const KINDS: &[FactKind] = &[
    FactKind::Created,
    FactKind::Resized,
    FactKind::Stopped,
    FactKind::Started,
    FactKind::ShelvedOffloaded,
    FactKind::Unshelved,
    FactKind::Exists,
    FactKind::Measured,
    FactKind::Deleted,
];

fn arb_facts() -> impl Strategy<Value = Vec<UsageFact>> {
    proptest::collection::vec((0usize..KINDS.len(), 0i64..72, 1u32..4), 0..12).prop_map(|raw| {
        raw.into_iter()
            .map(|(k, hour, size)| {
                let kind = KINDS[k];
                let time = Instant(at("2026-09-30T12:00:00Z").micros() + hour * 3_600_000_000);
                UsageFact {
                    kind,
                    effective_at: time,
                    project_id: Some(format!("p-{}", size % 2)),
                    attributes: BTreeMap::from([
                        ("flavor_name".to_owned(), json!(format!("f{size}"))),
                        ("vcpus".to_owned(), json!(size)),
                    ]),
                    origin: "notification".to_owned(),
                }
            })
            .collect()
    })
}

fn vcpu_catalogue() -> Vec<Product> {
    let mut c = default_catalogue();
    c.push(Product {
        product: "instance.vcpu".to_owned(),
        resource: ResourceType::Instance,
        unit: "vCPU-hour".to_owned(),
        attribute: Some("vcpus".to_owned()),
        divisor: 1,
        statuses: None,
    });
    c
}

fn totals(usage: &[ResourceUsage]) -> BTreeMap<(Option<String>, String), i128> {
    let mut t = BTreeMap::new();
    for u in usage {
        for p in &u.products {
            *t.entry((u.project_id.clone(), p.product.clone()))
                .or_insert(0) += p.quantity.numerator;
        }
    }
    t
}

proptest! {
    #[test]
    fn order_and_duplicates_do_not_matter(facts in arb_facts(), seed in any::<u64>()) {
        let reference = build(ResourceType::Instance, "vm", &facts);
        let mut shuffled = facts.clone();
        shuffled.extend(facts.iter().take(3).cloned());
        // A deterministic shuffle from the seed.
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(build(ResourceType::Instance, "vm", &shuffled), reference);
    }

    #[test]
    fn segments_are_contiguous_distinct_and_cover_all_time(facts in arb_facts()) {
        let t = build(ResourceType::Instance, "vm", &facts);
        prop_assert!(!t.segments.is_empty());
        prop_assert_eq!(t.segments[0].start, None);
        prop_assert_eq!(t.segments.last().unwrap().end, None);
        for pair in t.segments.windows(2) {
            prop_assert_eq!(pair[0].end, pair[1].start, "no holes, no overlaps");
            prop_assert!(pair[0].start.is_none_or(|s| Some(s) < pair[0].end));
            let differ = pair[0].presence != pair[1].presence
                || pair[0].status != pair[1].status
                || pair[0].attributes != pair[1].attributes
                || pair[0].project_id != pair[1].project_id;
            prop_assert!(differ, "adjacent segments differ");
        }
    }

    #[test]
    fn splitting_a_period_adds_up_exactly(facts in arb_facts(), cut_hours in 1i64..71) {
        let t = build(ResourceType::Instance, "vm", &facts);
        let start = at("2026-10-01T00:00:00Z");
        let end = Instant(start.micros() + 72 * 3_600_000_000);
        let cut = Instant(start.micros() + cut_hours * 3_600_000_000 + 1_234_567);
        let whole = totals(&usage_by_owner(&t, &Period::new(start, end).unwrap(), &vcpu_catalogue()));
        let mut parts = totals(&usage_by_owner(&t, &Period::new(start, cut).unwrap(), &vcpu_catalogue()));
        for (k, v) in totals(&usage_by_owner(&t, &Period::new(cut, end).unwrap(), &vcpu_catalogue())) {
            *parts.entry(k).or_insert(0) += v;
        }
        prop_assert_eq!(parts, whole);
    }

    #[test]
    fn unknown_is_never_billed(facts in arb_facts()) {
        let t = build(ResourceType::Instance, "vm", &facts);
        let usage = usage_by_owner(&t, &Period::new(at("2026-09-01T00:00:00Z"), at("2026-11-01T00:00:00Z")).unwrap(), &vcpu_catalogue());
        let unknown: i128 = usage.iter().flat_map(|u| &u.unknown).filter(|w| w.reason == "creation not seen").map(|w| i128::from(w.end.micros() - w.start.micros())).sum();
        let present: i128 = usage.iter().flat_map(|u| &u.intervals).map(|i| i128::from(i.end.micros() - i.start.micros())).sum();
        let billed_hours: i128 = usage.iter().flat_map(|u| &u.products).filter(|p| p.product.starts_with("instance:")).map(|p| p.quantity.numerator).sum();
        // Billed time never exceeds present time, and unknown time is not part of it.
        prop_assert!(billed_hours <= present);
        prop_assert!(unknown + present <= i128::from(usage_period_micros()));
    }
}

fn usage_period_micros() -> i64 {
    at("2026-11-01T00:00:00Z").micros() - at("2026-09-01T00:00:00Z").micros()
}

#[test]
fn an_estimate_bills_until_a_fact_within_its_bounds_replaces_it() {
    let created = fact(
        FactKind::Created,
        "2026-10-01T00:00:00Z",
        json!({"size_gb": 10, "volume_type": "ssd"}),
    );
    let mut estimate = fact(
        FactKind::Deleted,
        "2026-10-01T06:00:00Z",
        json!({"estimate_not_before": "2026-10-01T06:00:00Z",
               "estimate_not_after": "2026-10-01T12:00:00Z"}),
    );
    estimate.origin = "estimated".to_owned();
    let billed = |facts: &[UsageFact]| {
        quantities(&usage_by_owner(
            &build(ResourceType::Volume, "vol", facts),
            &day(),
            &default_catalogue(),
        ))["volume:ssd"]
            .clone()
    };
    assert_eq!(billed(&[created.clone(), estimate.clone()]), "60.000000");
    // The notification that was lost arrives late, inside the bounds: it wins.
    let late = fact(FactKind::Deleted, "2026-10-01T09:30:00Z", json!({}));
    assert_eq!(
        billed(&[created.clone(), estimate.clone(), late]),
        "95.000000"
    );
    // A deletion outside the bounds (slack included) does not replace the estimate.
    let outside = fact(FactKind::Deleted, "2026-10-01T12:00:03Z", json!({}));
    assert_eq!(billed(&[created, estimate, outside]), "60.000000");
}
