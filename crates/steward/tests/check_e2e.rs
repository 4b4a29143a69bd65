//! `steward check images` against a real Glance (scripts/openstack): a conforming image passes,
//! a broken one fails its rules (and warns where the standard recommends), a rotated set
//! (current generation plus a hidden, renamed, older one) does not warn; JSON and JUnit say
//! the same; the exit status is 1 for findings and 2 when the cloud cannot be reached.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};

use serde_json::Value;
use steward_cloud::{Cloud, ImageChange, NewImage};

async fn cloud() -> Option<(String, Cloud)> {
    if std::env::var("STEWARD_TEST_SKIP_OPENSTACK").is_ok_and(|v| v == "1") {
        return None;
    }
    let os_cloud = std::env::var("OS_CLOUD").unwrap_or_else(|_| "steward-test".to_owned());
    let cloud = Cloud::connect(&os_cloud, None).await.unwrap_or_else(|e| {
        panic!("a real Keystone and Glance are needed (scripts/openstack start): {e}")
    });
    Some((os_cloud, cloud))
}

fn properties(distro: &str, version: &str, built: &str, purpose: &str) -> BTreeMap<String, String> {
    [
        ("architecture", "x86_64"),
        ("os_distro", distro),
        ("os_version", version),
        ("os_purpose", purpose),
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
        ("provided_until", "2099-12-31"),
        ("uuid_validity", "last-3"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Creates a public image (hidden when asked) with `props`; returns its id.
async fn image(
    cloud: &Cloud,
    name: &str,
    props: &BTreeMap<String, String>,
    hidden: bool,
) -> String {
    let id = cloud
        .create_image(&NewImage {
            id: None,
            name,
            disk_format: "qcow2",
            min_disk: 8,
            min_ram: 512,
            tags: &BTreeSet::new(),
            properties: props,
        })
        .await
        .unwrap();
    let mut changes = vec![ImageChange {
        field: "visibility".to_owned(),
        value: Some(Value::from("public")),
    }];
    if hidden {
        changes.push(ImageChange {
            field: "os_hidden".to_owned(),
            value: Some(Value::from(true)),
        });
    }
    cloud.update_image(&id, &changes).await.unwrap();
    id
}

fn check(os_cloud: &str, format: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["check", "images", "--os-cloud", os_cloud, "-o", format])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glance_images_are_checked_against_scs_0102() {
    let Some((os_cloud, cloud)) = cloud().await else {
        return;
    };
    let run = format!("chk{}", std::process::id());
    // Distinct os_version per run, so that images of other runs or tests share no bucket.
    let version = format!("24.04-{run}");
    let today = chrono::Utc::now().date_naive();
    let recent = (today - chrono::Duration::days(3)).to_string();
    let old = (today - chrono::Duration::days(120)).to_string();
    let good = image(
        &cloud,
        &format!("{run} Ubuntu 24.04"),
        &properties("ubuntu", &version, &recent, "generic"),
        false,
    )
    .await;
    let mut broken = properties("ubuntu", &format!("{version}-b"), &recent, "generic");
    broken.remove("os_distro");
    broken.insert("hw_rng_model".to_owned(), "none".to_owned());
    let bad = image(&cloud, &format!("{run} Broken"), &broken, false).await;
    let rotated = image(
        &cloud,
        &format!("{run} Ubuntu 24.04 (20260801)"),
        &properties("ubuntu", &version, &old, "oldgeneric"),
        true,
    )
    .await;
    let mine = [good.clone(), bad.clone(), rotated.clone()];

    let json = check(&os_cloud, "json");
    assert_eq!(
        json.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let said: Value = serde_json::from_slice(&json.stdout).unwrap();
    let results = said["results"].as_array().unwrap();
    let of = |id: &str| -> Vec<(String, String)> {
        results
            .iter()
            .filter(|r| r["evidence"]["image_id"] == id)
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_owned(),
                    r["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(of(&good), vec![], "the conforming image has no findings");
    assert_eq!(of(&rotated), vec![], "the rotated generation does not warn");
    let mut findings = of(&bad);
    findings.sort();
    assert_eq!(
        findings,
        [
            ("scs-0102-prop-hw_rng_model".to_owned(), "WARN".to_owned()),
            ("scs-0102-prop-os_distro".to_owned(), "FAIL".to_owned()),
        ]
    );
    // Every rule has a verdict; the summary counts the failure.
    for rule in steward_checks::images::RULES {
        assert!(results.iter().any(|r| r["id"] == *rule), "{rule}");
    }
    assert!(said["summary"]["fail"].as_u64().unwrap() >= 1);

    // JUnit: the same findings, as failures.
    let junit = check(&os_cloud, "junit");
    assert_eq!(junit.status.code(), Some(1));
    let xml = String::from_utf8(junit.stdout).unwrap();
    assert!(xml.starts_with("<?xml"));
    assert!(
        xml.contains(&format!("scs-0102-prop-os_distro image {bad}")),
        "{xml}"
    );
    assert!(xml.contains("type=\"WARN\""));
    if let Ok(xsd) = std::env::var("STEWARD_TEST_JUNIT_XSD") {
        let file = std::env::temp_dir().join(format!("{run}.xml"));
        std::fs::write(&file, &xml).unwrap();
        let valid = Command::new("xmllint")
            .args(["--noout", "--schema", &xsd])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            valid.status.success(),
            "{}",
            String::from_utf8_lossy(&valid.stderr)
        );
        let _ = std::fs::remove_file(&file);
    }
    // The table ends with the summary line.
    let table = check(&os_cloud, "table");
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.lines().last().unwrap().contains("FAIL"), "{text}");

    // SCS-0104 with an annex naming this run's images: the offered one passes with its
    // source, the missing one fails, the hidden rotated generation does not count.
    let annex = std::env::temp_dir().join(format!("{run}-annex.yaml"));
    std::fs::write(
        &annex,
        format!(
            "name: test\nimages:\n- name: {run} Ubuntu 24.04\n  status: mandatory\n  \
             source: https://cloud-images.ubuntu.com/\n- name: {run} Missing\n  \
             status: mandatory\n  source: https://example.org/\n"
        ),
    )
    .unwrap();
    let standard = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args([
            "check",
            "standard-images",
            "--os-cloud",
            &os_cloud,
            "-o",
            "json",
            "--spec",
        ])
        .arg(&annex)
        .output()
        .unwrap();
    assert_eq!(
        standard.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&standard.stderr)
    );
    let said: Value = serde_json::from_slice(&standard.stdout).unwrap();
    let verdicts: Vec<(String, String)> = said["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let slug = |s: &str| format!("{run}-{s}");
    assert!(
        verdicts.contains(&(
            format!("scs-0104-image-{}", slug("ubuntu-2404")),
            "PASS".to_owned()
        )),
        "{verdicts:?}"
    );
    assert!(
        verdicts.contains(&(
            format!("scs-0104-source-{}", slug("ubuntu-2404")),
            "PASS".to_owned()
        )),
        "{verdicts:?}"
    );
    assert!(
        verdicts.contains(&(
            format!("scs-0104-image-{}", slug("missing")),
            "FAIL".to_owned()
        )),
        "{verdicts:?}"
    );
    let _ = std::fs::remove_file(&annex);

    // A cloud that cannot be reached: ABORT, exit 2.
    let unreachable = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args([
            "check",
            "images",
            "--os-cloud",
            "no-such-cloud",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(2));
    let said: Value = serde_json::from_slice(&unreachable.stdout).unwrap();
    assert_eq!(said["results"][0]["status"], "ABORT");
    assert!(
        said["results"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-cloud")
    );

    for id in mine {
        cloud.delete_image(&id).await.unwrap();
    }
}
