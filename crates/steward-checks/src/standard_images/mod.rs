//! `steward check standard-images`: SCS-0104 — the images a cloud must (and should) offer,
//! and where each may come from.
//!
//! The lists are the standard's YAML annexes (`scs-0104-v1-images.yaml` for certificate scope
//! v4, `scs-0104-v1-images-v5.yaml` for v5.1 and next), built in; `--spec FILE` reads another
//! annex in the same format. Each entry names one image (`name`) or a class (`name_scheme`, a
//! regular expression matched at the start of the name, as the reference test's `re.match`),
//! a `status` (mandatory, recommended, optional) and the allowed `image_source` prefixes.
//!
//! Results:
//! - `scs-0104-image-<x>`: a mandatory entry without a visible public image is a FAIL, a
//!   recommended one a WARN (optional ones are not required);
//! - `scs-0104-source-<x>`: every matching image, whatever the status, whose `image_source`
//!   does not start with an allowed prefix is a FAIL;
//! - `scs-0104-recency-<x>`: a matching visible image older (per `image_build_date`, else its
//!   registration) than its `replace_frequency` promises, with 10 % tolerance, and no newer
//!   generation of the entry present, is a WARN: the standard image is stale.
//!
//! Differs from the reference test on purpose (docs/checks.md): a hidden image does not count
//! as offering the standard image (users do not see it in listings).

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::Deserialize;
use steward_cloud::ImageRecord;

use crate::images::{built, period_hours};
use crate::model::{CheckResult, Status};

/// One annex entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The exact image name, or the class's label.
    pub name: String,
    /// For a class: a regular expression on image names, anchored at the start.
    #[serde(default)]
    pub name_scheme: Option<String>,
    /// `mandatory`, `recommended` or `optional` (the default).
    #[serde(default = "optional")]
    pub status: String,
    /// Allowed `image_source` prefixes (one or a list).
    #[serde(default, deserialize_with = "one_or_many")]
    pub source: Vec<String>,
}

fn optional() -> String {
    "optional".to_owned()
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// An annex: its name and entries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Spec {
    /// E.g. `SCS-compatible IaaS v5 images`.
    #[serde(default)]
    pub name: String,
    /// The entries.
    pub images: Vec<Entry>,
}

const UBUNTU: &str = "https://cloud-images.ubuntu.com/";
const DEBIAN_CLOUD: &str = "https://cloud.debian.org/images/cloud/";
const DEBIAN_CD: &str = "https://cdimage.debian.org/cdimage/cloud/";
const CAPI_SOURCES: &[&str] = &[
    "https://nbg1.your-objectstorage.com/osism/openstack-k8s-capi-images/",
    "https://swift.services.a.regiocloud.tech/swift/v1/AUTH_b182637428444b9aa302bb8d5a5a418c/openstack-k8s-capi-images/ubuntu-2404-kube",
    "https://swift.services.a.regiocloud.tech/swift/v1/AUTH_b182637428444b9aa302bb8d5a5a418c/openstack-k8s-capi-images/ubuntu-2204-kube",
];

fn ubuntu(version: &str, codename: &str, status: &str) -> Entry {
    Entry {
        name: format!("Ubuntu {version}"),
        name_scheme: None,
        status: status.to_owned(),
        source: vec![
            format!("{UBUNTU}releases/{codename}/"),
            format!("{UBUNTU}{codename}/"),
        ],
    }
}

fn debian(version: &str, codename: &str, status: &str) -> Entry {
    Entry {
        name: format!("Debian {version}"),
        name_scheme: None,
        status: status.to_owned(),
        source: vec![
            format!("{DEBIAN_CLOUD}{codename}/"),
            format!("{DEBIAN_CD}{codename}/"),
        ],
    }
}

fn capi(scheme: &str, status: &str) -> Entry {
    Entry {
        name: "ubuntu-capi-image".to_owned(),
        name_scheme: Some(scheme.to_owned()),
        status: status.to_owned(),
        source: CAPI_SOURCES.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// The built-in annexes: `v5` (scs-0104-v1-images-v5.yaml: certificate scope v5.1 and next)
/// and `v4` (scs-0104-v1-images.yaml).
pub fn builtin(scope: &str) -> Option<Spec> {
    Some(match scope {
        "v5" => Spec {
            name: "scs-0104-v1-images-v5".to_owned(),
            images: vec![
                ubuntu("24.04", "noble", "mandatory"),
                debian("12", "bookworm", "recommended"),
                capi(
                    r"ubuntu-capi-image-v[0-9]+\.[0-9]+(\.[0-9]+)?",
                    "recommended",
                ),
                ubuntu("22.04", "jammy", "optional"),
                ubuntu("20.04", "focal", "optional"),
                debian("11", "bullseye", "optional"),
                debian("10", "buster", "optional"),
            ],
        },
        "v4" => Spec {
            name: "scs-0104-v1-images".to_owned(),
            images: vec![
                ubuntu("22.04", "jammy", "mandatory"),
                capi(
                    r"ubuntu-capi-image v[0-9]+\.[0-9]+(\.[0-9]+)?",
                    "recommended",
                ),
                ubuntu("20.04", "focal", "optional"),
                debian("12", "bookworm", "optional"),
                debian("11", "bullseye", "optional"),
                debian("10", "buster", "optional"),
            ],
        },
        _ => return None,
    })
}

/// Why an annex cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Not YAML of the annex format.
    #[error("{0}")]
    Parse(String),
    /// A `name_scheme` that is not a regular expression.
    #[error("images[{index}].name_scheme {scheme:?}: {error}")]
    Scheme {
        /// The entry.
        index: usize,
        /// The expression.
        scheme: String,
        /// Why.
        error: String,
    },
    /// A status that is none of the three.
    #[error("images[{index}].status {status:?} is not mandatory, recommended or optional")]
    Status {
        /// The entry.
        index: usize,
        /// The value.
        status: String,
    },
}

/// Reads an annex in the standard's YAML format.
pub fn parse_spec(text: &str) -> Result<Spec, SpecError> {
    let spec: Spec = serde_saphyr::from_str(text).map_err(|e| SpecError::Parse(e.to_string()))?;
    for (index, entry) in spec.images.iter().enumerate() {
        if !matches!(
            entry.status.as_str(),
            "mandatory" | "recommended" | "optional"
        ) {
            return Err(SpecError::Status {
                index,
                status: entry.status.clone(),
            });
        }
        if let Some(scheme) = &entry.name_scheme {
            Regex::new(&format!("^(?:{scheme})")).map_err(|e| SpecError::Scheme {
                index,
                scheme: scheme.clone(),
                error: e.to_string(),
            })?;
        }
    }
    Ok(spec)
}

/// The test-id suffix of an entry: `ubuntu-2404`, `debian-12`, `ubuntu-capi-image`.
fn slug(entry: &Entry) -> String {
    entry
        .name
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => Some(c),
            ' ' | '_' => Some('-'),
            _ => None,
        })
        .collect()
}

fn matches(entry: &Entry, scheme: Option<&Regex>, image: &ImageRecord) -> bool {
    match scheme {
        Some(re) => re.is_match(&image.name),
        None => image.name == entry.name,
    }
}

/// Checks `images` (everything Glance lists) against `spec` as of `now`.
pub fn check(images: &[ImageRecord], spec: &Spec, now: DateTime<Utc>) -> Vec<CheckResult> {
    let standard = ("scs-0104", "v1");
    let scope: Vec<&ImageRecord> = images
        .iter()
        .filter(|i| matches!(i.visibility.as_str(), "public" | "community"))
        .collect();
    let mut results = Vec::new();
    for entry in &spec.images {
        let scheme = entry
            .name_scheme
            .as_ref()
            .and_then(|s| Regex::new(&format!("^(?:{s})")).ok());
        let found: Vec<&ImageRecord> = scope
            .iter()
            .copied()
            .filter(|i| matches(entry, scheme.as_ref(), i))
            .collect();
        let visible: Vec<&ImageRecord> = found.iter().copied().filter(|i| !i.hidden).collect();
        let slug = slug(entry);
        let label = entry.name_scheme.as_deref().unwrap_or(&entry.name);
        // Presence.
        let presence = format!("scs-0104-image-{slug}");
        let required = match entry.status.as_str() {
            "mandatory" => Some(Status::Fail),
            "recommended" => Some(Status::Warn),
            _ => None,
        };
        if let Some(missing) = required {
            let result = if visible.is_empty() {
                let why = if found.is_empty() {
                    "no public image".to_owned()
                } else {
                    format!(
                        "only hidden image(s) ({}): users do not see them",
                        found
                            .iter()
                            .map(|i| i.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                CheckResult::new(
                    &presence,
                    standard,
                    missing,
                    format!("{} image {label:?} is missing: {why}", entry.status),
                )
            } else {
                CheckResult::new(
                    &presence,
                    standard,
                    Status::Pass,
                    format!("offered as {}", visible[0].id),
                )
            };
            results.push(
                result
                    .about(label.to_owned())
                    .with("status", entry.status.as_str())
                    .with(
                        "images",
                        visible.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
                    ),
            );
        }
        // Sources, for every matching image.
        let source_id = format!("scs-0104-source-{slug}");
        let mut bad_sources = 0;
        for image in &found {
            let source = image
                .properties
                .get("image_source")
                .map(String::as_str)
                .unwrap_or("");
            if !entry.source.iter().any(|p| source.starts_with(p.as_str())) {
                bad_sources += 1;
                results.push(
                    CheckResult::new(
                        &source_id,
                        standard,
                        Status::Fail,
                        format!(
                            "image_source {source:?} does not start with {}",
                            entry.source.join(" or ")
                        ),
                    )
                    .about(format!("image {} {:?}", image.id, image.name))
                    .with("image_id", image.id.as_str())
                    .with("image_source", source)
                    .with("allowed", entry.source.clone()),
                );
            }
        }
        if bad_sources == 0 && !found.is_empty() {
            results.push(
                CheckResult::new(
                    &source_id,
                    standard,
                    Status::Pass,
                    format!("{} matching image(s), every source allowed", found.len()),
                )
                .about(label.to_owned()),
            );
        }
        // Staleness: the newest visible generation, if it is past its promise.
        if let Some(newest) = visible.iter().max_by_key(|i| built(i))
            && let Some(frequency) = newest.properties.get("replace_frequency")
            && let (Some(hours), Some(built_at)) = (period_hours(frequency), built(newest))
        {
            let age = (now - built_at).num_hours();
            if age > hours * 11 / 10 {
                results.push(
                    CheckResult::new(
                        format!("scs-0104-recency-{slug}"),
                        standard,
                        Status::Warn,
                        format!(
                            "the newest {label:?} was built {} days ago; its replace_frequency \
                             {frequency} promises a new one sooner",
                            age / 24
                        ),
                    )
                    .about(format!("image {} {:?}", newest.id, newest.name))
                    .with("image_id", newest.id.as_str())
                    .with("built", built_at.to_rfc3339())
                    .with("replace_frequency", frequency.as_str()),
                );
            }
        }
    }
    results
}
