//! Definition parsing and validation: every schema shape, located problems, the shipped catalogue.

use std::path::{Path, PathBuf};

use super::{load, parse_file};
use crate::problem::{Problem, Severity};

fn problems(yaml: &str) -> Vec<Problem> {
    parse_file(Path::new("t.yml"), yaml).1
}

/// Every key of osism's schema (reference §1.3), image level, meta and versions.
const FULL: &str = r#"images:
  - name: Debian 12
    enable: true
    format: qcow2
    login: debian
    password: none
    min_disk: 2
    min_ram: 512
    status: active
    visibility: public
    multi: true
    keep: true
    separator: " "
    shortname: debian-12
    tags: [debian]
    latest_url: https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2
    latest_checksum_url: https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS
    meta:
      architecture: x86_64
      hypervisor_type: qemu
      hw_disk_bus: scsi
      hw_scsi_model: virtio-scsi
      hw_rng_model: virtio
      hw_watchdog_action: reset
      hw_firmware_type: uefi
      hw_machine_type: q35
      hw_vif_multiqueue_enabled: true
      hotfix_hours: 0
      os_distro: debian
      os_version: "12"
      os_purpose: generic
      image_description: https://www.debian.org/releases/bookworm/
      patchlevel: "12.8"
      replace_frequency: monthly
      uuid_validity: last-3
      provided_until: 2028-06-30
    versions:
      - version: "20241110"
        url: https://cloud.debian.org/images/cloud/bookworm/20241110-1927/debian-12-genericcloud-amd64-20241110-1927.qcow2
        mirror_url: https://mirror.example.net/debian-12/20241110.qcow2
        checksum: sha512:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
        build_date: 2024-11-10
        id: 1b2c3d4e-0000-4000-8000-000000000001
        hidden: false
        visibility: public
        os_version: "12"
        source: https://cloud.debian.org/
        image_description: Debian 12 (bookworm)
        meta:
          patchlevel: "12.8"
      - version: latest
        url: https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2
        checksums_url: https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS
        build_date: 2024-11-20 10:11
"#;

#[test]
fn every_meta_key_of_the_schema_reaches_glance() {
    let (images, found) = parse_file(Path::new("full.yml"), FULL);
    assert_eq!(found, vec![]);
    let d = &images[0];
    let props = super::properties(d, &d.versions[0].value);
    // Every key under `meta:` in FULL (which lists all the schema allows) is a property.
    let meta_keys: Vec<&str> = FULL
        .lines()
        .skip_while(|l| l.trim() != "meta:")
        .skip(1)
        .take_while(|l| l.starts_with("      ") && !l.trim_start().starts_with("versions"))
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k))
        .collect();
    assert_eq!(meta_keys.len(), 18, "{meta_keys:?}");
    for key in meta_keys {
        assert!(
            props.contains_key(key),
            "{key} never reaches Glance: {props:?}"
        );
    }
    assert_eq!(props["hw_vif_multiqueue_enabled"].0, "true");
}

#[test]
fn every_schema_shape_parses_without_problems() {
    let (images, found) = parse_file(Path::new("full.yml"), FULL);
    assert_eq!(found, vec![], "{found:#?}");
    assert_eq!(images.len(), 1);
    let d = &images[0];
    assert_eq!(d.versions.len(), 2);
    assert_eq!(d.meta.value.hotfix_hours.as_ref().unwrap().value, 0);
    assert_eq!(
        d.versions[0]
            .value
            .meta
            .as_ref()
            .unwrap()
            .value
            .patchlevel
            .as_ref()
            .unwrap()
            .value,
        "12.8"
    );
    assert_eq!(d.versions[1].value.version.value, "latest");
}

fn with(replace: &str, by: &str) -> String {
    assert!(FULL.contains(replace), "{replace}");
    FULL.replacen(replace, by, 1)
}

fn only(found: &[Problem]) -> &Problem {
    assert_eq!(found.len(), 1, "{found:#?}");
    &found[0]
}

#[test]
fn unknown_keys_are_errors_with_their_line() {
    let p = problems(&with(
        "      os_distro: debian\n",
        "      os_distro: debian\n      os_ditsro: debian\n",
    ));
    let p = only(&p);
    assert_eq!(p.line, Some(30));
    assert!(p.message.contains("os_ditsro"), "{p}");
}

#[test]
fn vocabulary_problems_name_field_and_line() {
    let p = problems(&with("os_distro: debian", "os_distro: Debian"));
    let p = only(&p);
    assert_eq!(p.field.as_deref(), Some("images[0].meta.os_distro"));
    assert_eq!(p.line, Some(29));
    assert_eq!(p.severity, Severity::Error);
    assert!(p.message.contains("\"Debian\" is not one of"), "{p}");
    assert_eq!(
        p.to_string(),
        format!("t.yml:29: error: images[0].meta.os_distro: {}", p.message)
    );
}

#[test]
fn scs_rules_apply_to_what_the_image_would_carry() {
    let found = problems(&with("      os_purpose: generic\n", ""));
    // Once per version: each would be an image without os_purpose.
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(
        found[0].field.as_deref(),
        Some("images[0].versions[0].os_purpose")
    );
    assert_eq!(
        found[1].field.as_deref(),
        Some("images[0].versions[1].os_purpose")
    );
    assert!(
        found[0].message.contains("scs-0102-prop-os_purpose"),
        "{}",
        found[0]
    );
    let found = problems(&with("min_ram: 512", "min_ram: 32"));
    // Both versions would carry min_ram 32: a warning each, at the min_ram line.
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found
            .iter()
            .all(|p| p.severity == Severity::Warning && p.line == Some(8))
    );
    let found = problems(&with("hypervisor_type: qemu", "hypervisor_type: vmware"));
    assert!(
        found.iter().all(|p| p.severity == Severity::Warning),
        "Glance knows vmware; the SCS test does not"
    );
}

#[test]
fn checksum_problems() {
    let weak = problems(&with(
        "checksum: sha512:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "checksum: md5:0123456789abcdef0123456789abcdef",
    ));
    assert_eq!(only(&weak).severity, Severity::Warning);
    assert!(only(&weak).message.contains("md5 is too weak"));
    let short = problems(&with("checksum: sha512:aaaa", "checksum: sha512:ab"));
    assert!(
        only(&short).message.contains("128 hex digits"),
        "{short:#?}"
    );
    let both = problems(&with(
        "        checksums_url: https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS\n",
        "        checksums_url: https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS\n        checksum_url: https://example.net/x.sha512\n",
    ));
    assert!(only(&both).message.contains("not both"));
    let none = problems(&with(
        "        checksums_url: https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS\n",
        "",
    ));
    assert_eq!(
        only(&none).severity,
        Severity::Error,
        "latest needs a checksum source"
    );
}

#[test]
fn other_field_rules() {
    let cases = [
        ("format: qcow2", "format: qcow3", "images[0].format"),
        ("status: active", "status: enabled", "images[0].status"),
        (
            "build_date: 2024-11-10",
            "build_date: 2999-01-01",
            "images[0].versions[0].image_build_date",
        ),
        (
            "url: https://cloud.debian.org/images/cloud/bookworm/20241110",
            "url: s3://cloud.debian.org/images/cloud/bookworm/20241110",
            "images[0].versions[0].url",
        ),
        (
            "uuid_validity: last-3",
            "uuid_validity: last-three",
            "images[0].meta.uuid_validity",
        ),
        (
            "version: latest",
            "version: \"20241110\"",
            "images[0].versions[1].version",
        ),
    ];
    for (from, to, field) in cases {
        let found = problems(&with(from, to));
        assert!(
            found
                .iter()
                .any(|p| p.field.as_deref() == Some(field) && p.severity == Severity::Error),
            "{to}: {found:#?}"
        );
    }
}

#[test]
fn broken_yaml_is_located() {
    let found = problems("images:\n  - name: x\n    enable: [\n");
    assert!(only(&found).line.is_some(), "{found:#?}");
}

#[test]
fn folders_are_read_and_duplicate_names_found() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yml"), FULL).unwrap();
    std::fs::write(dir.path().join("b.yaml"), FULL).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let (images, found) = load(dir.path());
    assert_eq!(images.len(), 2);
    let p = only(&found);
    assert!(p.message.contains("is also defined in"), "{p}");
    assert!(p.file.ends_with("b.yaml"));
}

#[test]
fn the_shipped_catalogue_validates_and_passes_scs_0102() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../images");
    let (images, found) = load(&root);
    assert_eq!(found, vec![], "{found:#?}");
    let names: Vec<&str> = images.iter().map(|(_, d)| d.name.value.as_str()).collect();
    for wanted in [
        "Ubuntu 22.04",
        "Ubuntu 24.04",
        "Cirros",
        "ubuntu-capi-image",
    ] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    // scs-0104: the sources the standard requires.
    for (_, d) in &images {
        let url = &d.versions[0].value.url.value;
        match d.name.value.as_str() {
            "Ubuntu 22.04" => {
                assert!(url.starts_with("https://cloud-images.ubuntu.com/releases/jammy/"))
            }
            "Ubuntu 24.04" => {
                assert!(url.starts_with("https://cloud-images.ubuntu.com/releases/noble/"))
            }
            "ubuntu-capi-image" => {
                assert!(url.starts_with(
                    "https://nbg1.your-objectstorage.com/osism/openstack-k8s-capi-images/"
                ));
                assert_eq!(d.separator.as_deref(), Some("-"), "the v5 dash scheme");
                assert_eq!(d.meta.value.os_purpose.as_ref().unwrap().value, "k8snode");
            }
            _ => {}
        }
        for v in &d.versions {
            assert!(
                v.value.checksums_url.is_some() || v.value.checksum.is_some(),
                "{}: verifiable",
                d.name.value
            );
        }
    }
}
