//! Image definitions: osism openstack-image-manager YAML, accepted as it is.
//!
//! A file holds `images:`, a list of definitions (name, format, login, min_disk, min_ram,
//! status, visibility, multi, tags, meta, versions, …; reference §1.3). Parsing is strict:
//! an unknown key is an error with its line, as in osism's own strict schema check. After
//! parsing, [`validate`] checks each definition's values against Glance's vocabulary and the
//! SCS image metadata standard, so every problem comes with file, line and field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::checksum::ExpectedDigest;
use crate::problem::{Problem, Severity};
use crate::scs0102;

/// A definition file: `images:` and the list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefinitionFile {
    /// The definitions.
    pub images: Vec<ImageDefinition>,
}

/// One image definition (a name with one or more versions).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDefinition {
    /// Base name (`Ubuntu 22.04`).
    pub name: Spanned<String>,
    /// Skip the definition when false.
    pub enable: bool,
    /// Glance `disk_format`.
    pub format: Spanned<String>,
    /// Login user (`image_original_user`).
    pub login: Spanned<String>,
    /// Documentation only.
    #[serde(default)]
    pub password: Option<String>,
    /// Minimum disk, GiB.
    pub min_disk: Spanned<u64>,
    /// Minimum RAM, MiB.
    pub min_ram: Spanned<u64>,
    /// `active` or `deactivated`.
    pub status: Spanned<String>,
    /// `public`, `private`, `community` or `shared`.
    pub visibility: Spanned<String>,
    /// One rotating name for many builds (true) or one image per version (false).
    pub multi: bool,
    /// Retired versions are never deleted.
    #[serde(default)]
    pub keep: Option<bool>,
    /// Between name and version (default a space).
    #[serde(default)]
    pub separator: Option<String>,
    /// Mirror and update key.
    #[serde(default)]
    pub shortname: Option<String>,
    /// Extra Glance tags.
    pub tags: Vec<String>,
    /// Glance properties.
    pub meta: Spanned<Meta>,
    /// The versions.
    pub versions: Vec<Spanned<Version>>,
    /// Where the newest build is announced (discovery).
    #[serde(default)]
    pub latest_url: Option<Spanned<String>>,
    /// The checksum file of the newest build (discovery).
    #[serde(default)]
    pub latest_checksum_url: Option<Spanned<String>>,
}

/// Glance properties of a definition or version (osism `meta`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is the Glance property of the same name
pub struct Meta {
    pub architecture: Option<Spanned<String>>,
    pub hypervisor_type: Option<Spanned<String>>,
    pub hw_disk_bus: Option<Spanned<String>>,
    pub os_distro: Option<Spanned<String>>,
    pub os_purpose: Option<Spanned<String>>,
    pub replace_frequency: Option<Spanned<String>>,
    pub provided_until: Option<Spanned<String>>,
    pub uuid_validity: Option<Spanned<String>>,
    pub hotfix_hours: Option<Spanned<u64>>,
    pub hw_rng_model: Option<Spanned<String>>,
    pub hw_scsi_model: Option<Spanned<String>>,
    pub hw_watchdog_action: Option<Spanned<String>>,
    pub hw_firmware_type: Option<Spanned<String>>,
    pub hw_machine_type: Option<Spanned<String>>,
    pub hw_vif_multiqueue_enabled: Option<Spanned<bool>>,
    pub image_description: Option<Spanned<String>>,
    pub os_version: Option<Spanned<String>>,
    pub patchlevel: Option<Spanned<String>>,
}

/// One version of a definition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// Version string; `latest` switches to pointer mode.
    pub version: Spanned<String>,
    /// Upstream URL (`image_source`).
    pub url: Spanned<String>,
    /// Where to download from instead, when set.
    #[serde(default)]
    pub mirror_url: Option<Spanned<String>>,
    /// `<algorithm>:<hex>`.
    #[serde(default)]
    pub checksum: Option<Spanned<String>>,
    /// A sums file listing the image's file name.
    #[serde(default)]
    pub checksums_url: Option<Spanned<String>>,
    /// A file holding one bare digest.
    #[serde(default)]
    pub checksum_url: Option<Spanned<String>>,
    /// Build date (`image_build_date`). osism requires it; Steward resolves a missing one from
    /// the upstream serial or `Last-Modified` when it plans.
    #[serde(default)]
    pub build_date: Option<Spanned<String>>,
    /// Fixed Glance id.
    #[serde(default)]
    pub id: Option<String>,
    /// `os_hidden`.
    #[serde(default)]
    pub hidden: Option<bool>,
    /// Per-version visibility.
    #[serde(default)]
    pub visibility: Option<Spanned<String>>,
    /// Per-version `os_version`.
    #[serde(default)]
    pub os_version: Option<Spanned<String>>,
    /// Per-version property overrides.
    #[serde(default)]
    pub meta: Option<Spanned<Meta>>,
    /// Accepted for compatibility; unused.
    #[serde(default)]
    pub source: Option<String>,
    /// Accepted for compatibility; unused.
    #[serde(default)]
    pub image_description: Option<String>,
}

/// Glance's `disk_format` values.
pub const DISK_FORMATS: &[&str] = &[
    "aki", "ari", "ami", "raw", "iso", "vhd", "vdi", "qcow2", "vmdk",
];
/// `os_distro` values Glance documents, plus `cirros`, `rocky` and `talos` (as osism accepts).
pub const OS_DISTROS: &[&str] = &[
    "arch",
    "centos",
    "cirros",
    "debian",
    "fedora",
    "freebsd",
    "gentoo",
    "mandrake",
    "mandriva",
    "mes",
    "msdos",
    "netbsd",
    "netware",
    "openbsd",
    "opensolaris",
    "opensuse",
    "rhel",
    "rocky",
    "sled",
    "talos",
    "ubuntu",
    "windows",
];
/// Glance's `hypervisor_type` values.
pub const HYPERVISOR_TYPES: &[&str] = &["hyperv", "ironic", "lxc", "qemu", "uml", "vmware", "xen"];

/// Reads one file or every `*.yml`/`*.yaml` in a folder (sorted), validating everything.
pub fn load(path: &Path) -> (Vec<(PathBuf, ImageDefinition)>, Vec<Problem>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let located = |file: &Path, message: String| Problem {
        file: file.to_owned(),
        line: None,
        field: None,
        severity: Severity::Error,
        message,
    };
    if path.is_dir() {
        match std::fs::read_dir(path) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let p = entry.path();
                    if matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")) {
                        files.push(p);
                    }
                }
            }
            Err(e) => problems.push(located(path, format!("cannot read folder: {e}"))),
        }
        files.sort();
        if files.is_empty() && problems.is_empty() {
            problems.push(located(path, "no *.yml or *.yaml files".to_owned()));
        }
    } else {
        files.push(path.to_owned());
    }
    let mut images = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                problems.push(located(&file, format!("cannot read: {e}")));
                continue;
            }
        };
        let (defs, mut found) = parse_file(&file, &text);
        problems.append(&mut found);
        for def in defs {
            if let Some(first) = seen.get(&def.name.value) {
                problems.push(Problem {
                    file: file.clone(),
                    line: Some(def.name.referenced.line() as u32),
                    field: Some("name".to_owned()),
                    severity: Severity::Error,
                    message: format!(
                        "{:?} is also defined in {}",
                        def.name.value,
                        first.display()
                    ),
                });
            }
            seen.insert(def.name.value.clone(), file.clone());
            images.push((file.clone(), def));
        }
    }
    (images, problems)
}

/// Parses and validates one file's text.
pub fn parse_file(file: &Path, text: &str) -> (Vec<ImageDefinition>, Vec<Problem>) {
    match serde_saphyr::from_str::<DefinitionFile>(text) {
        Ok(parsed) => {
            let mut problems = Vec::new();
            for (i, def) in parsed.images.iter().enumerate() {
                validate(file, i, def, &mut problems);
            }
            (parsed.images, problems)
        }
        Err(error) => {
            let message = error.to_string();
            let first = message.lines().next().unwrap_or(&message).trim();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let first = match first.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
                Some((loc, rest)) if loc.contains(" column ") => rest,
                _ => first,
            };
            (
                Vec::new(),
                vec![Problem {
                    file: file.to_owned(),
                    line: error.location().map(|l| l.line() as u32),
                    field: None,
                    severity: Severity::Error,
                    message: first.to_owned(),
                }],
            )
        }
    }
}

struct Reporter<'a> {
    file: &'a Path,
    prefix: String,
    problems: &'a mut Vec<Problem>,
}

impl Reporter<'_> {
    fn add(&mut self, line: u64, field: &str, severity: Severity, message: String) {
        self.problems.push(Problem {
            file: self.file.to_owned(),
            line: Some(line as u32),
            field: Some(format!("{}{field}", self.prefix)),
            severity,
            message,
        });
    }

    fn one_of(&mut self, value: &Spanned<String>, field: &str, allowed: &[&str]) {
        if !allowed.contains(&value.value.as_str()) {
            let message = format!("{:?} is not one of {}", value.value, allowed.join(", "));
            self.add(value.referenced.line(), field, Severity::Error, message);
        }
    }
}

/// The property map a version would carry in Glance (definition meta, version overrides and
/// the fields Steward derives), with the line each came from.
pub fn properties(def: &ImageDefinition, version: &Version) -> BTreeMap<String, (String, u64)> {
    let mut props: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut put_meta = |meta: &Meta| {
        let text = [
            ("architecture", &meta.architecture),
            ("hypervisor_type", &meta.hypervisor_type),
            ("hw_disk_bus", &meta.hw_disk_bus),
            ("os_distro", &meta.os_distro),
            ("os_purpose", &meta.os_purpose),
            ("replace_frequency", &meta.replace_frequency),
            ("provided_until", &meta.provided_until),
            ("uuid_validity", &meta.uuid_validity),
            ("hw_rng_model", &meta.hw_rng_model),
            ("hw_scsi_model", &meta.hw_scsi_model),
            ("hw_watchdog_action", &meta.hw_watchdog_action),
            ("hw_firmware_type", &meta.hw_firmware_type),
            ("hw_machine_type", &meta.hw_machine_type),
            ("image_description", &meta.image_description),
            ("os_version", &meta.os_version),
            ("patchlevel", &meta.patchlevel),
        ];
        for (key, value) in text {
            if let Some(v) = value {
                props.insert(key.to_owned(), (v.value.clone(), v.referenced.line()));
            }
        }
        if let Some(h) = &meta.hotfix_hours {
            props.insert(
                "hotfix_hours".to_owned(),
                (h.value.to_string(), h.referenced.line()),
            );
        }
        // Glance properties are strings; nova reads `true`/`false`.
        if let Some(m) = &meta.hw_vif_multiqueue_enabled {
            props.insert(
                "hw_vif_multiqueue_enabled".to_owned(),
                (m.value.to_string(), m.referenced.line()),
            );
        }
    };
    put_meta(&def.meta.value);
    if let Some(meta) = &version.meta {
        put_meta(&meta.value);
    }
    let line = version.version.referenced.line();
    if let Some(v) = &version.os_version {
        props.insert(
            "os_version".to_owned(),
            (v.value.clone(), v.referenced.line()),
        );
    } else if !def.multi {
        props.insert(
            "os_version".to_owned(),
            (version.version.value.clone(), line),
        );
    }
    props
        .entry("image_description".to_owned())
        .or_insert_with(|| (def.name.value.clone(), def.name.referenced.line()));
    props.insert(
        "image_source".to_owned(),
        (version.url.value.clone(), version.url.referenced.line()),
    );
    if let Some(date) = &version.build_date {
        props.insert(
            "image_build_date".to_owned(),
            (date.value.clone(), date.referenced.line()),
        );
    }
    props.insert(
        "image_original_user".to_owned(),
        (def.login.value.clone(), def.login.referenced.line()),
    );
    props.insert(
        "min_disk".to_owned(),
        (
            def.min_disk.value.to_string(),
            def.min_disk.referenced.line(),
        ),
    );
    props.insert(
        "min_ram".to_owned(),
        (def.min_ram.value.to_string(), def.min_ram.referenced.line()),
    );
    props
}

/// Checks one parsed definition; appends every problem found.
pub fn validate(file: &Path, index: usize, def: &ImageDefinition, problems: &mut Vec<Problem>) {
    let mut r = Reporter {
        file,
        prefix: format!("images[{index}]."),
        problems,
    };
    let name_line = def.name.referenced.line();
    if def.name.value.trim().is_empty() {
        r.add(
            name_line,
            "name",
            Severity::Error,
            "must not be empty".to_owned(),
        );
    }
    r.one_of(&def.format, "format", DISK_FORMATS);
    r.one_of(&def.status, "status", &["active", "deactivated"]);
    r.one_of(
        &def.visibility,
        "visibility",
        &["public", "private", "community", "shared"],
    );
    if def.login.value.trim().is_empty() {
        r.add(
            def.login.referenced.line(),
            "login",
            Severity::Error,
            "must not be empty (use none)".to_owned(),
        );
    }
    let meta = &def.meta.value;
    if let Some(v) = &meta.os_distro {
        r.one_of(v, "meta.os_distro", OS_DISTROS);
    }
    if let Some(v) = &meta.hypervisor_type {
        r.one_of(v, "meta.hypervisor_type", HYPERVISOR_TYPES);
    }
    for (field, value, allowed) in [
        (
            "meta.hw_scsi_model",
            &meta.hw_scsi_model,
            &["virtio-scsi"][..],
        ),
        (
            "meta.hw_watchdog_action",
            &meta.hw_watchdog_action,
            &["disabled", "reset", "poweroff", "pause", "none"][..],
        ),
        (
            "meta.hw_firmware_type",
            &meta.hw_firmware_type,
            &["uefi", "bios"][..],
        ),
        (
            "meta.hw_machine_type",
            &meta.hw_machine_type,
            &["pc", "q35", "virt"][..],
        ),
    ] {
        if let Some(v) = value {
            r.one_of(v, field, allowed);
        }
    }
    if def.versions.is_empty() {
        r.add(
            name_line,
            "versions",
            Severity::Error,
            "needs at least one version".to_owned(),
        );
    }
    let mut versions = BTreeSet::new();
    for (i, version) in def.versions.iter().enumerate() {
        let v = &version.value;
        let at = format!("versions[{i}].");
        let line = v.version.referenced.line();
        if !versions.insert(v.version.value.clone()) {
            r.add(
                line,
                &format!("{at}version"),
                Severity::Error,
                format!("{:?} is listed twice", v.version.value),
            );
        }
        check_url(&mut r, &v.url, &format!("{at}url"), true);
        if let Some(mirror) = &v.mirror_url {
            check_url(&mut r, mirror, &format!("{at}mirror_url"), true);
        }
        for (field, url) in [
            ("checksums_url", &v.checksums_url),
            ("checksum_url", &v.checksum_url),
        ] {
            if let Some(url) = url {
                check_url(&mut r, url, &format!("{at}{field}"), false);
            }
        }
        let latest = v.version.value == "latest";
        match (&v.checksum, &v.checksums_url, &v.checksum_url) {
            (_, Some(_), Some(u)) => r.add(
                u.referenced.line(),
                &format!("{at}checksum_url"),
                Severity::Error,
                "give checksums_url or checksum_url, not both".to_owned(),
            ),
            (None, None, None) => r.add(
                line,
                &format!("{at}checksum"),
                if latest {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                "no checksum, checksums_url or checksum_url: the import cannot be verified"
                    .to_owned(),
            ),
            _ => {}
        }
        if let Some(checksum) = &v.checksum {
            match ExpectedDigest::parse(&checksum.value) {
                Ok(d) if d.algorithm.is_weak() => r.add(
                    checksum.referenced.line(),
                    &format!("{at}checksum"),
                    Severity::Warning,
                    format!(
                        "{} is too weak to verify an import; use sha256 or sha512",
                        d.algorithm
                    ),
                ),
                Ok(_) => {}
                Err(e) => r.add(
                    checksum.referenced.line(),
                    &format!("{at}checksum"),
                    Severity::Error,
                    e.to_string(),
                ),
            }
        }
        if let Some(vis) = &v.visibility {
            r.one_of(
                vis,
                &format!("{at}visibility"),
                &["public", "private", "community", "shared"],
            );
        }
        // The properties the image would carry, against SCS-0102.
        let props = properties(def, v);
        let plain: BTreeMap<String, String> = props
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect();
        for finding in scs0102::check_properties(&plain, chrono::Utc::now().date_naive()) {
            // A missing build date is resolved upstream when planning, and checked then.
            if finding.property == "image_build_date" && v.build_date.is_none() {
                continue;
            }
            let line = props.get(&finding.property).map_or(line, |(_, l)| *l);
            let field = if props.contains_key(&finding.property) && !is_derived(&finding.property) {
                format!("meta.{}", finding.property)
            } else {
                format!("{at}{}", finding.property)
            };
            r.add(
                line,
                &field,
                finding.severity,
                format!("{} ({})", finding.message, finding.test),
            );
        }
    }
}

/// Properties Steward derives from definition fields rather than from `meta`.
fn is_derived(property: &str) -> bool {
    matches!(
        property,
        "image_source" | "image_build_date" | "image_original_user" | "min_disk" | "min_ram"
    )
}

fn check_url(r: &mut Reporter<'_>, url: &Spanned<String>, field: &str, file_allowed: bool) {
    let ok = url.value.starts_with("https://")
        || url.value.starts_with("http://")
        || url.value.starts_with("ftp://")
        || (file_allowed && url.value.starts_with("file:"));
    if !ok {
        let allowed = if file_allowed {
            "http(s)://, ftp:// or file:"
        } else {
            "http(s):// or ftp://"
        };
        r.add(
            url.referenced.line(),
            field,
            Severity::Error,
            format!("{:?} is not an {allowed} URL", url.value),
        );
    }
}

#[cfg(test)]
mod tests;
