//! The real captures from nova, neutron, cinder and octavia (`../shared/fixtures/real/`, taken
//! on loopback from the real services) as decode fixtures of first rank: every one decodes, and
//! every billing event among them gives the fact it stands for, owned by the resource's project.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{FactKind, ResourceType};
use crate::ingest::amqp::decode_delivery;
use crate::record::Decoded;
use crate::scrub::Scrubber;
use crate::time::Instant;

fn real_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/real")
}

/// One file per event type, each with the envelope as the service sent it.
fn captures() -> Vec<(PathBuf, Value)> {
    let dir = real_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let capture = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p, capture)
        })
        .collect()
}

/// Every captured message as `(label, body, exchange, routing key)`: the files' envelopes and
/// all 242 notifications of `notifications.jsonl` (their decoded bodies, oslo 1.0 form).
fn messages() -> Vec<(String, String, String, String)> {
    let mut out: Vec<_> = captures()
        .into_iter()
        .map(|(path, c)| {
            (
                path.display().to_string(),
                c["envelope"].to_string(),
                c["exchange"].as_str().unwrap().to_owned(),
                c["routing_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let jsonl = real_dir().join("notifications.jsonl");
    for (i, line) in std::fs::read_to_string(&jsonl).unwrap().lines().enumerate() {
        let c: Value = serde_json::from_str(line).unwrap();
        out.push((
            format!("{}:{}", jsonl.display(), i + 1),
            c["body"].to_string(),
            c["exchange"].as_str().unwrap().to_owned(),
            c["routing_key"].as_str().unwrap().to_owned(),
        ));
    }
    out
}

/// The fact each billing event type of the captures must give.
fn expected(event_type: &str) -> Option<(ResourceType, FactKind)> {
    use FactKind as K;
    use ResourceType as R;
    Some(match event_type {
        "compute.instance.create.end" | "instance.create.end" => (R::Instance, K::Created),
        "compute.instance.delete.end" | "instance.delete.end" => (R::Instance, K::Deleted),
        "compute.instance.power_off.end" | "instance.power_off.end" => (R::Instance, K::Stopped),
        "compute.instance.power_on.end" | "instance.power_on.end" => (R::Instance, K::Started),
        "compute.instance.finish_resize.end"
        | "compute.instance.resize.confirm.end"
        | "instance.resize_finish.end"
        | "instance.resize_confirm.end" => (R::Instance, K::Resized),
        "compute.instance.shelve_offload.end" | "instance.shelve_offload.end" => {
            (R::Instance, K::ShelvedOffloaded)
        }
        "compute.instance.exists" | "instance.exists" => (R::Instance, K::Exists),
        "volume.create.end" => (R::Volume, K::Created),
        "volume.delete.end" => (R::Volume, K::Deleted),
        "volume.resize.end" => (R::Volume, K::Resized),
        "snapshot.create.end" => (R::Snapshot, K::Created),
        "snapshot.delete.end" => (R::Snapshot, K::Deleted),
        "floatingip.create.end" => (R::FloatingIp, K::Created),
        "floatingip.delete.end" => (R::FloatingIp, K::Deleted),
        "router.create.end" => (R::Router, K::Created),
        "router.delete.end" => (R::Router, K::Deleted),
        "octavia.loadbalancer.create.end" => (R::LoadBalancer, K::Created),
        "octavia.loadbalancer.delete.end" => (R::LoadBalancer, K::Deleted),
        _ => return None,
    })
}

#[test]
fn every_real_capture_decodes_and_billing_events_give_their_fact() {
    let scrubber = Scrubber::default();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let messages = messages();
    assert_eq!(
        messages.len(),
        90 + 242,
        "the capture files and the whole stream"
    );
    for (path, body, exchange, routing_key) in &messages {
        let accepted = match decode_delivery(
            body.as_bytes(),
            exchange,
            routing_key,
            Instant(0),
            &scrubber,
        ) {
            Decoded::Accepted(a) => a,
            Decoded::Quarantined(q) => panic!("{path}: quarantined: {}", q.reason),
        };
        let event_type = accepted.record.event_type.clone().unwrap();
        let Some((resource_type, kind)) = expected(&event_type) else {
            continue;
        };
        *seen.entry(event_type.clone()).or_default() += 1;
        let fact = accepted
            .facts
            .iter()
            .find(|f| f.resource_type == resource_type && f.kind == kind)
            .unwrap_or_else(|| {
                panic!(
                    "{path}: no {resource_type:?}/{kind:?} fact in {:?}",
                    accepted.facts
                )
            });
        // The owner is the resource's project from the payload, a 32-hex Keystone id.
        let owner = fact
            .project_id
            .as_deref()
            .unwrap_or_else(|| panic!("{path}: {event_type} fact without an owner"));
        assert_eq!(owner.len(), 32, "{path}: owner {owner:?}");
        assert!(!fact.resource_id.is_empty());
        assert!(
            fact.effective_at
                > Instant::from_datetime(
                    chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                        .unwrap()
                        .into()
                ),
            "{path}: dated {}",
            fact.effective_at
        );
    }
    // Every kind of billing event in the captures was checked at least once.
    for event_type in [
        "compute.instance.create.end",
        "instance.create.end",
        "compute.instance.delete.end",
        "volume.create.end",
        "snapshot.create.end",
        "floatingip.create.end",
        "router.create.end",
        "octavia.loadbalancer.create.end",
    ] {
        assert!(
            seen.contains_key(event_type),
            "{event_type} not in the captures: {seen:?}"
        );
    }
}

/// One capture file decoded as Steward receives it: the accepted input and the notification
/// inside the oslo envelope.
fn decoded_capture(file: &str, exchange: &str) -> (crate::record::Accepted, Value) {
    let (_, capture) = captures()
        .into_iter()
        .find(|(p, _)| p.file_name().is_some_and(|n| n == file))
        .unwrap_or_else(|| panic!("no capture {file}"));
    let body = capture["envelope"].to_string();
    let Decoded::Accepted(a) = decode_delivery(
        body.as_bytes(),
        exchange,
        "notifications.info",
        Instant(0),
        &Scrubber::default(),
    ) else {
        panic!("{file}: quarantined")
    };
    let inner: Value =
        serde_json::from_str(capture["envelope"]["oslo.message"].as_str().unwrap()).unwrap();
    (a, inner)
}

#[test]
fn a_real_create_carries_the_flavor_and_the_payload_launch_time() {
    let (a, inner) = decoded_capture("nova__legacy__compute.instance.create.end.json", "nova");
    let payload = &inner["payload"];
    let fact = &a.facts[0];
    assert_eq!(fact.resource_id, payload["instance_id"].as_str().unwrap());
    assert_eq!(
        fact.effective_at,
        crate::time::parse_timestamp(payload["launched_at"].as_str().unwrap())
            .unwrap()
            .unwrap(),
        "the payload's launched_at, to the microsecond"
    );
    assert_eq!(fact.time_source, super::TimeSource::Payload);
    assert_eq!(
        fact.attributes.get("flavor_name").and_then(Value::as_str),
        payload["instance_type"].as_str()
    );
}

#[test]
fn a_real_volume_seen_by_amqp_and_by_ceilometer_has_one_start() {
    let (a, inner) = decoded_capture("openstack__legacy__volume.create.end.json", "openstack");
    let p = &inner["payload"];
    // Ceilometer's default volume traits: created_at, no launched_at, the type as `type`.
    let traits: Vec<(String, Value)> = [
        ("project_id", p["tenant_id"].clone()),
        ("user_id", p["user_id"].clone()),
        ("resource_id", p["volume_id"].clone()),
        ("size", p["size"].clone()),
        ("type", p["volume_type"].clone()),
        ("status", p["status"].clone()),
        ("created_at", p["created_at"].clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let generated = crate::time::parse_timestamp(inner["timestamp"].as_str().unwrap())
        .unwrap()
        .unwrap();
    let event = super::event_facts("volume.create.end", Some(generated), &traits);
    let (amqp, ceilometer) = (&a.facts[0], &event[0]);
    assert_eq!(amqp.effective_at, ceilometer.effective_at, "one start");
    assert_eq!(
        amqp.effective_at,
        crate::time::parse_timestamp(p["created_at"].as_str().unwrap())
            .unwrap()
            .unwrap(),
        "created_at, not launched_at"
    );
    assert_eq!(
        amqp.semantic_key(),
        ceilometer.semantic_key(),
        "stored once"
    );
    assert_eq!(amqp.attributes["size_gb"], ceilometer.attributes["size_gb"]);
    assert_eq!(
        amqp.attributes["volume_type"],
        ceilometer.attributes["volume_type"]
    );
}
