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

/// The attributes facts carry for each resource type (what placeholders and `attribute` may
/// name): the normalisers' fields, the payload times that date a resource, and what Ceilometer
/// samples add.
pub fn known_attributes(resource: ResourceType) -> &'static [&'static str] {
    match resource {
        ResourceType::Instance => &[
            "flavor_name",
            "flavor_id",
            "vcpus",
            "memory_mb",
            "root_gb",
            "ephemeral_gb",
            "availability_zone",
            "state",
            "power_state",
            "launched_at",
            "created_at",
            "meter",
            "unit",
            "volume",
        ],
        ResourceType::Volume | ResourceType::Backup => &[
            "size_gb",
            "volume_type",
            "volume_id",
            "availability_zone",
            "status",
            "launched_at",
            "created_at",
            "meter",
            "unit",
            "volume",
        ],
        ResourceType::Snapshot => &[
            "size_gb",
            "volume_id",
            "status",
            "created_at",
            "meter",
            "unit",
            "volume",
        ],
        ResourceType::Image => &[
            "size_bytes",
            "virtual_size_bytes",
            "disk_format",
            "name",
            "status",
            "visibility",
            "created_at",
            "meter",
            "unit",
            "volume",
        ],
        ResourceType::FloatingIp => &[
            "floating_ip_address",
            "floating_network_id",
            "router_id",
            "port_id",
            "status",
            "created_at",
            "caller_project_id",
            "meter",
            "unit",
            "volume",
        ],
        ResourceType::Router => &[
            "name",
            "status",
            "external_network_id",
            "created_at",
            "caller_project_id",
            "meter",
            "unit",
            "volume",
        ],
        ResourceType::LoadBalancer => &[
            "flavor",
            "flavor_id",
            "name",
            "provider",
            "vip_address",
            "availability_zone",
            "created_at",
            "meter",
            "unit",
            "volume",
        ],
    }
}

/// The `{key}`s of a product name, or why the name is malformed.
fn placeholders(name: &str) -> Result<Vec<&str>, String> {
    let mut keys = Vec::new();
    let mut rest = name;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(format!("product {name:?} has a '}}' without its '{{'"));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("product {name:?} has a '{{' without its '}}'"));
        };
        let key = &rest[open + 1..open + close];
        if key.is_empty() || key.contains('{') {
            return Err(format!(
                "product {name:?} has an empty or nested placeholder"
            ));
        }
        keys.push(key);
        rest = &rest[open + close + 1..];
    }
    Ok(keys)
}

/// Problems of a whole catalogue: each entry's, an empty list, and product names given twice
/// (their quantities would be added up across units), as `(index, message)`.
pub fn catalogue_problems(products: &[Product]) -> Vec<(Option<usize>, String)> {
    let mut problems = Vec::new();
    if products.is_empty() {
        problems.push((
            None,
            "lists no product: leave meter.products out for the SCS default catalogue".to_owned(),
        ));
    }
    for (i, product) in products.iter().enumerate() {
        for message in product.problems() {
            problems.push((Some(i), message));
        }
        if let Some(first) = products[..i]
            .iter()
            .position(|p| p.product == product.product)
        {
            problems.push((
                Some(i),
                format!(
                    "product {:?} is already defined as products[{first}]: each product name \
                     once, so that no quantities of different units are added up",
                    product.product
                ),
            ));
        }
    }
    problems
}

/// The SCS default catalogue. An instance bills its flavor while it holds its host's
/// resources: running, paused, stopped, suspended, shelved (not yet offloaded) and rescued;
/// shelved-offloaded, soft-deleted and deleted instances bill no compute. Their volumes keep
/// billing. See `docs/billing-semantics.md`.
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
    instance.statuses = Some(vec![
        Status::Running,
        Status::Paused,
        Status::Stopped,
        Status::Suspended,
        Status::Shelved,
        Status::Rescued,
    ]);
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

    /// Whether the product's quantity depends on nothing but the resource's existence: no
    /// attribute, no placeholder, no status restriction (it can bill time in which the
    /// resource is known to exist but not what it was like).
    pub fn needs_only_existence(&self) -> bool {
        self.attribute.is_none()
            && self.statuses.is_none()
            && placeholders(&self.product).is_ok_and(|keys| keys.is_empty())
    }

    /// The first placeholder of the product name that `attributes` cannot fill (a missing or
    /// non-scalar value): time with such attributes is unknown, not billed.
    pub fn missing_placeholder(
        &self,
        attributes: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Option<String> {
        placeholders(&self.product)
            .ok()?
            .into_iter()
            .find(|key| {
                !matches!(
                    attributes.get(*key),
                    Some(serde_json::Value::String(_) | serde_json::Value::Number(_))
                )
            })
            .map(str::to_owned)
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
        if self.product.trim().is_empty() {
            problems.push("product must not be empty".to_owned());
        }
        if self.unit.trim().is_empty() {
            problems.push("unit must not be empty".to_owned());
        }
        let known = known_attributes(self.resource);
        let unknown = |name: &str| {
            format!(
                "{name} is not an attribute of {} resources; they have: {}",
                self.resource.as_str(),
                known.join(", ")
            )
        };
        match placeholders(&self.product) {
            Ok(keys) => {
                for key in keys {
                    if !known.contains(&key) {
                        problems.push(format!("placeholder {{{key}}}: {}", unknown(key)));
                    }
                }
            }
            Err(message) => problems.push(message),
        }
        if let Some(attribute) = &self.attribute
            && !known.contains(&attribute.as_str())
        {
            problems.push(format!("attribute {}", unknown(attribute)));
        }
        if self.divisor == 0 {
            problems.push("divisor must be at least 1".to_owned());
        }
        if self.statuses.as_ref().is_some_and(Vec::is_empty) {
            problems.push("statuses lists no status: nothing would ever bill".to_owned());
        }
        if self.statuses.is_some() && self.resource != ResourceType::Instance {
            problems.push("statuses apply to instance products only".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(name: &str, resource: ResourceType, unit: &str) -> Product {
        Product {
            product: name.to_owned(),
            resource,
            unit: unit.to_owned(),
            attribute: None,
            divisor: 1,
            statuses: None,
        }
    }

    #[test]
    fn the_default_catalogue_has_no_problems() {
        assert_eq!(catalogue_problems(&default_catalogue()), vec![]);
    }

    #[test]
    fn mistakes_an_operator_makes_are_each_refused() {
        let mut vcpu = product("instance.vcpu", ResourceType::Instance, "vCPU-hour");
        vcpu.attribute = Some("vcpu".to_owned());
        let products = vec![
            product("x", ResourceType::Instance, "hour"),
            product("x", ResourceType::Volume, "TiB-hour"),
            product("instance:{flavour}", ResourceType::Instance, "hour"),
            product("volume:{volume_type", ResourceType::Volume, "GiB-hour"),
            vcpu,
        ];
        let problems = catalogue_problems(&products);
        let text: Vec<String> = problems
            .iter()
            .map(|(i, m)| format!("{i:?}: {m}"))
            .collect();
        assert_eq!(problems.len(), 4, "{text:#?}");
        assert!(text[0].starts_with("Some(1): product \"x\" is already defined as products[0]"));
        assert!(text[1].contains("placeholder {flavour}: flavour is not an attribute of instance"));
        assert!(text[1].contains("flavor_name"), "the known ones are listed");
        assert!(text[2].contains("without its '}'"));
        assert!(text[3].contains("attribute vcpu is not an attribute of instance"));
        assert_eq!(catalogue_problems(&[]).len(), 1, "an empty catalogue");
    }
}
