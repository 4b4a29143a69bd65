//! SCS-0102 image metadata rules, on a Glance property map.
//!
//! The predicates of the SCS reference test (`image_metadata.py`, reference §2.3), including its
//! lenient cases: an unset `hw_disk_bus`, `hypervisor_type`, `hw_rng_model` or `uuid_validity`
//! passes; `provided_until` only has to be non-empty; `min_ram` below 64 MiB is a warning. The
//! image manager runs them on the properties a definition would set; the conformance checks run
//! them on images in Glance. A warning is a real finding, never noise.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};

use crate::problem::Severity;

/// One rule violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The SCS test id, e.g. `scs-0102-prop-os_distro`.
    pub test: String,
    /// The property.
    pub property: String,
    /// Error (the SCS test fails) or warning.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
}

/// `architecture` values the SCS test accepts.
pub const ARCHITECTURES: &[&str] = &["x86_64", "aarch64", "risc-v"];
/// `os_purpose` values (scs-0102 v2, with `oldgeneric`).
pub const OS_PURPOSES: &[&str] = &[
    "generic",
    "minimal",
    "k8snode",
    "gpu",
    "network",
    "custom",
    "oldgeneric",
];
/// `replace_frequency` values.
pub const REPLACE_FREQUENCIES: &[&str] = &[
    "yearly",
    "quarterly",
    "monthly",
    "weekly",
    "daily",
    "critical_bug",
    "never",
];
/// `hypervisor_type` values the SCS test accepts (note: not Glance's `hyperv`/`vmware`).
pub const SCS_HYPERVISORS: &[&str] = &["qemu", "kvm", "xen", "hyper-v", "esxi"];

/// Parses `image_build_date` as the SCS test does: a date, or a date with a time.
pub fn parse_build_date(text: &str) -> Option<NaiveDate> {
    let t = text.trim();
    NaiveDate::parse_from_str(t, "%Y-%m-%d").ok().or_else(|| {
        [
            "%Y-%m-%d %H:%M",
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%dT%H:%M:%SZ",
            "%Y-%m-%dT%H:%M:%S",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .map(|dt| dt.date())
    })
}

/// Whether `uuid_validity` follows the grammar: none, forever, notice, last-N or a date.
pub fn valid_uuid_validity(text: &str) -> bool {
    matches!(text, "none" | "forever" | "notice")
        || text
            .strip_prefix("last-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        || NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
}

/// Checks a property map (Glance properties plus `min_disk`/`min_ram` as text).
pub fn check_properties(props: &BTreeMap<String, String>, today: NaiveDate) -> Vec<Finding> {
    let mut findings = Vec::new();
    let get = |k: &str| {
        props
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    };
    let mut add = |property: &str, severity, message: String| {
        findings.push(Finding {
            test: format!("scs-0102-prop-{property}"),
            property: property.to_owned(),
            severity,
            message,
        });
    };
    let one_of = |value: &str, allowed: &[&str]| allowed.contains(&value);
    let missing = "is mandatory but not set".to_owned();

    match get("architecture") {
        None => add("architecture", Severity::Error, missing.clone()),
        Some(v) if !one_of(v, ARCHITECTURES) => {
            add(
                "architecture",
                Severity::Error,
                format!("{v:?} is not one of {}", ARCHITECTURES.join(", ")),
            );
        }
        _ => {}
    }
    for key in ["min_disk", "min_ram"] {
        match get(key).and_then(|v| v.parse::<u64>().ok()) {
            None | Some(0) => add(key, Severity::Error, "must be set and above 0".to_owned()),
            Some(ram) if key == "min_ram" && ram < 64 => add(
                key,
                Severity::Warning,
                format!("{ram} MiB is unlikely to boot and survive 10 s"),
            ),
            _ => {}
        }
    }
    for key in [
        "os_distro",
        "os_version",
        "image_original_user",
        "image_description",
        "provided_until",
    ] {
        if get(key).is_none() {
            add(key, Severity::Error, missing.clone());
        }
    }
    match get("os_purpose") {
        None => add(
            "os_purpose",
            Severity::Error,
            "is mandatory in scs-0102 v2 but not set".to_owned(),
        ),
        Some(v) if !one_of(v, OS_PURPOSES) => {
            add(
                "os_purpose",
                Severity::Error,
                format!("{v:?} is not one of {}", OS_PURPOSES.join(", ")),
            );
        }
        _ => {}
    }
    if let Some(v) = get("hw_disk_bus")
        && !one_of(v, &["virtio", "scsi"])
    {
        add(
            "hw_disk_bus",
            Severity::Error,
            format!("{v:?} is not virtio or scsi"),
        );
    }
    if let Some(v) = get("hypervisor_type")
        && !one_of(v, SCS_HYPERVISORS)
    {
        add(
            "hypervisor_type",
            Severity::Warning,
            format!(
                "{v:?} is not one the SCS test accepts ({})",
                SCS_HYPERVISORS.join(", ")
            ),
        );
    }
    if let Some(v) = get("hw_rng_model")
        && v != "virtio"
    {
        add(
            "hw_rng_model",
            Severity::Warning,
            format!("{v:?} is not virtio (scs-0101 entropy)"),
        );
    }
    match get("image_build_date") {
        None => add("image_build_date", Severity::Error, missing.clone()),
        Some(v) => match parse_build_date(v) {
            None => add(
                "image_build_date",
                Severity::Error,
                format!("{v:?} is not YYYY-MM-DD[ hh:mm[:ss]]"),
            ),
            Some(d) if d > today => add(
                "image_build_date",
                Severity::Error,
                format!("{v} is in the future"),
            ),
            _ => {}
        },
    }
    match get("image_source") {
        None => add("image_source", Severity::Error, missing.clone()),
        Some(v) => {
            let url = ["http://", "https://", "ftp://", "ftps://"]
                .iter()
                .any(|s| v.starts_with(s));
            if v != "private" && !url {
                add(
                    "image_source",
                    Severity::Error,
                    format!("{v:?} is neither a download URL nor private"),
                );
            }
        }
    }
    match get("replace_frequency") {
        None => add("replace_frequency", Severity::Error, missing.clone()),
        Some(v) if !one_of(v, REPLACE_FREQUENCIES) => add(
            "replace_frequency",
            Severity::Error,
            format!("{v:?} is not one of {}", REPLACE_FREQUENCIES.join(", ")),
        ),
        _ => {}
    }
    if let Some(v) = get("uuid_validity")
        && !valid_uuid_validity(v)
    {
        add(
            "uuid_validity",
            Severity::Error,
            format!("{v:?} is not none, forever, notice, last-N or a date"),
        );
    }
    if let Some(v) = get("hotfix_hours")
        && !v.bytes().all(|b| b.is_ascii_digit())
    {
        add(
            "hotfix_hours",
            Severity::Error,
            format!("{v:?} is not a whole number of hours"),
        );
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete() -> BTreeMap<String, String> {
        [
            ("architecture", "x86_64"),
            ("min_disk", "8"),
            ("min_ram", "512"),
            ("os_distro", "ubuntu"),
            ("os_version", "22.04"),
            ("os_purpose", "generic"),
            ("hw_disk_bus", "scsi"),
            ("hypervisor_type", "qemu"),
            ("hw_rng_model", "virtio"),
            ("image_build_date", "2026-11-20"),
            ("image_original_user", "ubuntu"),
            (
                "image_source",
                "https://cloud-images.ubuntu.com/releases/jammy/release-20261120/x.img",
            ),
            ("image_description", "https://ubuntu.com/server"),
            ("replace_frequency", "quarterly"),
            ("provided_until", "none"),
            ("uuid_validity", "last-3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()
    }

    #[test]
    fn a_complete_image_has_no_findings() {
        assert_eq!(check_properties(&complete(), today()), vec![]);
    }

    #[test]
    fn lenient_cases_of_the_reference_test_pass() {
        let mut p = complete();
        for key in [
            "hw_disk_bus",
            "hypervisor_type",
            "hw_rng_model",
            "uuid_validity",
        ] {
            p.remove(key);
        }
        p.insert("provided_until".to_owned(), "whenever".to_owned());
        assert_eq!(check_properties(&p, today()), vec![]);
    }

    #[test]
    fn each_rule_can_fail() {
        let cases: &[(&str, Option<&str>, Severity)] = &[
            ("architecture", Some("sparc"), Severity::Error),
            ("min_disk", Some("0"), Severity::Error),
            ("min_ram", None, Severity::Error),
            ("min_ram", Some("32"), Severity::Warning),
            ("os_distro", Some(""), Severity::Error),
            ("os_purpose", Some("desktop"), Severity::Error),
            ("os_purpose", None, Severity::Error),
            ("hw_disk_bus", Some("ide"), Severity::Error),
            ("hypervisor_type", Some("vmware"), Severity::Warning),
            ("hw_rng_model", Some("egd"), Severity::Warning),
            ("image_build_date", Some("20261120"), Severity::Error),
            ("image_build_date", Some("2027-01-01"), Severity::Error),
            ("image_source", Some("s3://bucket/x"), Severity::Error),
            ("replace_frequency", Some("sometimes"), Severity::Error),
            ("uuid_validity", Some("last-x"), Severity::Error),
            ("hotfix_hours", Some("soon"), Severity::Error),
        ];
        for (key, value, severity) in cases {
            let mut p = complete();
            match value {
                Some(v) => p.insert((*key).to_owned(), (*v).to_owned()),
                None => p.remove(*key),
            };
            let findings = check_properties(&p, today());
            assert_eq!(findings.len(), 1, "{key}={value:?}: {findings:?}");
            assert_eq!(findings[0].property, *key);
            assert_eq!(findings[0].severity, *severity, "{key}={value:?}");
            assert_eq!(findings[0].test, format!("scs-0102-prop-{key}"));
        }
    }

    #[test]
    fn build_dates_in_every_accepted_form() {
        for d in [
            "2026-11-20",
            "2026-11-20 10:11",
            "2026-11-20 10:11:12",
            "2026-11-20T10:11:12Z",
        ] {
            assert_eq!(
                parse_build_date(d),
                NaiveDate::from_ymd_opt(2026, 11, 20),
                "{d}"
            );
        }
        assert!(valid_uuid_validity("last-3") && valid_uuid_validity("2027-06-30"));
        assert!(!valid_uuid_validity("last-") && !valid_uuid_validity("always"));
    }
}
