//! `steward check entropy`: SCS-0101 — what the cloud lets a guest do for entropy.
//!
//! Per public flavor, `hw_rng:allowed` (the reference test compares it with `"True"`; nova
//! also takes `true`, so the comparison ignores case), and per public or community image,
//! `hw_rng_model = virtio`: both were RECOMMENDED in scs-0101 v1.0 and are reported as WARN
//! with the flavor or image (v1.1 of 2026-06 dropped both recommendations; the results say so).
//!
//! The in-guest part — `/proc/sys/kernel/random/entropy_avail` reading 256 on kernels from
//! 5.18 on, and `rngtest` (FIPS 140-2) on `/dev/random` — needs a server booted from the
//! canonical image; without it those tests are SKIP with the reason. With nova's fake driver
//! (this project's test cloud) a boot reaches ACTIVE but there is no guest to read.

#[cfg(test)]
mod tests;

use steward_cloud::ImageRecord;
use steward_cloud::inventory::Flavor;

use crate::model::{CheckResult, Status};

const STANDARD: (&str, &str) = ("scs-0101", "v1");

/// Checks the flavors' and images' entropy properties; the in-guest tests are SKIP.
pub fn check(flavors: &[Flavor], images: &[ImageRecord]) -> Vec<CheckResult> {
    let mut results = Vec::new();
    let public: Vec<&Flavor> = flavors.iter().filter(|f| f.is_public).collect();
    let mut flavor_findings = 0;
    for flavor in &public {
        let allowed = flavor.extra_specs.get("hw_rng:allowed");
        if allowed.is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            continue;
        }
        flavor_findings += 1;
        let mut message = match allowed {
            None => "hw_rng:allowed is not set".to_owned(),
            Some(v) => format!("hw_rng:allowed is {v:?}, not True"),
        };
        if allowed.is_none() {
            let rates: Vec<&str> = ["hw_rng:rate_bytes", "hw_rng:rate_period"]
                .into_iter()
                .filter(|k| !flavor.extra_specs.contains_key(*k))
                .collect();
            if !rates.is_empty() {
                message.push_str(&format!(" (nor the optional {})", rates.join(", ")));
            }
        }
        message.push_str(": guests cannot get a virtio-rng device (recommended by scs-0101 v1.0)");
        results.push(
            CheckResult::new("scs-0101-flavor-property", STANDARD, Status::Warn, message)
                .about(format!("flavor {} {:?}", flavor.id, flavor.name))
                .with("flavor_id", flavor.id.as_str())
                .with(
                    "hw_rng:allowed",
                    allowed.map_or(serde_json::Value::Null, |v| {
                        serde_json::Value::from(v.as_str())
                    }),
                ),
        );
    }
    if flavor_findings == 0 {
        results.push(
            CheckResult::new(
                "scs-0101-flavor-property",
                STANDARD,
                Status::Pass,
                format!("{} public flavor(s) allow a virtio-rng", public.len()),
            )
            .with("flavors", public.len()),
        );
    }
    let scope: Vec<&ImageRecord> = images
        .iter()
        .filter(|i| matches!(i.visibility.as_str(), "public" | "community"))
        .collect();
    let mut image_findings = 0;
    for image in &scope {
        let model = image.properties.get("hw_rng_model");
        if model.is_some_and(|m| m == "virtio") {
            continue;
        }
        image_findings += 1;
        results.push(
            CheckResult::new(
                "scs-0101-image-property",
                STANDARD,
                Status::Warn,
                match model {
                    None => {
                        "hw_rng_model is not set (virtio recommended by scs-0101 v1.0)".to_owned()
                    }
                    Some(m) => format!("hw_rng_model is {m:?}, not virtio"),
                },
            )
            .about(format!("image {} {:?}", image.id, image.name))
            .with("image_id", image.id.as_str())
            .with(
                "hw_rng_model",
                model.map_or(serde_json::Value::Null, |v| {
                    serde_json::Value::from(v.as_str())
                }),
            ),
        );
    }
    if image_findings == 0 {
        results.push(
            CheckResult::new(
                "scs-0101-image-property",
                STANDARD,
                Status::Pass,
                format!("{} image(s) ask for a virtio-rng", scope.len()),
            )
            .with("images", scope.len()),
        );
    }
    for (id, what) in [
        (
            "scs-0101-entropy-avail",
            "entropy_avail must read 256 in a guest (kernels from 5.18 on)",
        ),
        (
            "scs-0101-fips-test",
            "rngtest on /dev/random in a guest: at most 3 failures in 1000 blocks",
        ),
    ] {
        results.push(CheckResult::new(
            id,
            STANDARD,
            Status::Skip,
            format!("{what}: needs a server booted from the canonical image, not run"),
        ));
    }
    results
}
