//! `steward check images`: SCS-0102 image metadata on every public and community image of
//! Glance (hidden ones included, as the SCS reference test reads them).
//!
//! The property rules are `steward_images::scs0102::check_properties`, the same code
//! `steward images validate` runs on definitions. On top, the rules that need Glance's view:
//! `min_disk` against the stored size, `image_build_date` not after `created_at`, the multihash
//! algorithm, uniqueness of the generic image per (architecture, os_distro, os_version), and
//! recency per `replace_frequency`.
//!
//! Where this differs from the reference test (`Tests/iaas/scs_0102_image_metadata`), it is on
//! purpose and documented in `docs/checks.md`: a rotated image named `<name> (YYYYMMDD)` (the
//! osism image manager's marker) counts as marked like `<name> YYYYMMDD`; an outdated image that
//! is hidden is marked whatever its name; and an outdated image whose newer generation exists
//! (the name minus its marker, not outdated) passes instead of warning.
//!
//! One result per finding (image and property), FAIL for the standard's MUSTs, WARN for its
//! SHOULDs; one PASS per rule no image broke.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use steward_cloud::ImageRecord;
use steward_images::problem::Severity;
use steward_images::scs0102;

use crate::model::{CheckResult, Status};

/// Which version of SCS-0102.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// v1: `os_purpose` and uniqueness recommended.
    V1,
    /// v2 (draft, the "next" certificate scope): both mandatory.
    #[default]
    V2,
}

impl Version {
    fn label(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

/// The rules checked, in output order (the SCS test ids).
pub const RULES: &[&str] = &[
    "scs-0102-prop-architecture",
    "scs-0102-prop-min_disk",
    "scs-0102-prop-min_ram",
    "scs-0102-prop-os_distro",
    "scs-0102-prop-os_version",
    "scs-0102-prop-os_purpose",
    "scs-0102-prop-hw_disk_bus",
    "scs-0102-prop-hypervisor_type",
    "scs-0102-prop-hw_rng_model",
    "scs-0102-prop-image_build_date",
    "scs-0102-prop-image_original_user",
    "scs-0102-prop-image_source",
    "scs-0102-prop-image_description",
    "scs-0102-prop-replace_frequency",
    "scs-0102-prop-provided_until",
    "scs-0102-prop-uuid_validity",
    "scs-0102-prop-hotfix_hours",
    "scs-0102-prop-hash_algo",
    "scs-0102-os_purpose-uniqueness",
    "scs-0102-image-recency",
];

fn subject(image: &ImageRecord) -> String {
    format!("image {} {:?}", image.id, image.name)
}

fn created(image: &ImageRecord) -> Option<DateTime<Utc>> {
    image
        .created_at
        .as_deref()
        .and_then(steward_cloud::inventory::parse_api_time)
}

/// When `image` was built: its `image_build_date` (midnight UTC), else its registration (as the
/// reference test reads it).
pub(crate) fn built(image: &ImageRecord) -> Option<DateTime<Utc>> {
    image
        .properties
        .get("image_build_date")
        .and_then(|d| scs0102::parse_build_date(d))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .or_else(|| created(image))
}

/// The images SCS-0102 is about: public and community ones, hidden included.
pub fn in_scope(images: &[ImageRecord]) -> Vec<&ImageRecord> {
    images
        .iter()
        .filter(|i| matches!(i.visibility.as_str(), "public" | "community"))
        .collect()
}

/// Checks `images` (everything Glance lists) as of `now`.
pub fn check(images: &[ImageRecord], now: DateTime<Utc>, version: Version) -> Vec<CheckResult> {
    let standard = ("scs-0102", version.label());
    let scope = in_scope(images);
    let today = now.date_naive();
    let mut findings: Vec<CheckResult> = Vec::new();
    let finding = |id: &str, image: &ImageRecord, severity: Severity, message: String| {
        let status = match severity {
            Severity::Error => Status::Fail,
            Severity::Warning => Status::Warn,
        };
        CheckResult::new(id, standard, status, message)
            .about(subject(image))
            .with("image_id", image.id.as_str())
            .with("name", image.name.as_str())
    };
    for image in &scope {
        let mut props = image.properties.clone();
        props.insert("min_disk".to_owned(), image.min_disk.to_string());
        props.insert("min_ram".to_owned(), image.min_ram.to_string());
        for f in scs0102::check_properties(&props, today) {
            // os_purpose is a recommendation in v1.
            let severity = if version == Version::V1 && f.property == "os_purpose" {
                Severity::Warning
            } else {
                f.severity
            };
            findings.push(
                finding(&f.test, image, severity, f.message)
                    .with("property", f.property.as_str())
                    .with(
                        "value",
                        props.get(&f.property).map_or(serde_json::Value::Null, |v| {
                            serde_json::Value::from(v.as_str())
                        }),
                    ),
            );
        }
        if let Some(size) = image.size
            && image.min_disk > 0
            && image.min_disk.saturating_mul(1 << 30) < size
        {
            findings.push(
                finding(
                    "scs-0102-prop-min_disk",
                    image,
                    Severity::Error,
                    format!(
                        "min_disk {} GiB is smaller than the stored image ({size} bytes)",
                        image.min_disk
                    ),
                )
                .with("min_disk", image.min_disk)
                .with("size", size),
            );
        }
        if let (Some(built), Some(created)) = (
            image
                .properties
                .get("image_build_date")
                .and_then(|d| scs0102::parse_build_date(d)),
            created(image),
        ) && built > created.date_naive()
        {
            findings.push(
                finding(
                    "scs-0102-prop-image_build_date",
                    image,
                    Severity::Error,
                    format!(
                        "image_build_date {built} is after the image was registered ({})",
                        created.date_naive()
                    ),
                )
                .with("created_at", image.created_at.clone()),
            );
        }
        if let Some(algo) = &image.os_hash_algo
            && !matches!(algo.as_str(), "sha256" | "sha512")
        {
            findings.push(
                finding(
                    "scs-0102-prop-hash_algo",
                    image,
                    Severity::Warning,
                    format!("os_hash_algo {algo:?} is not sha256 or sha512"),
                )
                .with("os_hash_algo", algo.as_str()),
            );
        }
    }
    findings.extend(uniqueness(&scope, version));
    findings.extend(recency(&scope, now, version));

    let mut results = Vec::new();
    for rule in RULES {
        let mine: Vec<CheckResult> = findings.iter().filter(|f| f.id == *rule).cloned().collect();
        if mine.is_empty() {
            results.push(
                CheckResult::new(
                    *rule,
                    standard,
                    Status::Pass,
                    format!("{} image(s) checked", scope.len()),
                )
                .with("images", scope.len()),
            );
        } else {
            results.extend(mine);
        }
    }
    results
}

/// At most one public, visible generic image per (architecture, os_distro, os_version).
fn uniqueness(scope: &[&ImageRecord], version: Version) -> Vec<CheckResult> {
    let mut buckets: BTreeMap<(String, String, String), Vec<&ImageRecord>> = BTreeMap::new();
    for image in scope {
        let get = |k: &str| image.properties.get(k).cloned().unwrap_or_default();
        if image.visibility != "public"
            || image.hidden
            || get("os_distro").is_empty()
            || get("os_version").is_empty()
            || get("os_purpose") != "generic"
        {
            continue;
        }
        buckets
            .entry((get("architecture"), get("os_distro"), get("os_version")))
            .or_default()
            .push(image);
    }
    let status = match version {
        Version::V1 => Status::Warn,
        Version::V2 => Status::Fail,
    };
    buckets
        .into_iter()
        .filter(|(_, images)| images.len() > 1)
        .map(|((arch, distro, os_version), images)| {
            let names: Vec<String> = images.iter().map(|i| subject(i)).collect();
            CheckResult::new(
                "scs-0102-os_purpose-uniqueness",
                ("scs-0102", version.label()),
                status,
                format!(
                    "{} public, visible images with os_purpose=generic for {distro} {os_version} \
                     {arch}: hide the older ones or give them os_purpose=oldgeneric",
                    images.len()
                ),
            )
            .about(format!("{distro} {os_version} {arch}"))
            .with("images", names)
        })
        .collect()
}

/// The period `replace_frequency` promises, in hours (the reference test's: a year 365 days, a
/// quarter 92, a month 31, a week 7 × 25 h, a day 25 h), `None` for no promise.
pub(crate) fn period_hours(frequency: &str) -> Option<i64> {
    Some(match frequency {
        "yearly" => 365 * 24,
        "quarterly" => 92 * 24,
        "monthly" => 31 * 24,
        "weekly" => 7 * 25,
        "daily" => 25,
        _ => return None,
    })
}

/// Whether the last word of `name` marks an older generation: `old`, `prev`, `YYYY-MM-DD`,
/// `YYYYMMDD`, or `(YYYYMMDD)` (the image manager's form).
fn marker(name: &str) -> Option<&str> {
    let last = name.rsplit(' ').next()?;
    let bare = last
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .unwrap_or(last);
    let date = |f: &str| NaiveDate::parse_from_str(bare, f).is_ok();
    (name.contains(' ') && (matches!(bare, "old" | "prev") || date("%Y-%m-%d") || date("%Y%m%d")))
        .then_some(last)
}

/// Images older than their `replace_frequency` promises (with 10 % tolerance), unless
/// `provided_until` says the promise is over, must be marked and have a current successor.
fn recency(scope: &[&ImageRecord], now: DateTime<Utc>, version: Version) -> Vec<CheckResult> {
    let standard = ("scs-0102", version.label());
    let outdated = |image: &ImageRecord| -> Result<bool, String> {
        let Some(built) = built(image) else {
            return Ok(false);
        };
        let Some(hours) = image
            .properties
            .get("replace_frequency")
            .and_then(|f| period_hours(f))
        else {
            return Ok(false);
        };
        if (now - built).num_hours() <= hours * 11 / 10 {
            return Ok(false);
        }
        match image.properties.get("provided_until").map(String::as_str) {
            None | Some("none") | Some("notice") => Ok(false),
            Some(until) => match NaiveDate::parse_from_str(until, "%Y-%m-%d") {
                Ok(date) if date < now.date_naive() => Ok(false),
                Ok(_) => Ok(true),
                Err(_) => Err(format!("provided_until {until:?} is not a date")),
            },
        }
    };
    let mut out = Vec::new();
    for image in scope {
        let is_outdated = match outdated(image) {
            Ok(o) => o,
            Err(message) => {
                out.push(
                    CheckResult::new("scs-0102-image-recency", standard, Status::Fail, message)
                        .about(subject(image)),
                );
                continue;
            }
        };
        if !is_outdated {
            continue;
        }
        let mark = marker(&image.name);
        let base = mark.map(|m| image.name[..image.name.len() - m.len()].trim_end());
        let successor = base.or(Some(image.name.as_str())).and_then(|base| {
            scope.iter().find(|other| {
                other.id != image.id && other.name == base && !outdated(other).unwrap_or(true)
            })
        });
        let evidence = |r: CheckResult| {
            r.about(subject(image))
                .with("image_id", image.id.as_str())
                .with(
                    "image_build_date",
                    image.properties.get("image_build_date").cloned(),
                )
                .with(
                    "replace_frequency",
                    image.properties.get("replace_frequency").cloned(),
                )
                .with(
                    "provided_until",
                    image.properties.get("provided_until").cloned(),
                )
        };
        match (mark.is_some() || image.hidden, successor) {
            (true, Some(_)) => {}
            (_, None) => out.push(evidence(CheckResult::new(
                "scs-0102-image-recency",
                standard,
                Status::Fail,
                format!(
                    "outdated per replace_frequency and no current image named {:?} replaces it",
                    base.unwrap_or(&image.name)
                ),
            ))),
            (false, Some(next)) => out.push(
                evidence(CheckResult::new(
                    "scs-0102-image-recency",
                    standard,
                    Status::Warn,
                    format!(
                        "outdated and still visible under its name: hide it (os_hidden) or \
                         append its build date; {} replaces it",
                        subject(next)
                    ),
                ))
                .with("successor", next.id.as_str()),
            ),
        }
    }
    out
}
