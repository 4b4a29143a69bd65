//! Plan tests: a simulated Glance that applies actions as `apply` will, so every scenario can
//! also check that planning again after applying changes nothing.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::NaiveDate;

use super::{
    Action, DEFINITION_PROPERTY, Desired, GlanceImage, ResolvedVersion, VERSION_PROPERTY, plan,
    render,
};
use crate::definition::{ImageDefinition, parse_file};

fn definition(multi: bool, validity: &str, keep: bool, versions: &[&str]) -> ImageDefinition {
    let versions: String = versions
        .iter()
        .map(|v| format!("      - version: '{v}'\n        url: https://up.example/{v}/img.qcow2\n        checksums_url: https://up.example/{v}/SHA256SUMS\n"))
        .collect();
    let yaml = format!(
        "images:\n  - name: Ubuntu 24.04\n    enable: true\n    format: qcow2\n    login: ubuntu\n    min_disk: 8\n    \
         min_ram: 512\n    status: active\n    visibility: public\n    multi: {multi}\n    keep: {keep}\n    tags: [extra]\n    meta:\n      \
         architecture: x86_64\n      hypervisor_type: qemu\n      hw_disk_bus: scsi\n      hw_rng_model: virtio\n      \
         os_distro: ubuntu\n      os_version: '24.04'\n      os_purpose: generic\n      replace_frequency: monthly\n      \
         uuid_validity: {validity}\n      provided_until: none\n    versions:\n{versions}"
    );
    let (mut defs, problems) = parse_file(Path::new("t.yml"), &yaml);
    assert!(
        problems
            .iter()
            .all(|p| p.severity != crate::problem::Severity::Error),
        "{problems:#?}"
    );
    defs.remove(0)
}

fn resolved(def: &ImageDefinition) -> Vec<ResolvedVersion> {
    def.versions
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let version = v.value.version.value.clone();
            // Built on the day named by the version's last two digits (20261010: October 10).
            let day: u32 = (version.parse::<u32>().unwrap_or(1) % 100).clamp(1, 28);
            ResolvedVersion {
                version: version.clone(),
                index,
                build_date: NaiveDate::from_ymd_opt(2026, 10, day).unwrap(),
                digest: Some(format!("sha256:{version:0>64}")),
            }
        })
        .collect()
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()
}

/// Applies actions the way `apply` will.
fn simulate(cloud: &mut Vec<GlanceImage>, actions: &[Action]) {
    for action in actions {
        match action {
            Action::Create {
                name,
                visibility,
                properties,
                tags,
                min_disk,
                min_ram,
                verified,
                ..
            } => {
                // apply sets the verification marker once the content is verified.
                let mut properties = properties.clone();
                if let Some(v) = verified {
                    properties.insert(super::VERIFIED_PROPERTY.to_owned(), v.clone());
                }
                let created_at = Some(format!("2026-11-25T00:{:02}:00Z", cloud.len()));
                cloud.push(GlanceImage {
                    created_at,
                    id: format!("id-{}", cloud.len() + 100),
                    name: name.clone(),
                    status: "active".to_owned(),
                    visibility: visibility.clone(),
                    hidden: false,
                    min_disk: *min_disk,
                    min_ram: *min_ram,
                    tags: tags.clone(),
                    properties,
                    ..GlanceImage::default()
                });
            }
            Action::Update { id, changes, .. } => {
                let image = cloud.iter_mut().find(|i| &i.id == id).unwrap();
                for c in changes {
                    let to = c.to.clone().unwrap_or_default();
                    match c.field.as_str() {
                        "name" => image.name = to,
                        "visibility" => image.visibility = to,
                        "os_hidden" => image.hidden = to == "true",
                        "min_disk" => image.min_disk = to.parse().unwrap(),
                        "min_ram" => image.min_ram = to.parse().unwrap(),
                        "tags" => {
                            image.tags = to
                                .split(',')
                                .filter(|t| !t.is_empty())
                                .map(str::to_owned)
                                .collect()
                        }
                        key => match &c.to {
                            Some(v) => {
                                image.properties.insert(key.to_owned(), v.clone());
                            }
                            None => {
                                image.properties.remove(key);
                            }
                        },
                    }
                }
            }
            Action::Deactivate { id, .. } => {
                cloud.iter_mut().find(|i| &i.id == id).unwrap().status = "deactivated".to_owned()
            }
            Action::Delete { id, .. } => cloud.retain(|i| &i.id != id),
        }
    }
}

fn run(def: &ImageDefinition, cloud: &mut Vec<GlanceImage>) -> Vec<Action> {
    let desired = [Desired {
        definition: def,
        versions: resolved(def),
    }];
    let actions = plan(&desired, cloud, today());
    simulate(cloud, &actions);
    let again = plan(&desired, cloud, today());
    assert_eq!(
        again,
        vec![],
        "planning after applying must change nothing:\n{}",
        render(&again)
    );
    actions
}

fn unmanaged(name: &str) -> GlanceImage {
    GlanceImage {
        id: format!("foreign-{name}"),
        name: name.to_owned(),
        status: "active".to_owned(),
        visibility: "public".to_owned(),
        ..GlanceImage::default()
    }
}

#[test]
fn same_day_rebuilds_get_distinct_names_that_never_change() {
    let def = definition(true, "last-3", false, &["20261010"]);
    let build = |digest: char| {
        [Desired {
            definition: &def,
            versions: vec![ResolvedVersion {
                version: "20261010".to_owned(),
                index: 0,
                build_date: NaiveDate::from_ymd_opt(2026, 10, 10).unwrap(),
                digest: Some(format!("sha256:{}", digest.to_string().repeat(64))),
            }],
        }]
    };
    let mut cloud = Vec::new();
    let mut names_before: Vec<(String, String)> = Vec::new();
    for digest in ['a', 'b', 'c', 'd'] {
        let desired = build(digest);
        let actions = plan(&desired, &cloud, today());
        simulate(&mut cloud, &actions);
        assert_eq!(plan(&desired, &cloud, today()), vec![], "idempotent");
        let mut names: Vec<&str> = cloud.iter().map(|i| i.name.as_str()).collect();
        names.sort();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "duplicate names: {names:?}");
        // An older generation keeps the name it was given.
        for (id, name) in &names_before {
            if let Some(image) = cloud.iter().find(|i| &i.id == id)
                && image.name != "Ubuntu 24.04"
                && name != "Ubuntu 24.04"
            {
                assert_eq!(&image.name, name, "renamed");
            }
        }
        names_before = cloud
            .iter()
            .map(|i| (i.id.clone(), i.name.clone()))
            .collect();
    }
    // last-3: the current build and two older ones; the oldest went, its name is free again.
    let mut names: Vec<&str> = cloud.iter().map(|i| i.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "Ubuntu 24.04",
            "Ubuntu 24.04 20261010",
            "Ubuntu 24.04 20261010-2"
        ]
    );
}

#[test]
fn empty_cloud_creates_the_current_version_with_every_scs_property() {
    let def = definition(true, "last-3", false, &["20261001", "20261020"]);
    let mut cloud = vec![unmanaged("Ubuntu 24.04")];
    let actions = run(&def, &mut cloud);
    assert_eq!(actions.len(), 1, "{}", render(&actions));
    let Action::Create {
        name,
        version,
        properties,
        tags,
        visibility,
        ..
    } = &actions[0]
    else {
        panic!()
    };
    assert_eq!(
        (name.as_str(), version.as_str(), visibility.as_str()),
        ("Ubuntu 24.04", "20261020", "public")
    );
    for key in [
        "architecture",
        "os_distro",
        "os_version",
        "os_purpose",
        "image_build_date",
        "image_source",
        "image_original_user",
        "image_description",
        "replace_frequency",
        "provided_until",
        "uuid_validity",
        "hw_disk_bus",
        "hw_rng_model",
        "hypervisor_type",
        DEFINITION_PROPERTY,
        VERSION_PROPERTY,
        "steward_digest",
    ] {
        assert!(
            properties.contains_key(key),
            "{key} missing: {properties:?}"
        );
    }
    assert_eq!(properties["image_build_date"], "2026-10-20");
    assert!(
        tags.contains("managed_by_steward") && tags.contains("os:ubuntu") && tags.contains("extra")
    );
    // The unmanaged image of the same name is untouched.
    assert!(
        cloud
            .iter()
            .any(|i| i.id == "foreign-Ubuntu 24.04" && i.properties.is_empty())
    );
}

#[test]
fn one_image_per_version_when_not_multi() {
    let def = definition(false, "none", false, &["1", "2"]);
    let mut cloud = Vec::new();
    let actions = run(&def, &mut cloud);
    let names: Vec<&str> = actions
        .iter()
        .map(|a| match a {
            Action::Create { name, .. } => name.as_str(),
            _ => "?",
        })
        .collect();
    assert_eq!(names, ["Ubuntu 24.04 1", "Ubuntu 24.04 2"]);
}

#[test]
fn a_property_changed_by_hand_is_corrected_with_one_update() {
    let def = definition(true, "last-3", false, &["20261001"]);
    let mut cloud = Vec::new();
    run(&def, &mut cloud);
    cloud[0]
        .properties
        .insert("os_distro".to_owned(), "debian".to_owned());
    cloud[0].properties.remove("hw_rng_model");
    cloud[0].min_ram = 256;
    let actions = run(&def, &mut cloud);
    assert_eq!(
        actions.len(),
        1,
        "one PATCH per image:\n{}",
        render(&actions)
    );
    let Action::Update { changes, .. } = &actions[0] else {
        panic!()
    };
    let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["min_ram", "hw_rng_model", "os_distro"]);
}

#[test]
fn a_new_version_rotates_the_old_one_per_last_n() {
    let mut def = definition(true, "last-2", false, &["20261001"]);
    let mut cloud = Vec::new();
    run(&def, &mut cloud);
    def = definition(true, "last-2", false, &["20261001", "20261010"]);
    let actions = run(&def, &mut cloud);
    assert_eq!(actions.len(), 2, "{}", render(&actions));
    assert!(matches!(&actions[0], Action::Create { version, .. } if version == "20261010"));
    let Action::Update {
        changes, reason, ..
    } = &actions[1]
    else {
        panic!("{}", render(&actions))
    };
    assert!(
        reason.contains("last-2 keeps 1 older generation"),
        "{reason}"
    );
    let change = |f: &str| {
        changes
            .iter()
            .find(|c| c.field == f)
            .and_then(|c| c.to.clone())
    };
    assert_eq!(
        change("name").as_deref(),
        Some("Ubuntu 24.04 20261001"),
        "the SCS build-date marker"
    );
    assert_eq!(change("os_hidden").as_deref(), Some("true"));
    assert_eq!(change("os_purpose").as_deref(), Some("oldgeneric"));
    // A third generation: the oldest goes.
    def = definition(true, "last-2", false, &["20261001", "20261010", "20261020"]);
    let actions = run(&def, &mut cloud);
    let deleted: Vec<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, ["Ubuntu 24.04 20261001"], "{}", render(&actions));
    assert_eq!(
        cloud
            .iter()
            .filter(|i| i.properties.contains_key(DEFINITION_PROPERTY))
            .count(),
        2
    );
}

#[test]
fn uuid_validity_none_date_and_keep() {
    // none: the old generation is deleted at once.
    let mut cloud = Vec::new();
    run(&definition(true, "none", false, &["20261001"]), &mut cloud);
    let actions = run(
        &definition(true, "none", false, &["20261001", "20261010"]),
        &mut cloud,
    );
    assert!(
        actions.iter().any(
            |a| matches!(a, Action::Delete { reason, .. } if reason.contains("valid only while"))
        ),
        "{}",
        render(&actions)
    );
    // A date that has passed, with keep: true: deactivated, never deleted.
    let mut cloud = Vec::new();
    run(
        &definition(true, "2026-11-01", true, &["20261001"]),
        &mut cloud,
    );
    let actions = run(
        &definition(true, "2026-11-01", true, &["20261001", "20261010"]),
        &mut cloud,
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Deactivate { .. })),
        "{}",
        render(&actions)
    );
    assert!(!actions.iter().any(|a| matches!(a, Action::Delete { .. })));
    // A date still ahead: kept (renamed, hidden).
    let mut cloud = Vec::new();
    run(
        &definition(true, "2027-01-01", false, &["20261001"]),
        &mut cloud,
    );
    let actions = run(
        &definition(true, "2027-01-01", false, &["20261001", "20261010"]),
        &mut cloud,
    );
    assert!(
        actions.iter().any(
            |a| matches!(a, Action::Update { reason, .. } if reason.contains("until 2027-01-01"))
        ),
        "{}",
        render(&actions)
    );
}

#[test]
fn an_interrupted_import_is_cleaned_up_and_redone() {
    let def = definition(true, "last-3", false, &["20261001"]);
    let mut cloud = Vec::new();
    run(&def, &mut cloud);
    cloud[0].status = "queued".to_owned();
    let actions = run(&def, &mut cloud);
    assert!(
        matches!(&actions[0], Action::Delete { reason, .. } if reason.contains("interrupted")),
        "{}",
        render(&actions)
    );
    assert!(matches!(&actions[1], Action::Create { .. }));
}

#[test]
fn a_changed_upstream_digest_is_a_new_import() {
    let def = definition(true, "last-3", false, &["20261001"]);
    let mut cloud = Vec::new();
    run(&def, &mut cloud);
    let mut versions = resolved(&def);
    versions[0].digest = Some(format!("sha256:{}", "f".repeat(64)));
    let actions = plan(
        &[Desired {
            definition: &def,
            versions,
        }],
        &cloud,
        today(),
    );
    assert!(
        matches!(&actions[0], Action::Create { .. }),
        "{}",
        render(&actions)
    );
}

#[test]
fn rendering_reads_like_an_infrastructure_plan() {
    let def = definition(true, "last-3", false, &["20261001"]);
    let actions = plan(
        &[Desired {
            definition: &def,
            versions: resolved(&def),
        }],
        &[],
        today(),
    );
    let text = render(&actions);
    assert!(
        text.starts_with(
            "+ create      Ubuntu 24.04 (20261001)  # version 20261001 is not in Glance\n"
        ),
        "{text}"
    );
    assert!(text.contains("verify sha256:"), "{text}");
    assert_eq!(render(&[]), "no changes: Glance matches the definitions\n");
}

#[test]
fn an_import_that_was_never_verified_is_redone_not_published() {
    let def = definition(true, "last-3", false, &["20261001"]);
    let mut cloud = Vec::new();
    run(&def, &mut cloud);
    // Steward was killed after Glance finished the import but before verifying it.
    cloud[0].properties.remove(super::VERIFIED_PROPERTY);
    cloud[0].visibility = "private".to_owned();
    let actions = run(&def, &mut cloud);
    assert!(
        matches!(&actions[0], Action::Delete { reason, .. } if reason.contains("never verified")),
        "{}",
        render(&actions)
    );
    assert!(matches!(&actions[1], Action::Create { .. }));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Update { .. })),
        "never made public unverified"
    );
}

#[test]
fn plan_output_snapshots() {
    // Empty cloud, then a new generation with a hand change on the current image.
    let def = definition(true, "last-2", false, &["20261001"]);
    let first = plan(
        &[Desired {
            definition: &def,
            versions: resolved(&def),
        }],
        &[],
        today(),
    );
    insta::assert_snapshot!("plan_create", render(&first));
    let mut cloud = Vec::new();
    run(&def, &mut cloud);
    cloud[0]
        .properties
        .insert("os_distro".to_owned(), "debian".to_owned());
    let def = definition(true, "last-2", false, &["20261001", "20261010"]);
    let rotation = plan(
        &[Desired {
            definition: &def,
            versions: resolved(&def),
        }],
        &cloud,
        today(),
    );
    insta::assert_snapshot!("plan_rotation", render(&rotation));
    insta::assert_json_snapshot!("plan_rotation_json", rotation);
}
