//! The product catalogue: which timelines bill which products, in which unit.
//!
//! A product applies to one resource type. Its quantity over an interval is the interval's
//! length in hours, times an attribute of the resource when one is named (GiB for volumes, vCPUs
//! for a vCPU-hour product), divided by `divisor` (bytes → GiB). Instance products bill only in
//! the listed statuses. The name may contain `{attribute}` placeholders (`instance:{flavor_name}`).

use serde::Deserialize;

use super::timeline::Status;
use crate::facts::ResourceType;

/// One billing product.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Product name; `{attribute}` placeholders are filled from the resource's attributes
    /// (`instance:{flavor_name}` → `instance:SCS-2V-4`).
    pub product: String,
    /// The resource type it bills.
    pub resource: ResourceType,
    /// Unit of the quantity, as printed (`hour`, `GiB-hour`, `vCPU-hour`).
    pub unit: String,
    /// Multiply the hours by this attribute (`size_gb`, `vcpus`, `memory_mb`, `size_bytes`).
    #[serde(default)]
    pub attribute: Option<String>,
    /// Divide by this (1024 for `memory_mb` → GiB, 1073741824 for `size_bytes` → GiB).
    #[serde(default = "one")]
    pub divisor: u64,
    /// Instance statuses that bill; all when absent.
    #[serde(default)]
    pub statuses: Option<Vec<Status>>,
}

fn one() -> u64 {
    1
}

/// The SCS default catalogue. Shelved-offloaded (and deleted) instances bill no compute; their
/// volumes keep billing.
pub fn default_catalogue() -> Vec<Product> {
    let product = |name: &str, resource, unit: &str, attribute: Option<&str>, divisor| Product {
        product: name.to_owned(),
        resource,
        unit: unit.to_owned(),
        attribute: attribute.map(str::to_owned),
        divisor,
        statuses: None,
    };
    let mut instance = product(
        "instance:{flavor_name}",
        ResourceType::Instance,
        "hour",
        None,
        1,
    );
    instance.statuses = Some(vec![Status::Running, Status::Stopped, Status::Suspended]);
    vec![
        instance,
        product(
            "volume:{volume_type}",
            ResourceType::Volume,
            "GiB-hour",
            Some("size_gb"),
            1,
        ),
        product(
            "snapshot",
            ResourceType::Snapshot,
            "GiB-hour",
            Some("size_gb"),
            1,
        ),
        product(
            "backup",
            ResourceType::Backup,
            "GiB-hour",
            Some("size_gb"),
            1,
        ),
        product(
            "image",
            ResourceType::Image,
            "GiB-hour",
            Some("size_bytes"),
            1 << 30,
        ),
        product("floating_ip", ResourceType::FloatingIp, "hour", None, 1),
        product("router", ResourceType::Router, "hour", None, 1),
        product("load_balancer", ResourceType::LoadBalancer, "hour", None, 1),
    ]
}

impl Product {
    /// Whether a segment in `status` bills this product.
    pub fn bills(&self, status: Status) -> bool {
        self.statuses.as_ref().is_none_or(|s| s.contains(&status))
    }

    /// The product name for a resource with these attributes (`unknown` for a missing value).
    pub fn name_for(
        &self,
        attributes: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> String {
        let mut name = String::with_capacity(self.product.len() + 16);
        let mut rest = self.product.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            name.push_str(&rest[..open]);
            let key = &rest[open + 1..open + close];
            match attributes.get(key) {
                Some(serde_json::Value::String(s)) => name.push_str(s),
                Some(serde_json::Value::Number(n)) => name.push_str(&n.to_string()),
                _ => name.push_str("unknown"),
            }
            rest = &rest[open + close + 1..];
        }
        name.push_str(rest);
        name
    }

    /// Problems with this entry, as messages.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.product.is_empty() {
            problems.push("product must not be empty".to_owned());
        }
        if self.divisor == 0 {
            problems.push("divisor must be at least 1".to_owned());
        }
        if self.statuses.is_some() && self.resource != ResourceType::Instance {
            problems.push("statuses apply to instance products only".to_owned());
        }
        problems
    }
}
