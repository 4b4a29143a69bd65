//! A stored notification as the Ceilometer event the HTTP publisher would have posted
//! (`Event.serialize()`; reference §3.4 and §3.6).
//!
//! `message_id` and `event_type` from the envelope; `generated` the envelope timestamp as naive
//! UTC ISO; `traits` `[name, type, value]` (1 text, 2 integer, 3 float, 4 datetime): the
//! default traits every event gets (`service`, `request_id`, `project_id`, `tenant_id`,
//! `user_id`), then those of the last definition of Ceilometer's default
//! `event_definitions.yaml` matching the event type (instances, volumes, snapshots, images,
//! networks, subnets, ports, routers, floating IPs, load balancers); other types get the
//! default traits only, as in Ceilometer (nova's versioned `instance.*` among them). A trait
//! without a value is left out; text is cut to 255 characters. `raw` is `{}`, or with
//! `raw: true` the notification (`ctxt`, `publisher_id`, `event_type`, `payload`, `metadata`),
//! as with Ceilometer's `[event] store_raw`.
//!
//! A stored Ceilometer event (from Ceilometer's own HTTP publisher) is forwarded as it came.

use serde_json::{Map, Value, json};

use crate::store::StoredEvent;
use crate::time::parse_timestamp_value;

/// Trait type codes.
const TEXT: u8 = 1;
const INT: u8 = 2;
const DATETIME: u8 = 4;

/// Where a trait's value comes from.
#[derive(Debug, Clone, Copy)]
enum Field {
    /// The first present of these dotted paths into the notification (`payload.x`,
    /// `_context_y`; `payload.a.'b.c'` is written as one element per key).
    Paths(&'static [&'static [&'static str]]),
    /// A part of `publisher_id` split on `.` (`compute.cmp-01` → 0 `compute`, 1 `cmp-01`).
    Publisher(usize),
}

/// One trait of a definition.
#[derive(Debug, Clone, Copy)]
struct TraitDef {
    name: &'static str,
    kind: u8,
    field: Field,
}

const fn text(name: &'static str, paths: &'static [&'static [&'static str]]) -> TraitDef {
    TraitDef {
        name,
        kind: TEXT,
        field: Field::Paths(paths),
    }
}

const fn int(name: &'static str, paths: &'static [&'static [&'static str]]) -> TraitDef {
    TraitDef {
        name,
        kind: INT,
        field: Field::Paths(paths),
    }
}

const fn datetime(name: &'static str, paths: &'static [&'static [&'static str]]) -> TraitDef {
    TraitDef {
        name,
        kind: DATETIME,
        field: Field::Paths(paths),
    }
}

const DEFAULT_TRAITS: &[TraitDef] = &[
    TraitDef {
        name: "service",
        kind: TEXT,
        field: Field::Paths(&[&["publisher_id"]]),
    },
    text("request_id", &[&["_context_request_id"]]),
    text(
        "project_id",
        &[&["payload", "tenant_id"], &["_context_project_id"]],
    ),
    text("user_id", &[&["payload", "user_id"], &["_context_user_id"]]),
    text(
        "tenant_id",
        &[&["payload", "tenant_id"], &["_context_project_id"]],
    ),
];

const INSTANCE: &[TraitDef] = &[
    text("tenant_id", &[&["payload", "tenant_id"]]),
    text("user_id", &[&["payload", "user_id"]]),
    text("instance_id", &[&["payload", "instance_id"]]),
    text("display_name", &[&["payload", "display_name"]]),
    text("resource_id", &[&["payload", "instance_id"]]),
    text("cell_name", &[&["payload", "cell_name"]]),
    TraitDef {
        name: "host",
        kind: TEXT,
        field: Field::Publisher(1),
    },
    TraitDef {
        name: "service",
        kind: TEXT,
        field: Field::Publisher(0),
    },
    int("memory_mb", &[&["payload", "memory_mb"]]),
    int("disk_gb", &[&["payload", "disk_gb"]]),
    int("root_gb", &[&["payload", "root_gb"]]),
    int("ephemeral_gb", &[&["payload", "ephemeral_gb"]]),
    int("vcpus", &[&["payload", "vcpus"]]),
    text("instance_type_id", &[&["payload", "instance_type_id"]]),
    text("instance_flavor_id", &[&["payload", "instance_flavor_id"]]),
    text("instance_type", &[&["payload", "instance_type"]]),
    text("state", &[&["payload", "state"]]),
    text(
        "os_architecture",
        &[&["payload", "image_meta", "org.openstack__1__architecture"]],
    ),
    text(
        "os_version",
        &[&["payload", "image_meta", "org.openstack__1__os_version"]],
    ),
    text(
        "os_distro",
        &[&["payload", "image_meta", "org.openstack__1__os_distro"]],
    ),
    datetime("launched_at", &[&["payload", "launched_at"]]),
    datetime("deleted_at", &[&["payload", "deleted_at"]]),
];

const CINDER: &[TraitDef] = &[
    text("user_id", &[&["payload", "user_id"]]),
    text("project_id", &[&["payload", "tenant_id"]]),
    text("availability_zone", &[&["payload", "availability_zone"]]),
    text("display_name", &[&["payload", "display_name"]]),
    text("replication_status", &[&["payload", "replication_status"]]),
    text("status", &[&["payload", "status"]]),
    datetime("created_at", &[&["payload", "created_at"]]),
];

const VOLUME: &[TraitDef] = &[
    text("resource_id", &[&["payload", "volume_id"]]),
    text("host", &[&["payload", "host"]]),
    int("size", &[&["payload", "size"]]),
    text("type", &[&["payload", "volume_type"]]),
    text(
        "instance_id",
        &[&["payload", "volume_attachment", "0", "server_id"]],
    ),
];

const SNAPSHOT: &[TraitDef] = &[
    text("resource_id", &[&["payload", "snapshot_id"]]),
    text("volume_id", &[&["payload", "volume_id"]]),
];

const IMAGE: &[TraitDef] = &[
    text("project_id", &[&["payload", "owner"]]),
    text("user_id", &[&["payload", "owner"]]),
    text("resource_id", &[&["payload", "id"]]),
    text("name", &[&["payload", "name"]]),
    text("status", &[&["payload", "status"]]),
    datetime("created_at", &[&["payload", "created_at"]]),
    datetime("deleted_at", &[&["payload", "deleted_at"]]),
    int("size", &[&["payload", "size"]]),
];

const NEUTRON: &[TraitDef] = &[
    text("user_id", &[&["_context_user_id"]]),
    text("project_id", &[&["_context_tenant_id"]]),
];

const LOAD_BALANCER: &[TraitDef] = &[
    text("resource_id", &[&["payload", "loadbalancer_id"]]),
    text("project_id", &[&["payload", "project_id"]]),
    text("name", &[&["payload", "name"]]),
    text("description", &[&["payload", "description"]]),
    text("admin_state_up", &[&["payload", "admin_state_up"]]),
    text("availability_zone", &[&["payload", "availability_zone"]]),
    text("vip_address", &[&["payload", "vip_address"]]),
    text("vip_network_id", &[&["payload", "vip_network_id"]]),
    text("vip_port_id", &[&["payload", "vip_port_id"]]),
    text("vip_qos_policy_id", &[&["payload", "vip_qos_policy_id"]]),
    text("vip_subnet_id", &[&["payload", "vip_subnet_id"]]),
];

/// The traits of the last default definition matching `event_type` (beyond the default
/// traits), as groups applied in order.
fn definition(event_type: &str) -> Vec<&'static [TraitDef]> {
    let glob = |pattern: &str| match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => event_type == pattern,
    };
    const AZ: &[TraitDef] = &[text(
        "availability_zone",
        &[&["payload", "availability_zone"]],
    )];
    const OLD_STATE: &[TraitDef] = &[text("old_state", &[&["payload", "old_state"]])];
    const AUDIT: &[TraitDef] = &[
        datetime(
            "audit_period_beginning",
            &[&["payload", "audit_period_beginning"]],
        ),
        datetime(
            "audit_period_ending",
            &[&["payload", "audit_period_ending"]],
        ),
    ];
    macro_rules! neutron {
        ($res:literal, named) => {{
            const NAMED: &[TraitDef] = &[
                text("name", &[&["payload", $res, "name"]]),
                text(
                    "resource_id",
                    &[&["payload", $res, "id"], &["payload", "id"]],
                ),
            ];
            vec![NEUTRON, NAMED]
        }};
        ($res:literal) => {{
            const UNNAMED: &[TraitDef] = &[text(
                "resource_id",
                &[&["payload", $res, "id"], &["payload", "id"]],
            )];
            vec![NEUTRON, UNNAMED]
        }};
    }
    if glob("compute.instance.create.end") {
        vec![INSTANCE, AZ]
    } else if glob("compute.instance.update") {
        vec![INSTANCE, OLD_STATE]
    } else if glob("compute.instance.exists") {
        vec![INSTANCE, AUDIT]
    } else if glob("compute.instance.*") {
        vec![INSTANCE]
    } else if ["volume.exists", "volume.retype"].iter().any(|p| glob(p))
        || [
            "volume.create.*",
            "volume.delete.*",
            "volume.resize.*",
            "volume.attach.*",
            "volume.detach.*",
            "volume.update.*",
            "volume.transfer.*",
        ]
        .iter()
        .any(|p| glob(p))
    {
        vec![CINDER, VOLUME]
    } else if glob("snapshot.exists")
        || [
            "snapshot.create.*",
            "snapshot.delete.*",
            "snapshot.update.*",
        ]
        .iter()
        .any(|p| glob(p))
    {
        vec![CINDER, SNAPSHOT]
    } else if [
        "image.create",
        "image.update",
        "image.upload",
        "image.delete",
    ]
    .iter()
    .any(|p| glob(p))
    {
        vec![IMAGE]
    } else if glob("network.*") {
        neutron!("network", named)
    } else if glob("subnet.*") {
        neutron!("subnet", named)
    } else if glob("port.*") {
        neutron!("port", named)
    } else if glob("router.*") {
        neutron!("router", named)
    } else if glob("floatingip.*") {
        neutron!("floatingip")
    } else if glob("octavia.loadbalancer.*") {
        vec![LOAD_BALANCER]
    } else {
        Vec::new()
    }
}

/// The value at `path` in `notification` (an array index as a number key).
fn at_path<'a>(notification: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = notification.get(*first)?;
    for key in rest {
        value = match value {
            Value::Object(map) => map.get(*key)?,
            Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// `value` converted to trait type `kind`, `None` when it has none (null, empty, unparsable).
fn convert(value: &Value, kind: u8) -> Option<Value> {
    match (kind, value) {
        (_, Value::Null) => None,
        (INT, Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.trunc() as i64))
            .map(Value::from),
        (INT, Value::String(s)) => s.trim().parse::<i64>().ok().map(Value::from),
        (INT, _) => None,
        (DATETIME, v) => match parse_timestamp_value(v) {
            Ok(Some(instant)) => Some(Value::from(naive_iso(instant))),
            _ => None,
        },
        (_, Value::String(s)) => Some(Value::from(s.chars().take(255).collect::<String>())),
        (_, Value::Bool(b)) => Some(Value::from(if *b { "True" } else { "False" })),
        (_, other) => Some(Value::from(
            other.to_string().chars().take(255).collect::<String>(),
        )),
    }
}

/// Naive UTC ISO 8601 as Python's `isoformat()` writes it: microseconds only when not zero.
fn naive_iso(instant: crate::time::Instant) -> String {
    let dt = instant.to_datetime();
    if instant.micros().rem_euclid(1_000_000) == 0 {
        dt.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        dt.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    }
}

/// The traits of `notification` (the envelope dict, `_context_*` keys included).
fn traits(notification: &Map<String, Value>, event_type: &str) -> Vec<Value> {
    let publisher = notification
        .get("publisher_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut out: Vec<(&str, Value)> = Vec::new();
    let groups = std::iter::once(DEFAULT_TRAITS).chain(definition(event_type));
    for def in groups.flatten() {
        let value = match def.field {
            Field::Paths(paths) => paths
                .iter()
                .filter_map(|p| at_path(notification, p))
                .find(|v| !v.is_null())
                .and_then(|v| convert(v, def.kind)),
            Field::Publisher(part) => publisher
                .split('.')
                .nth(part)
                .filter(|p| !p.is_empty())
                .map(Value::from),
        };
        let Some(value) = value else { continue };
        let entry = json!([def.name, def.kind, value]);
        match out.iter_mut().find(|(name, _)| *name == def.name) {
            Some(existing) => existing.1 = entry,
            None => out.push((def.name, entry)),
        }
    }
    out.into_iter().map(|(_, v)| v).collect()
}

/// `event` as a Ceilometer event; `raw` includes the notification.
pub fn ceilometer_event(event: &StoredEvent, raw: bool) -> Result<Value, String> {
    let body: Value =
        serde_json::from_str(&event.body).map_err(|e| format!("stored body is not JSON: {e}"))?;
    if event.kind == crate::record::RecordKind::CeilometerEvent.as_str() {
        return Ok(body);
    }
    let Value::Object(outer) = &body else {
        return Err("stored notification is not a JSON object".to_owned());
    };
    let inner = crate::ingest::amqp::decode::inner_envelope(outer)?;
    let notification = match &inner {
        Some(Value::Object(map)) => map,
        Some(_) => return Err("oslo.message is not a JSON object".to_owned()),
        None => outer,
    };
    let text_field = |key: &str| notification.get(key).and_then(Value::as_str);
    let event_type = text_field("event_type").unwrap_or_default();
    let generated = event
        .emitted_at
        .or_else(|| {
            notification
                .get("timestamp")
                .and_then(|t| parse_timestamp_value(t).ok().flatten())
        })
        .unwrap_or(event.received_at);
    let raw = if raw {
        let ctxt: Map<String, Value> = notification
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("_context_")
                    .map(|k| (k.to_owned(), v.clone()))
            })
            .collect();
        json!({
            "ctxt": ctxt,
            "publisher_id": notification.get("publisher_id"),
            "event_type": event_type,
            "payload": notification.get("payload"),
            "metadata": {
                "message_id": notification.get("message_id"),
                "timestamp": notification.get("timestamp"),
            },
        })
    } else {
        json!({})
    };
    Ok(json!({
        "message_id": text_field("message_id").or(event.message_id.as_deref()),
        "event_type": event_type,
        "generated": naive_iso(generated),
        "traits": traits(notification, event_type),
        "raw": raw,
    }))
}
