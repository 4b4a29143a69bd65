//! SCS-0104 on synthetic Glance listings: the v5 annex satisfied, each kind of finding once,
//! the v4 annex's space-separated CAPI scheme, and annex files read and refused.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use steward_cloud::ImageRecord;

use super::{builtin, check, parse_spec};
use crate::model::{CheckResult, Status};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
}

fn image(id: &str, name: &str, source: &str, built: &str) -> ImageRecord {
    let properties: BTreeMap<String, String> = [
        ("image_source", source),
        ("image_build_date", built),
        ("replace_frequency", "monthly"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    ImageRecord {
        id: id.to_owned(),
        name: name.to_owned(),
        visibility: "public".to_owned(),
        properties,
        ..ImageRecord::default()
    }
}

fn not_passing(results: &[CheckResult]) -> Vec<(String, Status)> {
    results
        .iter()
        .filter(|r| r.status != Status::Pass)
        .map(|r| (r.id.clone(), r.status))
        .collect()
}

#[test]
fn a_cloud_offering_the_v5_images_from_their_sources_passes() {
    let images = vec![
        image(
            "u24",
            "Ubuntu 24.04",
            "https://cloud-images.ubuntu.com/releases/noble/release-20261120/x.img",
            "2026-11-20",
        ),
        image(
            "d12",
            "Debian 12",
            "https://cloud.debian.org/images/cloud/bookworm/20261125-1/x.qcow2",
            "2026-11-25",
        ),
        image(
            "capi",
            "ubuntu-capi-image-v1.31.4",
            "https://nbg1.your-objectstorage.com/osism/openstack-k8s-capi-images/ubuntu-2404-kube-v1.31/x.qcow2",
            "2026-11-28",
        ),
    ];
    let results = check(&images, &builtin("v5").unwrap(), now());
    assert_eq!(not_passing(&results), vec![], "{results:#?}");
    let presence: Vec<&str> = results
        .iter()
        .filter(|r| r.id.starts_with("scs-0104-image-"))
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(
        presence,
        [
            "scs-0104-image-ubuntu-2404",
            "scs-0104-image-debian-12",
            "scs-0104-image-ubuntu-capi-image"
        ]
    );
}

#[test]
fn missing_stale_and_foreign_images_are_each_named() {
    let mut hidden_debian = image(
        "d12",
        "Debian 12",
        "https://cloud.debian.org/images/cloud/bookworm/x.qcow2",
        "2026-11-25",
    );
    hidden_debian.hidden = true;
    let images = vec![
        // The mandatory image is there but stale (monthly, built in August).
        image(
            "u24",
            "Ubuntu 24.04",
            "https://cloud-images.ubuntu.com/releases/noble/x.img",
            "2026-08-01",
        ),
        // An optional image from elsewhere: its source fails whatever its status.
        image(
            "u22",
            "Ubuntu 22.04",
            "https://mirror.example/jammy.img",
            "2026-11-20",
        ),
        hidden_debian,
    ];
    let results = check(&images, &builtin("v5").unwrap(), now());
    let mut found = not_passing(&results);
    found.sort();
    assert_eq!(
        found,
        [
            ("scs-0104-image-debian-12".to_owned(), Status::Warn),
            ("scs-0104-image-ubuntu-capi-image".to_owned(), Status::Warn),
            ("scs-0104-recency-ubuntu-2404".to_owned(), Status::Warn),
            ("scs-0104-source-ubuntu-2204".to_owned(), Status::Fail),
        ]
    );
    let debian = results
        .iter()
        .find(|r| r.id == "scs-0104-image-debian-12")
        .unwrap();
    assert!(debian.message.contains("only hidden"), "{}", debian.message);
    let stale = results
        .iter()
        .find(|r| r.id == "scs-0104-recency-ubuntu-2404")
        .unwrap();
    assert_eq!(stale.evidence["image_id"], "u24");
    // Without the mandatory image: a FAIL.
    let results = check(&images[1..], &builtin("v5").unwrap(), now());
    let ubuntu = results
        .iter()
        .find(|r| r.id == "scs-0104-image-ubuntu-2404")
        .unwrap();
    assert_eq!(ubuntu.status, Status::Fail);
    assert!(
        ubuntu
            .message
            .contains("mandatory image \"Ubuntu 24.04\" is missing")
    );
}

#[test]
fn the_v4_annex_names_capi_images_with_a_space_and_matches_at_the_start_only() {
    let v4 = builtin("v4").unwrap();
    let capi = |name: &str| {
        image(
            "c",
            name,
            "https://nbg1.your-objectstorage.com/osism/openstack-k8s-capi-images/x",
            "2026-11-28",
        )
    };
    let status_of = |images: &[ImageRecord]| {
        check(images, &v4, now())
            .into_iter()
            .find(|r| r.id == "scs-0104-image-ubuntu-capi-image")
            .unwrap()
            .status
    };
    assert_eq!(
        status_of(&[capi("ubuntu-capi-image v1.30.2")]),
        Status::Pass
    );
    assert_eq!(
        status_of(&[capi("ubuntu-capi-image-v1.30.2")]),
        Status::Warn
    );
    // re.match semantics: anchored at the start, not at the end.
    assert_eq!(
        status_of(&[capi("ubuntu-capi-image v1.30 (old)")]),
        Status::Pass
    );
    assert_eq!(
        status_of(&[capi("my ubuntu-capi-image v1.30")]),
        Status::Warn
    );
}

#[test]
fn annex_files_are_read_and_bad_ones_refused() {
    let spec = parse_spec(
        "name: mine\nimages:\n- name: Ubuntu 24.04\n  status: mandatory\n  source: https://cloud-images.ubuntu.com/\n- name: capi\n  name_scheme: 'capi-v[0-9]+'\n  source:\n  - https://a/\n  - https://b/\n",
    )
    .unwrap();
    assert_eq!(spec.images.len(), 2);
    assert_eq!(spec.images[1].status, "optional");
    assert_eq!(spec.images[1].source.len(), 2);
    let bad = parse_spec("images:\n- name: x\n  name_scheme: '('\n").unwrap_err();
    assert!(bad.to_string().contains("images[0].name_scheme"), "{bad}");
    let status = parse_spec("images:\n- name: x\n  status: required\n").unwrap_err();
    assert!(
        status
            .to_string()
            .contains("not mandatory, recommended or optional")
    );
    assert!(parse_spec("images:\n- name: x\n  sorce: typo\n").is_err());
}
