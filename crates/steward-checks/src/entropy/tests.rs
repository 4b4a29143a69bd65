//! SCS-0101 properties on synthetic flavors and images.

use std::collections::BTreeMap;

use steward_cloud::ImageRecord;
use steward_cloud::inventory::Flavor;

use super::check;
use crate::model::Status;

fn flavor(id: &str, specs: &[(&str, &str)], public: bool) -> Flavor {
    Flavor {
        id: id.to_owned(),
        name: format!("SCS-{id}"),
        vcpus: 2,
        ram: 4096,
        disk: 20,
        is_public: public,
        extra_specs: specs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn image(id: &str, rng: Option<&str>) -> ImageRecord {
    let mut properties = BTreeMap::new();
    if let Some(m) = rng {
        properties.insert("hw_rng_model".to_owned(), m.to_owned());
    }
    ImageRecord {
        id: id.to_owned(),
        name: id.to_owned(),
        visibility: "public".to_owned(),
        properties,
        ..ImageRecord::default()
    }
}

#[test]
fn each_flavor_and_image_without_a_virtio_rng_is_named() {
    let flavors = [
        flavor("ok", &[("hw_rng:allowed", "True")], true),
        flavor("lower", &[("hw_rng:allowed", "true")], true),
        flavor("off", &[("hw_rng:allowed", "False")], true),
        flavor("none", &[], true),
        flavor("private", &[], false),
    ];
    let images = [image("good", Some("virtio")), image("bad", None)];
    let results = check(&flavors, &images);
    let warned: Vec<(&str, String)> = results
        .iter()
        .filter(|r| r.status == Status::Warn)
        .map(|r| (r.id.as_str(), r.subject.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        warned,
        [
            (
                "scs-0101-flavor-property",
                "flavor off \"SCS-off\"".to_owned()
            ),
            (
                "scs-0101-flavor-property",
                "flavor none \"SCS-none\"".to_owned()
            ),
            ("scs-0101-image-property", "image bad \"bad\"".to_owned()),
        ]
    );
    let none = results
        .iter()
        .find(|r| r.subject.as_deref() == Some("flavor none \"SCS-none\""))
        .unwrap();
    assert!(none.message.contains("nor the optional hw_rng:rate_bytes"));
    let skipped: Vec<&str> = results
        .iter()
        .filter(|r| r.status == Status::Skip)
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(skipped, ["scs-0101-entropy-avail", "scs-0101-fips-test"]);
    let all_good = check(&flavors[..2], &images[..1]);
    assert!(
        all_good
            .iter()
            .all(|r| matches!(r.status, Status::Pass | Status::Skip))
    );
}
