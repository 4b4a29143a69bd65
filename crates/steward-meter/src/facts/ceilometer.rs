//! Facts from Ceilometer's HTTP publisher: events (traits) and samples.
//!
//! Events: the traits of Ceilometer's default event definitions (reference §3.6) are re-shaped
//! into the payload field names of the underlying notification, then the same service rules
//! apply, so an event and the notification it came from give the same fact and semantic key.
//! Where Ceilometer's definitions do not carry what a fact needs (backups, nova versioned,
//! unmatched types: catch-all traits only), the event yields no fact; it is still stored raw.
//! Neutron events take `project_id` from the *caller's* context (reference §2.5 pitfall), so
//! such facts have no owner and keep the caller as `caller_project_id`.
//!
//! Samples: a gauge of a known billable meter becomes a `measured` fact at the sample time.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{
    Fact, FactKind, Notification, Origin, ResourceType, cinder, glance, neutron, nova, octavia,
};
use crate::time::Instant;

/// Facts from one Ceilometer event. `traits` are `(name, value)` pairs.
pub fn event_facts(
    event_type: &str,
    generated: Option<Instant>,
    traits: &[(String, Value)],
) -> Vec<Fact> {
    let mut payload: Map<String, Value> =
        traits.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let alias = |payload: &mut Map<String, Value>, from: &str, to: &str| {
        if !payload.contains_key(to)
            && let Some(v) = payload.get(from).cloned()
        {
            payload.insert(to.to_owned(), v);
        }
    };
    let n = |payload| notification(event_type, payload, generated);
    let origin = Origin::Ceilometer;
    let fact = if let Some(rule) = nova::legacy_rule(event_type) {
        alias(&mut payload, "resource_id", "instance_id");
        nova::legacy_fact(&n(&Value::Object(payload)), rule, origin).ok()
    } else if let Some(rule) = cinder::rule(event_type) {
        let id = if event_type.starts_with("snapshot.") {
            "snapshot_id"
        } else {
            "volume_id"
        };
        // Snapshot traits carry the parent volume as `volume_id`; the resource is `resource_id`.
        if id == "snapshot_id" {
            payload.remove("snapshot_id");
        }
        alias(&mut payload, "resource_id", id);
        alias(&mut payload, "project_id", "tenant_id");
        alias(&mut payload, "type", "volume_type");
        cinder::fact(&n(&Value::Object(payload)), rule, origin).ok()
    } else if let Some(rule) = glance::rule(event_type) {
        alias(&mut payload, "resource_id", "id");
        alias(&mut payload, "project_id", "owner");
        glance::fact(&n(&Value::Object(payload)), rule, origin).ok()
    } else if let Some(rule) = neutron::rule(event_type) {
        let caller = payload.remove("project_id");
        payload.remove("tenant_id");
        alias(&mut payload, "resource_id", "id");
        let wrapper = if event_type.starts_with("router.") {
            "router"
        } else {
            "floatingip"
        };
        let mut wrapped = Map::new();
        wrapped.insert(wrapper.to_owned(), Value::Object(payload));
        neutron::fact(&n(&Value::Object(wrapped)), rule)
            .ok()
            .map(|mut f| {
                f.origin = origin;
                if let Some(caller) = caller {
                    f.attributes.insert("caller_project_id".to_owned(), caller);
                }
                f
            })
    } else if let Some(kind) = octavia::rule(event_type) {
        alias(&mut payload, "resource_id", "loadbalancer_id");
        octavia::fact(&n(&Value::Object(payload)), kind, origin).ok()
    } else {
        None
    };
    fact.into_iter().collect()
}

fn notification<'a>(
    event_type: &'a str,
    payload: &'a Value,
    emitted_at: Option<Instant>,
) -> Notification<'a> {
    Notification {
        event_type,
        priority: None,
        payload,
        emitted_at,
    }
}

/// A Ceilometer sample as posted by the HTTP publisher (reference §3.3), the fields facts need.
#[derive(Debug, Clone)]
pub struct SampleView<'a> {
    /// Meter name (`name`).
    pub meter: &'a str,
    /// `gauge`, `delta` or `cumulative`.
    pub sample_type: Option<&'a str>,
    /// Unit of `volume`.
    pub unit: Option<&'a str>,
    /// The measured value.
    pub volume: &'a Value,
    /// The measured resource.
    pub resource_id: &'a str,
    /// Owner project as Ceilometer saw it.
    pub project_id: Option<&'a str>,
    /// Owner user.
    pub user_id: Option<&'a str>,
    /// Sample time.
    pub timestamp: Instant,
    /// `resource_metadata`, when present.
    pub metadata: Option<&'a Value>,
}

/// The resource type a billable meter measures; `None` for meters Steward does not bill on.
fn meter_resource(meter: &str) -> Option<ResourceType> {
    Some(match meter {
        "vcpus" | "memory" | "disk.root.size" | "disk.ephemeral.size" | "power.state" => {
            ResourceType::Instance
        }
        "volume.size" => ResourceType::Volume,
        "snapshot.size" | "volume.snapshot.size" => ResourceType::Snapshot,
        "backup.size" | "volume.backup.size" => ResourceType::Backup,
        "image.size" => ResourceType::Image,
        "ip.floating" => ResourceType::FloatingIp,
        m if m.starts_with("loadbalancer.") => ResourceType::LoadBalancer,
        _ => return None,
    })
}

/// Facts from one Ceilometer sample: a `measured` fact for billable gauges, else nothing.
pub fn sample_facts(s: &SampleView<'_>) -> Vec<Fact> {
    let Some(resource_type) = meter_resource(s.meter) else {
        return Vec::new();
    };
    if s.sample_type.is_some_and(|t| t != "gauge") {
        return Vec::new();
    }
    let mut attributes = BTreeMap::new();
    attributes.insert("meter".to_owned(), Value::String(s.meter.to_owned()));
    attributes.insert("volume".to_owned(), s.volume.clone());
    if let Some(unit) = s.unit {
        attributes.insert("unit".to_owned(), Value::String(unit.to_owned()));
    }
    if let Some(Value::Object(meta)) = s.metadata {
        for (from, to) in [("flavor_name", "flavor_name"), ("flavor_id", "flavor_id")] {
            if let Some(v @ Value::String(_)) = meta.get(from) {
                attributes.insert(to.to_owned(), v.clone());
            }
        }
    }
    vec![Fact {
        resource_type,
        resource_id: s.resource_id.to_owned(),
        project_id: s.project_id.filter(|p| !p.is_empty()).map(str::to_owned),
        user_id: s.user_id.filter(|u| !u.is_empty()).map(str::to_owned),
        kind: FactKind::Measured,
        effective_at: s.timestamp,
        time_source: super::TimeSource::Payload,
        origin: Origin::Ceilometer,
        event_type: s.meter.to_owned(),
        attributes,
    }]
}
