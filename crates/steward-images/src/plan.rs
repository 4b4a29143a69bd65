//! The plan: what `steward images apply` would change in Glance, and why.
//!
//! A pure function from the definitions (with their upstreams resolved) and the images Glance
//! holds to an ordered list of [`Action`]s, each with its reason.
//!
//! Invariants:
//! - Steward recognises the images it manages by its own property `steward_definition` (and
//!   `steward_version`, `steward_digest`), never by name or description; every other image is
//!   left alone and never appears in a plan.
//! - Desired state is complete: properties (SCS-0102 and Steward's markers), tags, visibility,
//!   `os_hidden`, `min_disk`, `min_ram` and the name are compared on **every** run, and all the
//!   drift of one image is one [`Action::Update`] (one PATCH).
//! - Applying a plan and planning again gives an empty plan.
//! - Retired generations follow `uuid_validity` with its SCS meaning: `none` (the UUID is valid
//!   only while the content is unchanged) deletes them, `last-N` keeps the newest N generations
//!   (the current one included), a date keeps them until that date, `notice` and `forever` keep
//!   them. A kept generation is renamed `<name> YYYYMMDD` (its build date, the marker the SCS
//!   test recognises), hidden, and a generic one becomes `os_purpose=oldgeneric`. With
//!   `keep: true` an expired generation is deactivated instead of deleted.
//! - A managed image that is not `active` or `deactivated` is left over from an interrupted
//!   apply: it is deleted and its version imported again.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use crate::definition::{ImageDefinition, properties};
use crate::upstream::natural_cmp;

/// The property that marks an image as Steward's, holding its definition name.
pub const DEFINITION_PROPERTY: &str = "steward_definition";
/// The property holding the version (for `latest` definitions: the build, `YYYYMMDD`).
pub const VERSION_PROPERTY: &str = "steward_version";
/// The property holding the verified upstream digest, `<algorithm>:<hex>`.
pub const DIGEST_PROPERTY: &str = "steward_digest";
/// The property set, with the digest, only after an import was verified. A managed image
/// without it was left by an apply that stopped before verifying: it is never made visible,
/// but deleted and imported again.
pub const VERIFIED_PROPERTY: &str = "steward_verified";
/// The tag Steward adds to the images it manages (scs-0102 recommends `managed_by_<vendor>`).
pub const MANAGED_TAG: &str = "managed_by_steward";

/// An image as Glance shows it (the record `steward-cloud` reads).
pub use steward_cloud::ImageRecord as GlanceImage;

/// One version as resolved upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedVersion {
    /// The version (for `latest`: the build, `YYYYMMDD`).
    pub version: String,
    /// Index into the definition's `versions`.
    pub index: usize,
    /// Build date.
    pub build_date: NaiveDate,
    /// `<algorithm>:<hex>` the import must match.
    pub digest: Option<String>,
}

/// A definition with its versions resolved.
#[derive(Debug, Clone)]
pub struct Desired<'a> {
    /// The definition.
    pub definition: &'a ImageDefinition,
    /// Its versions, resolved.
    pub versions: Vec<ResolvedVersion>,
}

/// One field change of an update.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// `name`, `visibility`, `os_hidden`, `min_disk`, `min_ram`, `tags` or a property name.
    pub field: String,
    /// Value now (`None` = not set).
    pub from: Option<String>,
    /// Value wanted (`None` = remove).
    pub to: Option<String>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "a plan holds one action per image; boxing would only obscure the matches"
)]
pub enum Action {
    /// Create and import a version.
    Create {
        /// Definition.
        definition: String,
        /// Version.
        version: String,
        /// The fixed Glance id of the version (`versions[].id`), if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Final name.
        name: String,
        /// Where the image is imported from: `mirror_url` when the version has one (as
        /// openstack-image-manager does), else `url`. `image_source` is always `url`.
        url: String,
        /// With a mirror: the upstream `url`, imported from instead only when apply is told to
        /// fall back (`--fallback-to-upstream`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upstream_url: Option<String>,
        /// Glance `disk_format`.
        disk_format: String,
        /// Digest the import must match.
        digest: Option<String>,
        /// Final visibility.
        visibility: String,
        /// Every property to set at creation (the verification marker comes after verifying).
        properties: BTreeMap<String, String>,
        /// The value of `steward_verified` to set once the content is verified.
        verified: Option<String>,
        /// Tags.
        tags: BTreeSet<String>,
        /// GiB.
        min_disk: u64,
        /// MiB.
        min_ram: u64,
        /// Why.
        reason: String,
    },
    /// Change an image in place (one PATCH).
    Update {
        /// Image id.
        id: String,
        /// Name now.
        name: String,
        /// The changes.
        changes: Vec<Change>,
        /// Why.
        reason: String,
    },
    /// Deactivate (expired, but `keep: true`).
    Deactivate {
        /// Image id.
        id: String,
        /// Name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Delete.
    Delete {
        /// Image id.
        id: String,
        /// Name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// The desired final state of one image that should exist.
struct Target {
    name: String,
    visibility: String,
    hidden: bool,
    min_disk: u64,
    min_ram: u64,
    tags: BTreeSet<String>,
    properties: BTreeMap<String, String>,
}

fn image_name(def: &ImageDefinition, version: &str) -> String {
    let separator = def.separator.as_deref().unwrap_or(" ");
    format!("{}{separator}{version}", def.name.value)
}

fn retired_name(def: &ImageDefinition, image: &GlanceImage) -> String {
    let date = image
        .properties
        .get("image_build_date")
        .and_then(|d| crate::scs0102::parse_build_date(d))
        .map(|d| d.format("%Y%m%d").to_string())
        .or_else(|| image.properties.get(VERSION_PROPERTY).cloned())
        .unwrap_or_else(|| image.id.chars().take(8).collect());
    format!("{} {date}", def.name.value)
}

/// Unique names for the kept generations: `<name> YYYYMMDD`, and `-2`, `-3`, … for builds of
/// one day, so no two images (hidden ones included) share a name. A generation keeps the name
/// it has when that name is still its own; the others are named in creation order, so adding a
/// generation never renames an older one.
fn generation_names(
    def: &ImageDefinition,
    kept: &[&GlanceImage],
    mut taken: BTreeSet<String>,
) -> BTreeMap<String, String> {
    let mut by_age: Vec<&GlanceImage> = kept.to_vec();
    by_age.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    let fits = |base: &str, name: &str| {
        name == base
            || name
                .strip_prefix(base)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n >= 2))
    };
    let mut names = BTreeMap::new();
    for image in &by_age {
        let base = retired_name(def, image);
        if fits(&base, &image.name) && taken.insert(image.name.clone()) {
            names.insert(image.id.clone(), image.name.clone());
        }
    }
    for image in by_age {
        if names.contains_key(&image.id) {
            continue;
        }
        let base = retired_name(def, image);
        let name = std::iter::once(base.clone())
            .chain((2u32..).map(|n| format!("{base}-{n}")))
            .find(|n| !taken.contains(n))
            .unwrap_or(base);
        taken.insert(name.clone());
        names.insert(image.id.clone(), name);
    }
    names
}

fn target(def: &ImageDefinition, v: &ResolvedVersion, name: String) -> Target {
    let version = &def.versions[v.index].value;
    let mut props: BTreeMap<String, String> = properties(def, version)
        .into_iter()
        .map(|(k, (value, _))| (k, value))
        .collect();
    let min_disk = def.min_disk.value;
    let min_ram = def.min_ram.value;
    props.remove("min_disk");
    props.remove("min_ram");
    props.insert(
        "image_build_date".to_owned(),
        v.build_date.format("%Y-%m-%d").to_string(),
    );
    props.insert(DEFINITION_PROPERTY.to_owned(), def.name.value.clone());
    props.insert(VERSION_PROPERTY.to_owned(), v.version.clone());
    if let Some(d) = &v.digest {
        props.insert(DIGEST_PROPERTY.to_owned(), d.clone());
        props.insert(VERIFIED_PROPERTY.to_owned(), d.clone());
    }
    let mut tags: BTreeSet<String> = def.tags.iter().cloned().collect();
    tags.insert(MANAGED_TAG.to_owned());
    if let Some(distro) = &def.meta.value.os_distro {
        tags.insert(format!("os:{}", distro.value));
    }
    let visibility = version
        .visibility
        .as_ref()
        .map_or(def.visibility.value.clone(), |v| v.value.clone());
    let hidden = version.hidden.unwrap_or(false);
    Target {
        name,
        visibility,
        hidden,
        min_disk,
        min_ram,
        tags,
        properties: props,
    }
}

fn diff(image: &GlanceImage, t: &Target) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut field = |name: &str, from: String, to: String| {
        if from != to {
            changes.push(Change {
                field: name.to_owned(),
                from: Some(from),
                to: Some(to),
            });
        }
    };
    field("name", image.name.clone(), t.name.clone());
    field("visibility", image.visibility.clone(), t.visibility.clone());
    field("os_hidden", image.hidden.to_string(), t.hidden.to_string());
    field(
        "min_disk",
        image.min_disk.to_string(),
        t.min_disk.to_string(),
    );
    field("min_ram", image.min_ram.to_string(), t.min_ram.to_string());
    let join = |tags: &BTreeSet<String>| tags.iter().cloned().collect::<Vec<_>>().join(",");
    field("tags", join(&image.tags), join(&t.tags));
    for (key, want) in &t.properties {
        let have = image.properties.get(key);
        if have != Some(want) {
            changes.push(Change {
                field: key.clone(),
                from: have.cloned(),
                to: Some(want.clone()),
            });
        }
    }
    changes
}

/// Adds one update (one PATCH) with every difference between `image` and `target`, if any.
fn update_if_drifted(
    actions: &mut Vec<Action>,
    image: &GlanceImage,
    target: &Target,
    reason: String,
) {
    let changes = diff(image, target);
    if !changes.is_empty() {
        actions.push(Action::Update {
            id: image.id.clone(),
            name: image.name.clone(),
            changes,
            reason,
        });
    }
}

/// How many retired generations `uuid_validity` keeps (`usize::MAX` = all), today.
fn kept_generations(uuid_validity: Option<&str>, today: NaiveDate) -> (usize, String) {
    match uuid_validity {
        None | Some("forever") => (
            usize::MAX,
            "uuid_validity forever keeps every generation".to_owned(),
        ),
        Some("notice") => (
            usize::MAX,
            "uuid_validity notice keeps generations until a notice".to_owned(),
        ),
        Some("none") => (
            0,
            "uuid_validity none: a UUID is valid only while its content is unchanged".to_owned(),
        ),
        Some(v) if v.starts_with("last-") => {
            let n: usize = v[5..].parse().unwrap_or(1);
            (
                n.saturating_sub(1),
                format!(
                    "uuid_validity {v} keeps {} older generation(s)",
                    n.saturating_sub(1)
                ),
            )
        }
        Some(date) => match NaiveDate::parse_from_str(date, "%Y-%m-%d") {
            Ok(until) if today <= until => (
                usize::MAX,
                format!("uuid_validity keeps generations until {date}"),
            ),
            Ok(_) => (0, format!("uuid_validity {date} has passed")),
            Err(_) => (
                usize::MAX,
                format!("uuid_validity {date:?} is not understood: keeping"),
            ),
        },
    }
}

const LIVE: &[&str] = &["active", "deactivated"];

/// Plans the changes for `desired` against the images in Glance.
pub fn plan(desired: &[Desired<'_>], cloud: &[GlanceImage], today: NaiveDate) -> Vec<Action> {
    let mut actions = Vec::new();
    for d in desired {
        let def = d.definition;
        let mine: Vec<&GlanceImage> = cloud
            .iter()
            .filter(|i| i.properties.get(DEFINITION_PROPERTY) == Some(&def.name.value))
            .collect();
        // Never verified: an apply stopped between import and verification.
        let unverified = |i: &GlanceImage| {
            i.properties.contains_key(DIGEST_PROPERTY)
                && !i.properties.contains_key(VERIFIED_PROPERTY)
        };
        let (live, broken): (Vec<&GlanceImage>, Vec<&GlanceImage>) = mine
            .into_iter()
            .partition(|i| LIVE.contains(&i.status.as_str()) && !unverified(i));
        for image in broken {
            let reason = if LIVE.contains(&image.status.as_str()) {
                "imported but never verified: left by an interrupted apply".to_owned()
            } else {
                format!("left in status {} by an interrupted import", image.status)
            };
            actions.push(Action::Delete {
                id: image.id.clone(),
                name: image.name.clone(),
                reason,
            });
        }
        let find = |v: &ResolvedVersion| {
            live.iter().copied().find(|i| {
                i.properties.get(VERSION_PROPERTY) == Some(&v.version)
                    && v.digest
                        .as_ref()
                        .is_none_or(|dg| i.properties.get(DIGEST_PROPERTY) == Some(dg))
            })
        };
        // Which versions are current, and the names they should carry.
        let mut current: Vec<(&ResolvedVersion, String)> = Vec::new();
        if def.multi {
            if let Some(newest) = d
                .versions
                .iter()
                .max_by(|a, b| natural_cmp(&a.version, &b.version))
            {
                current.push((newest, def.name.value.clone()));
            }
        } else {
            for v in &d.versions {
                current.push((
                    v,
                    image_name(def, &def.versions[v.index].value.version.value),
                ));
            }
        }
        let mut in_use = BTreeSet::new();
        for (v, name) in &current {
            let t = target(def, v, name.clone());
            match find(v) {
                Some(image) => {
                    in_use.insert(image.id.clone());
                    update_if_drifted(
                        &mut actions,
                        image,
                        &t,
                        "drift from the definition".to_owned(),
                    );
                }
                None => actions.push(Action::Create {
                    verified: t.properties.get(VERIFIED_PROPERTY).cloned(),
                    definition: def.name.value.clone(),
                    version: v.version.clone(),
                    id: def.versions[v.index].value.id.clone(),
                    name: t.name,
                    url: def.versions[v.index]
                        .value
                        .mirror_url
                        .as_ref()
                        .unwrap_or(&def.versions[v.index].value.url)
                        .value
                        .clone(),
                    upstream_url: def.versions[v.index]
                        .value
                        .mirror_url
                        .as_ref()
                        .map(|_| def.versions[v.index].value.url.value.clone()),
                    disk_format: def.format.value.clone(),
                    digest: v.digest.clone(),
                    visibility: t.visibility,
                    properties: t
                        .properties
                        .into_iter()
                        .filter(|(k, _)| k != VERIFIED_PROPERTY)
                        .collect(),
                    tags: t.tags,
                    min_disk: t.min_disk,
                    min_ram: t.min_ram,
                    reason: format!("version {} is not in Glance", v.version),
                }),
            }
        }
        // Retired generations, newest first.
        let mut retired: Vec<&GlanceImage> = live
            .iter()
            .copied()
            .filter(|i| !in_use.contains(&i.id))
            .collect();
        retired.sort_by(|a, b| {
            let key = |i: &GlanceImage| {
                i.properties
                    .get("image_build_date")
                    .cloned()
                    .unwrap_or_default()
            };
            key(b).cmp(&key(a)).then_with(|| b.id.cmp(&a.id))
        });
        let validity = def
            .meta
            .value
            .uuid_validity
            .as_ref()
            .map(|v| v.value.as_str());
        let (keep, why) = kept_generations(validity, today);
        let taken: BTreeSet<String> = current.iter().map(|(_, name)| name.clone()).collect();
        let names = generation_names(def, &retired[..keep.min(retired.len())], taken);
        for (k, image) in retired.into_iter().enumerate() {
            if k < keep {
                let mut props = image.properties.clone();
                if props.get("os_purpose").map(String::as_str) == Some("generic") {
                    props.insert("os_purpose".to_owned(), "oldgeneric".to_owned());
                }
                let t = Target {
                    name: names[&image.id].clone(),
                    visibility: image.visibility.clone(),
                    hidden: true,
                    min_disk: image.min_disk,
                    min_ram: image.min_ram,
                    tags: image.tags.clone(),
                    properties: props,
                };
                update_if_drifted(
                    &mut actions,
                    image,
                    &t,
                    format!("replaced by a newer version; {why}"),
                );
            } else if def.keep == Some(true) {
                if image.status != "deactivated" {
                    actions.push(Action::Deactivate {
                        id: image.id.clone(),
                        name: image.name.clone(),
                        reason: format!("expired ({why}); keep: true forbids deleting it"),
                    });
                }
            } else {
                actions.push(Action::Delete {
                    id: image.id.clone(),
                    name: image.name.clone(),
                    reason: format!("expired: {why}"),
                });
            }
        }
    }
    actions
}

/// The plan as an infrastructure tool prints it: `+` create, `~` update, `-` delete, `!`
/// deactivate, each with its reason.
pub fn render(actions: &[Action]) -> String {
    let mut out = String::new();
    for a in actions {
        match a {
            Action::Create {
                name,
                version,
                url,
                upstream_url,
                digest,
                reason,
                ..
            } => {
                out.push_str(&format!("+ create      {name} ({version})  # {reason}\n"));
                match upstream_url {
                    Some(upstream) => {
                        out.push_str(&format!("      from {url} (mirror of {upstream})\n"))
                    }
                    None => out.push_str(&format!("      from {url}\n")),
                }
                if let Some(d) = digest {
                    out.push_str(&format!("      verify {d}\n"));
                }
            }
            Action::Update {
                id,
                name,
                changes,
                reason,
            } => {
                out.push_str(&format!("~ update      {name} [{id}]  # {reason}\n"));
                for c in changes {
                    let show =
                        |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".to_owned());
                    out.push_str(&format!(
                        "      {}: {} -> {}\n",
                        c.field,
                        show(&c.from),
                        show(&c.to)
                    ));
                }
            }
            Action::Deactivate { id, name, reason } => {
                out.push_str(&format!("! deactivate  {name} [{id}]  # {reason}\n"));
            }
            Action::Delete { id, name, reason } => {
                out.push_str(&format!("- delete      {name} [{id}]  # {reason}\n"));
            }
        }
    }
    if actions.is_empty() {
        out.push_str("no changes: Glance matches the definitions\n");
    }
    out
}

#[cfg(test)]
mod tests;

/// Resolves every enabled definition's upstreams into the plan's input. Versions that cannot be
/// resolved (no digest, no build date, upstream gone) cannot be planned: they come back as
/// messages, and their definition is left out of the plan rather than planned on guesses.
pub async fn resolve_all<'a>(
    client: &reqwest::Client,
    definitions: &'a [ImageDefinition],
    allow_md5: bool,
) -> (Vec<Desired<'a>>, Vec<String>) {
    let mut desired = Vec::new();
    let mut blocked = Vec::new();
    for def in definitions.iter().filter(|d| d.enable) {
        let mut versions = Vec::new();
        let mut ok = true;
        for (index, v) in def.versions.iter().enumerate() {
            let mut r = crate::upstream::resolve_version(client, &v.value).await;
            // md5 only with the explicit opt-in (and the warning the CLI prints); sha1 never.
            if allow_md5 {
                r.problems.retain(|p| {
                    !matches!(p, crate::upstream::UpstreamProblem::WeakChecksumOnly { algorithm } if algorithm == "md5")
                });
            }
            let version = if v.value.version.value == "latest" {
                r.build_date.map(|d| d.format("%Y%m%d").to_string())
            } else {
                Some(v.value.version.value.clone())
            };
            match (version, r.build_date, &r.digest, r.problems.is_empty()) {
                (Some(version), Some(build_date), Some(_), true) => {
                    versions.push(ResolvedVersion {
                        version,
                        index,
                        build_date,
                        digest: r.digest.clone(),
                    });
                }
                _ => {
                    ok = false;
                    let why: Vec<String> = r.problems.iter().map(ToString::to_string).collect();
                    blocked.push(format!(
                        "{} {} (line {}): blocked: {}",
                        def.name.value,
                        v.value.version.value,
                        v.referenced.line(),
                        if why.is_empty() {
                            "no digest".to_owned()
                        } else {
                            why.join("; ")
                        }
                    ));
                }
            }
        }
        if ok {
            desired.push(Desired {
                definition: def,
                versions,
            });
        }
    }
    (desired, blocked)
}
