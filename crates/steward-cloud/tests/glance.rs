//! Against a real Keystone and Glance (`scripts/openstack start`, which `scripts/test` runs):
//! authenticate from clouds.yaml, create an image with properties and tags, read it back from
//! the listing, change it with one patch, delete it. `STEWARD_TEST_SKIP_OPENSTACK=1` leaves
//! this group out on purpose; otherwise a missing cloud fails loudly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use steward_cloud::{Cloud, ImageChange, NewImage};

async fn cloud() -> Option<Cloud> {
    if std::env::var("STEWARD_TEST_SKIP_OPENSTACK").is_ok_and(|v| v == "1") {
        return None;
    }
    let name = std::env::var("OS_CLOUD").unwrap_or_else(|_| "steward-test".to_owned());
    Some(Cloud::connect(&name, None).await.unwrap_or_else(|e| {
        panic!(
            "a real Keystone and Glance are needed (cloud {name:?}): {e:#?}. Run `eval $(scripts/openstack \
             start)` (scripts/test does), or set STEWARD_TEST_SKIP_OPENSTACK=1 to leave this group out."
        )
    }))
}

#[tokio::test]
async fn create_list_patch_delete_against_real_glance() {
    let Some(cloud) = cloud().await else { return };
    let unique = format!("steward-test-{}", std::process::id());
    let tags: BTreeSet<String> = ["managed_by_steward".to_owned(), "os:cirros".to_owned()].into();
    let properties: BTreeMap<String, String> = [
        ("steward_definition".to_owned(), unique.clone()),
        ("os_distro".to_owned(), "cirros".to_owned()),
        ("hw_rng_model".to_owned(), "virtio".to_owned()),
    ]
    .into();
    let id = cloud
        .create_image(&NewImage {
            id: None,
            name: &unique,
            disk_format: "qcow2",
            min_disk: 1,
            min_ram: 64,
            tags: &tags,
            properties: &properties,
        })
        .await
        .unwrap();

    let image = cloud
        .images()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.id == id)
        .expect("listed");
    assert_eq!(image.name, unique);
    assert_eq!(image.status, "queued");
    assert_eq!(image.visibility, "private");
    assert_eq!((image.min_disk, image.min_ram), (1, 64));
    assert_eq!(image.tags, tags);
    assert_eq!(image.properties["steward_definition"], unique);
    assert_eq!(image.properties["os_distro"], "cirros");

    // All drift in one patch: rename, hide, a property changed, one removed, one added.
    let renamed = format!("{unique} 20261120");
    cloud
        .update_image(
            &id,
            &[
                ImageChange {
                    field: "name".into(),
                    value: Some(json!(renamed)),
                },
                ImageChange {
                    field: "os_hidden".into(),
                    value: Some(json!(true)),
                },
                ImageChange {
                    field: "min_ram".into(),
                    value: Some(json!(128)),
                },
                ImageChange {
                    field: "os_distro".into(),
                    value: Some(json!("ubuntu")),
                },
                ImageChange {
                    field: "hw_rng_model".into(),
                    value: None,
                },
                ImageChange {
                    field: "os_purpose".into(),
                    value: Some(json!("oldgeneric")),
                },
            ],
        )
        .await
        .unwrap();
    let image = cloud
        .images()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.id == id)
        .expect("hidden images are listed too");
    assert_eq!(image.name, renamed);
    assert!(image.hidden);
    assert_eq!(image.min_ram, 128);
    assert_eq!(image.properties["os_distro"], "ubuntu");
    assert_eq!(image.properties["os_purpose"], "oldgeneric");
    assert!(!image.properties.contains_key("hw_rng_model"));

    cloud.delete_image(&id).await.unwrap();
    assert!(cloud.images().await.unwrap().iter().all(|i| i.id != id));
    assert_eq!(
        cloud.image(&id).await.unwrap(),
        None,
        "a deleted image reads as absent, not as an error"
    );
}
