//! The SCS-0102 check on synthetic Glance listings: a conforming catalogue passes every rule,
//! each rule is triggered once by its own broken image, and a rotated set (osism style) does not
//! warn.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use steward_cloud::ImageRecord;

use super::{RULES, Version, check};
use crate::model::{CheckResult, Status, Summary};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
}

/// A conforming public image.
fn good(id: &str, name: &str, distro: &str, version: &str, built: &str) -> ImageRecord {
    let properties: BTreeMap<String, String> = [
        ("architecture", "x86_64"),
        ("os_distro", distro),
        ("os_version", version),
        ("os_purpose", "generic"),
        ("hw_disk_bus", "scsi"),
        ("hypervisor_type", "qemu"),
        ("hw_rng_model", "virtio"),
        ("image_build_date", built),
        ("image_original_user", "ubuntu"),
        (
            "image_source",
            "https://cloud-images.ubuntu.com/releases/noble/x.img",
        ),
        ("image_description", "https://ubuntu.com/server"),
        ("replace_frequency", "monthly"),
        ("provided_until", "2027-06-30"),
        ("uuid_validity", "last-3"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    ImageRecord {
        id: id.to_owned(),
        name: name.to_owned(),
        status: "active".to_owned(),
        visibility: "public".to_owned(),
        min_disk: 8,
        min_ram: 512,
        size: Some(600 << 20),
        os_hash_algo: Some("sha512".to_owned()),
        properties,
        created_at: Some(format!("{built}T10:00:00Z")),
        ..ImageRecord::default()
    }
}

fn statuses(results: &[CheckResult]) -> BTreeMap<&str, Vec<Status>> {
    let mut out: BTreeMap<&str, Vec<Status>> = BTreeMap::new();
    for r in results {
        out.entry(r.id.as_str()).or_default().push(r.status);
    }
    out
}

#[test]
fn a_conforming_catalogue_passes_every_rule() {
    let images = vec![
        good("u24", "Ubuntu 24.04", "ubuntu", "24.04", "2026-11-20"),
        good("d12", "Debian 12", "debian", "12", "2026-11-25"),
    ];
    let results = check(&images, now(), Version::V2);
    assert_eq!(results.len(), RULES.len());
    assert!(
        results.iter().all(|r| r.status == Status::Pass),
        "{results:#?}"
    );
    assert_eq!(Summary::of(&results).exit_code(), 0);
}

#[test]
fn each_rule_is_triggered_once_by_its_own_image() {
    let base = || good("x", "Name", "ubuntu", "24.04", "2026-11-20");
    let mut broken: Vec<(&str, ImageRecord)> = Vec::new();
    let mut set = |rule: &'static str, change: &dyn Fn(&mut ImageRecord)| {
        let mut image = base();
        image.id = rule.to_owned();
        image.name = format!("Image {rule}");
        // Distinct buckets so that uniqueness does not fire for them.
        image
            .properties
            .insert("os_version".to_owned(), rule.to_owned());
        change(&mut image);
        broken.push((rule, image));
    };
    let prop = |k: &'static str, v: &'static str| {
        move |i: &mut ImageRecord| {
            i.properties.insert(k.to_owned(), v.to_owned());
        }
    };
    let unset = |k: &'static str| {
        move |i: &mut ImageRecord| {
            i.properties.remove(k);
        }
    };
    set("scs-0102-prop-architecture", &prop("architecture", "sparc"));
    set("scs-0102-prop-min_disk", &|i| i.min_disk = 0);
    set("scs-0102-prop-min_ram", &|i| i.min_ram = 0);
    set("scs-0102-prop-os_distro", &unset("os_distro"));
    set("scs-0102-prop-os_version", &unset("os_version"));
    set("scs-0102-prop-os_purpose", &prop("os_purpose", "desktop"));
    set("scs-0102-prop-hw_disk_bus", &prop("hw_disk_bus", "ide"));
    set(
        "scs-0102-prop-hypervisor_type",
        &prop("hypervisor_type", "vmware"),
    );
    set("scs-0102-prop-hw_rng_model", &prop("hw_rng_model", "none"));
    set(
        "scs-0102-prop-image_build_date",
        &prop("image_build_date", "2026-13-40"),
    );
    set(
        "scs-0102-prop-image_original_user",
        &unset("image_original_user"),
    );
    set(
        "scs-0102-prop-image_source",
        &prop("image_source", "file:///tmp/x.img"),
    );
    set(
        "scs-0102-prop-image_description",
        &unset("image_description"),
    );
    set(
        "scs-0102-prop-replace_frequency",
        &prop("replace_frequency", "sometimes"),
    );
    set("scs-0102-prop-provided_until", &unset("provided_until"));
    set(
        "scs-0102-prop-uuid_validity",
        &prop("uuid_validity", "last-"),
    );
    set("scs-0102-prop-hotfix_hours", &prop("hotfix_hours", "soon"));
    set("scs-0102-prop-hash_algo", &|i| {
        i.os_hash_algo = Some("md5".to_owned());
    });
    let mut images: Vec<ImageRecord> = broken.iter().map(|(_, i)| i.clone()).collect();
    // Uniqueness: two visible generic images of one distro and version.
    images.push(good(
        "dup-1",
        "Ubuntu 22.04",
        "ubuntu",
        "22.04",
        "2026-11-20",
    ));
    images.push(good(
        "dup-2",
        "Ubuntu 22.04 copy",
        "ubuntu",
        "22.04",
        "2026-11-21",
    ));
    // Recency: monthly, built in August, promised until next year, no successor.
    images.push(good("stale", "Rocky 9", "rocky", "9", "2026-08-01"));
    let results = check(&images, now(), Version::V2);
    let by_rule = statuses(&results);
    for rule in RULES {
        let found: Vec<&CheckResult> = results
            .iter()
            .filter(|r| r.id == *rule && r.status != Status::Pass)
            .collect();
        assert_eq!(found.len(), 1, "{rule}: {:#?}", by_rule.get(rule));
        let finding = found[0];
        match *rule {
            "scs-0102-os_purpose-uniqueness" => {
                assert_eq!(finding.evidence["images"].as_array().unwrap().len(), 2);
            }
            "scs-0102-image-recency" => {
                assert_eq!(finding.evidence["image_id"], "stale");
                assert!(finding.message.contains("no current image"));
            }
            _ => assert_eq!(finding.evidence["image_id"], *rule, "{rule}: {finding:?}"),
        }
    }
    // Recommendations are warnings, musts failures.
    let status_of = |rule: &str| by_rule[rule].iter().find(|s| **s != Status::Pass).copied();
    assert_eq!(status_of("scs-0102-prop-hw_rng_model"), Some(Status::Warn));
    assert_eq!(status_of("scs-0102-prop-hash_algo"), Some(Status::Warn));
    assert_eq!(status_of("scs-0102-prop-os_distro"), Some(Status::Fail));
    // v1: os_purpose and uniqueness are recommendations.
    let v1 = statuses(&check(&images, now(), Version::V1))
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect::<BTreeMap<_, _>>();
    assert_eq!(v1["scs-0102-os_purpose-uniqueness"], [Status::Warn]);
    assert_eq!(v1["scs-0102-prop-os_purpose"], [Status::Warn]);
}

#[test]
fn a_rotated_set_does_not_warn() {
    // The image manager's rotation: the current generation under the plain name, older ones
    // renamed with their build date in parentheses, hidden, os_purpose oldgeneric.
    let current = good("new", "Ubuntu 24.04", "ubuntu", "24.04", "2026-11-20");
    let mut older = good(
        "old",
        "Ubuntu 24.04 (20260801)",
        "ubuntu",
        "24.04",
        "2026-08-01",
    );
    older.hidden = true;
    older
        .properties
        .insert("os_purpose".to_owned(), "oldgeneric".to_owned());
    let mut oldest = good(
        "older",
        "Ubuntu 24.04 20260501",
        "ubuntu",
        "24.04",
        "2026-05-01",
    );
    oldest
        .properties
        .insert("os_purpose".to_owned(), "oldgeneric".to_owned());
    let results = check(&[current, older, oldest], now(), Version::V2);
    assert!(
        results.iter().all(|r| r.status == Status::Pass),
        "{results:#?}"
    );
}

#[test]
fn an_outdated_image_still_under_its_name_warns_and_names_its_successor() {
    let current = good("new", "Debian 12", "debian", "12", "2026-11-20");
    let mut stale = good("old", "Debian 12", "debian", "12", "2026-08-01");
    stale
        .properties
        .insert("os_purpose".to_owned(), "oldgeneric".to_owned());
    let results = check(&[current, stale], now(), Version::V2);
    let recency: Vec<&CheckResult> = results
        .iter()
        .filter(|r| r.id == "scs-0102-image-recency")
        .collect();
    assert_eq!(recency.len(), 1);
    assert_eq!(recency[0].status, Status::Warn);
    assert_eq!(recency[0].evidence["successor"], "new");
    // Private images are not in scope.
    let mut private = good("p", "Mine", "ubuntu", "24.04", "2020-01-01");
    private.visibility = "private".to_owned();
    private.properties.clear();
    let results = check(&[private], now(), Version::V2);
    assert!(results.iter().all(|r| r.status == Status::Pass));
    assert_eq!(results[0].evidence["images"], 0);
}
