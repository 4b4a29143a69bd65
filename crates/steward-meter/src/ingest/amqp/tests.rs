//! Decode tests: one per fixture file in `tests/fixtures/notifications/<service>/<event_type>.json`
//! (shaped from the upstream notification samples, reference §2), plus the real oslo.messaging
//! captures and malformed inputs.

use std::path::PathBuf;

use serde_json::Value;

use super::decode_delivery;
use crate::record::{Accepted, Decoded};
use crate::time::{Instant, parse_timestamp};

fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn envelope(rel: &str) -> Value {
    let text = std::fs::read_to_string(fixture_path(rel)).expect(rel);
    serde_json::from_str(&text).expect(rel)
}

/// Wraps an envelope dict as oslo.messaging's `messagingv2` driver does.
fn v2(envelope: &Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "oslo.version": "2.0",
        "oslo.message": serde_json::to_string(envelope).unwrap(),
    }))
    .unwrap()
}

/// Decodes `body` as a delivery on nova's `notifications.info`.
fn decode(body: &[u8]) -> Decoded {
    decode_delivery(
        body,
        "nova",
        "notifications.info",
        Instant(0),
        &crate::scrub::Scrubber::default(),
    )
}

fn accept(body: &[u8]) -> Accepted {
    match decode(body) {
        Decoded::Accepted(a) => a,
        Decoded::Quarantined(q) => panic!("quarantined: {}", q.reason),
    }
}

fn at(s: &str) -> Instant {
    parse_timestamp(s).unwrap().unwrap()
}

const P: &str = "7c150a59fe714e6f9263774af9688f0e";
const VM: &str = "9f9d01b9-4a58-4271-9e27-398b21ab20d1";
const VOL: &str = "2c1f0a57-8e1b-4a9f-9a65-1c6a1f1e7b10";

/// (fixture, resource type, resource id, kind, owner, effective time, time source)
type Expect = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

const EXPECTED: &[Expect] = &[
    (
        "nova/compute.instance.create.end",
        "instance",
        VM,
        "created",
        P,
        "2023-05-03T10:11:11Z",
        "payload",
    ),
    (
        "nova/compute.instance.delete.end",
        "instance",
        VM,
        "deleted",
        P,
        "2023-05-03T15:30:00Z",
        "payload",
    ),
    (
        "nova/compute.instance.finish_resize.end",
        "instance",
        VM,
        "resized",
        P,
        "2023-05-03T12:00:04Z",
        "payload",
    ),
    (
        "nova/compute.instance.resize.confirm.end",
        "instance",
        VM,
        "resized",
        P,
        "2023-05-03T12:00:04Z",
        "payload",
    ),
    (
        "nova/compute.instance.power_off.end",
        "instance",
        VM,
        "stopped",
        P,
        "2023-05-03T13:00:00Z",
        "envelope",
    ),
    (
        "nova/compute.instance.power_on.end",
        "instance",
        VM,
        "started",
        P,
        "2023-05-03T14:00:00Z",
        "envelope",
    ),
    (
        "nova/compute.instance.shelve_offload.end",
        "instance",
        VM,
        "shelved_offloaded",
        P,
        "2023-05-03T16:00:00Z",
        "envelope",
    ),
    (
        "nova/compute.instance.unshelve.end",
        "instance",
        VM,
        "unshelved",
        P,
        "2023-05-03T17:00:03Z",
        "payload",
    ),
    (
        "nova/compute.instance.suspend.end",
        "instance",
        VM,
        "suspended",
        P,
        "2023-05-03T18:00:00Z",
        "envelope",
    ),
    (
        "nova/compute.instance.resume.end",
        "instance",
        VM,
        "resumed",
        P,
        "2023-05-03T18:30:00Z",
        "envelope",
    ),
    (
        "nova/compute.instance.rebuild.end",
        "instance",
        VM,
        "rebuilt",
        P,
        "2023-05-03T19:00:02Z",
        "payload",
    ),
    (
        "nova/compute.instance.exists",
        "instance",
        VM,
        "exists",
        P,
        "2023-05-01T00:00:00Z",
        "payload",
    ),
    (
        "nova-versioned/instance.create.end",
        "instance",
        VM,
        "created",
        P,
        "2023-05-03T10:11:11Z",
        "payload",
    ),
    (
        "nova-versioned/instance.delete.end",
        "instance",
        VM,
        "deleted",
        P,
        "2023-05-03T15:30:00Z",
        "payload",
    ),
    (
        "nova-versioned/instance.resize_finish.end",
        "instance",
        VM,
        "resized",
        P,
        "2023-05-03T12:00:04Z",
        "payload",
    ),
    (
        "nova-versioned/instance.resize_confirm.end",
        "instance",
        VM,
        "resized",
        P,
        "2023-05-03T12:00:04Z",
        "payload",
    ),
    (
        "nova-versioned/instance.power_off.end",
        "instance",
        VM,
        "stopped",
        P,
        "2023-05-03T13:00:00Z",
        "envelope",
    ),
    (
        "nova-versioned/instance.power_on.end",
        "instance",
        VM,
        "started",
        P,
        "2023-05-03T14:00:00Z",
        "envelope",
    ),
    (
        "nova-versioned/instance.shelve_offload.end",
        "instance",
        VM,
        "shelved_offloaded",
        P,
        "2023-05-03T16:00:00Z",
        "envelope",
    ),
    (
        "nova-versioned/instance.unshelve.end",
        "instance",
        VM,
        "unshelved",
        P,
        "2023-05-03T17:00:03Z",
        "payload",
    ),
    (
        "nova-versioned/instance.suspend.end",
        "instance",
        VM,
        "suspended",
        P,
        "2023-05-03T18:00:00Z",
        "envelope",
    ),
    (
        "nova-versioned/instance.resume.end",
        "instance",
        VM,
        "resumed",
        P,
        "2023-05-03T18:30:00Z",
        "envelope",
    ),
    (
        "nova-versioned/instance.rebuild.end",
        "instance",
        VM,
        "rebuilt",
        P,
        "2023-05-03T19:00:02Z",
        "payload",
    ),
    (
        "nova-versioned/instance.exists",
        "instance",
        VM,
        "exists",
        P,
        "2023-05-01T00:00:00Z",
        "payload",
    ),
    (
        "cinder/volume.create.end",
        "volume",
        VOL,
        "created",
        P,
        // `created_at`, the time every source of a volume carries (not `launched_at`).
        "2023-05-03T09:00:05Z",
        "payload",
    ),
    (
        "cinder/volume.delete.end",
        "volume",
        VOL,
        "deleted",
        P,
        "2023-05-04T08:00:00.25Z",
        "envelope",
    ),
    (
        "cinder/volume.resize.end",
        "volume",
        VOL,
        "resized",
        P,
        "2023-05-03T11:30:00Z",
        "envelope",
    ),
    (
        "cinder/volume.retype",
        "volume",
        VOL,
        "retyped",
        P,
        "2023-05-03T11:45:00Z",
        "envelope",
    ),
    (
        "cinder/volume.attach.end",
        "volume",
        VOL,
        "attached",
        P,
        "2023-05-03T10:20:00Z",
        "envelope",
    ),
    (
        "cinder/volume.detach.end",
        "volume",
        VOL,
        "detached",
        P,
        "2023-05-03T10:40:00Z",
        "envelope",
    ),
    (
        "cinder/volume.transfer.accept.end",
        "volume",
        VOL,
        "transferred",
        "0f0e0d0c0b0a09080706050403020100",
        "2023-05-03T12:30:00Z",
        "envelope",
    ),
    (
        "cinder/volume.exists",
        "volume",
        VOL,
        "exists",
        P,
        "2023-05-01T00:00:00Z",
        "payload",
    ),
    (
        "cinder/snapshot.create.end",
        "snapshot",
        "7d2e9a1c-3b4f-4c5d-8e6f-a1b2c3d4e5f6",
        "created",
        P,
        "2023-05-03T20:00:00Z",
        "payload",
    ),
    (
        "cinder/snapshot.delete.end",
        "snapshot",
        "7d2e9a1c-3b4f-4c5d-8e6f-a1b2c3d4e5f6",
        "deleted",
        P,
        "2023-05-05T20:00:00Z",
        "envelope",
    ),
    (
        "cinder/backup.create.end",
        "backup",
        "4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f60718",
        "created",
        P,
        "2023-05-03T21:00:00Z",
        "payload",
    ),
    (
        "cinder/backup.delete.end",
        "backup",
        "4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f60718",
        "deleted",
        P,
        "2023-05-10T21:00:00Z",
        "envelope",
    ),
    (
        "glance/image.upload",
        "image",
        "5f4c6a3e-8d0b-4a4e-9a57-2f2d3c1b0a99",
        "uploaded",
        P,
        "2023-05-03T10:02:30Z",
        "payload",
    ),
    (
        "glance/image.activate",
        "image",
        "5f4c6a3e-8d0b-4a4e-9a57-2f2d3c1b0a99",
        "activated",
        P,
        "2023-05-03T10:02:30Z",
        "payload",
    ),
    (
        "glance/image.update",
        "image",
        "5f4c6a3e-8d0b-4a4e-9a57-2f2d3c1b0a99",
        "updated",
        P,
        "2023-05-03T11:00:00Z",
        "payload",
    ),
    (
        "glance/image.delete",
        "image",
        "5f4c6a3e-8d0b-4a4e-9a57-2f2d3c1b0a99",
        "deleted",
        P,
        "2023-05-06T09:00:00Z",
        "payload",
    ),
    (
        "neutron/floatingip.create.end",
        "floating_ip",
        "2f245a7b-796b-4f26-9cf9-9e82d248fda7",
        "created",
        "4969c491a3c74ee4af974e6d800c62de",
        "2023-05-03T10:11:12Z",
        "payload",
    ),
    (
        "neutron/floatingip.update.end",
        "floating_ip",
        "2f245a7b-796b-4f26-9cf9-9e82d248fda7",
        "updated",
        "4969c491a3c74ee4af974e6d800c62de",
        "2023-05-03T10:20:00Z",
        "payload",
    ),
    (
        "neutron/floatingip.delete.end",
        "floating_ip",
        "2f245a7b-796b-4f26-9cf9-9e82d248fda7",
        "deleted",
        "4969c491a3c74ee4af974e6d800c62de",
        "2023-05-04T10:00:00Z",
        "envelope",
    ),
    (
        "neutron/router.create.end",
        "router",
        "d23abc8d-2991-4a55-ba98-2aaea84cc72f",
        "created",
        "4969c491a3c74ee4af974e6d800c62de",
        "2023-05-03T09:30:00Z",
        "payload",
    ),
    (
        "neutron/router.delete.end",
        "router",
        "d23abc8d-2991-4a55-ba98-2aaea84cc72f",
        "deleted",
        "4969c491a3c74ee4af974e6d800c62de",
        "2023-05-07T09:30:00Z",
        "envelope",
    ),
    (
        "octavia/octavia.loadbalancer.create.end",
        "load_balancer",
        "8d4c8f66-7ac1-408e-82d5-59f6fcdea9ee",
        "created",
        P,
        "2023-05-03T10:11:12.123456Z",
        "envelope",
    ),
    (
        "octavia/octavia.loadbalancer.delete.end",
        "load_balancer",
        "8d4c8f66-7ac1-408e-82d5-59f6fcdea9ee",
        "deleted",
        P,
        "2023-05-08T10:00:00Z",
        "envelope",
    ),
];

/// Fixtures whose event carries no billing meaning: stored raw, no facts.
/// Failure notifications that change nothing billed. (A failed build does: it says the
/// instance never ran; `failed_builds_give_a_create_failed_fact` checks it.)
const NO_FACTS: &[&str] = &["glance/image.upload.error"];

#[test]
fn every_fixture_decodes_to_its_fact_in_both_envelope_versions() {
    for (file, rtype, id, kind, owner, time, source) in EXPECTED {
        let env = envelope(&format!("notifications/{file}.json"));
        let v1 = accept(&serde_json::to_vec(&env).unwrap());
        let v2 = accept(&v2(&env));
        assert_eq!(v1.facts, v2.facts, "{file}: v1 and v2 differ");
        assert_eq!(v2.record.envelope_version.as_deref(), Some("2.0"));
        assert_eq!(v1.record.envelope_version.as_deref(), Some("1.0"));
        assert_eq!(v2.facts.len(), 1, "{file}");
        let f = &v2.facts[0];
        assert_eq!(f.resource_type.as_str(), *rtype, "{file}");
        assert_eq!(f.resource_id, *id, "{file}");
        assert_eq!(f.kind.as_str(), *kind, "{file}");
        assert_eq!(f.project_id.as_deref(), Some(*owner), "{file}: owner");
        assert_eq!(f.effective_at, at(time), "{file}: effective time");
        assert_eq!(f.time_source.as_str(), *source, "{file}");
        assert_eq!(
            v2.record.dedup_key,
            format!("msg:{}", env["message_id"].as_str().unwrap())
        );
    }
}

#[test]
fn every_fixture_file_is_covered_by_a_test() {
    let root = fixture_path("notifications");
    let mut files = Vec::new();
    for service in std::fs::read_dir(&root).unwrap() {
        let service = service.unwrap().path();
        for file in std::fs::read_dir(&service).unwrap() {
            let file = file.unwrap().path();
            let rel = format!(
                "{}/{}",
                service.file_name().unwrap().to_str().unwrap(),
                file.file_stem().unwrap().to_str().unwrap()
            );
            files.push(rel);
        }
    }
    for rel in &files {
        let known = EXPECTED.iter().any(|e| e.0 == rel)
            || NO_FACTS.contains(&rel.as_str())
            || rel == "nova/compute.instance.create.error";
        assert!(known, "fixture {rel} has no expectation");
    }
    assert_eq!(
        files.len(),
        EXPECTED.len() + NO_FACTS.len() + 1,
        "+ the failed build"
    );
}

#[test]
fn failure_notifications_are_stored_without_facts() {
    for file in NO_FACTS {
        let a = accept(&v2(&envelope(&format!("notifications/{file}.json"))));
        assert!(a.facts.is_empty(), "{file}");
        assert_eq!(a.record.priority.as_deref(), Some("ERROR"));
    }
}

#[test]
fn failed_builds_give_a_create_failed_fact() {
    let a = accept(&v2(&envelope(
        "notifications/nova/compute.instance.create.error.json",
    )));
    assert_eq!(a.record.priority.as_deref(), Some("ERROR"));
    assert_eq!(a.facts.len(), 1, "{:?}", a.facts);
    let fact = &a.facts[0];
    assert_eq!(fact.kind, crate::facts::FactKind::CreateFailed);
    assert_eq!(fact.time_source, crate::facts::TimeSource::Envelope);
}

#[test]
fn owner_comes_from_the_payload_not_the_caller_context() {
    let a = accept(&v2(&envelope(
        "notifications/nova/compute.instance.delete.end.json",
    )));
    assert_ne!(
        a.facts[0].project_id.as_deref(),
        Some("admin0000000000000000000000000000")
    );
    assert_eq!(a.facts[0].project_id.as_deref(), Some(P));
}

#[test]
fn legacy_and_versioned_forms_of_one_transition_share_the_semantic_key() {
    for (legacy, versioned) in [
        (
            "nova/compute.instance.create.end",
            "nova-versioned/instance.create.end",
        ),
        (
            "nova/compute.instance.delete.end",
            "nova-versioned/instance.delete.end",
        ),
        (
            "nova/compute.instance.finish_resize.end",
            "nova-versioned/instance.resize_finish.end",
        ),
        (
            "nova/compute.instance.resize.confirm.end",
            "nova-versioned/instance.resize_finish.end",
        ),
        (
            "nova/compute.instance.exists",
            "nova-versioned/instance.exists",
        ),
    ] {
        let a = accept(&v2(&envelope(&format!("notifications/{legacy}.json"))));
        let b = accept(&v2(&envelope(&format!("notifications/{versioned}.json"))));
        assert_ne!(a.record.dedup_key, b.record.dedup_key);
        assert_eq!(
            a.facts[0].semantic_key(),
            b.facts[0].semantic_key(),
            "{legacy} ~ {versioned}"
        );
    }
}

#[test]
fn resize_carries_the_new_flavor_in_both_forms() {
    for file in [
        "nova/compute.instance.finish_resize.end",
        "nova-versioned/instance.resize_finish.end",
    ] {
        let a = accept(&v2(&envelope(&format!("notifications/{file}.json"))));
        let attrs = &a.facts[0].attributes;
        assert_eq!(attrs["flavor_name"], "SCS-4V-8", "{file}");
        assert_eq!(attrs["vcpus"], 4, "{file}");
        assert_eq!(attrs["memory_mb"], 8192, "{file}");
    }
}

#[test]
fn real_oslo_messaging_captures_decode() {
    let capture: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_path(
            "captures/oslo/nova-compute.instance.create.end.capture.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let raw = capture["body_raw"].as_str().unwrap();
    let a = accept(raw.as_bytes());
    assert_eq!(a.record.body, raw, "the body is stored verbatim");
    assert_eq!(
        a.record.dedup_key,
        "msg:a718b6a0-338f-449f-82c4-bf58db07114c"
    );
    assert_eq!(a.record.emitted_at, Some(at("2026-11-25 00:01:39.618401")));
    assert_eq!(a.facts[0].kind.as_str(), "created");
    assert_eq!(a.facts[0].effective_at, at("2026-11-24T23:57:10.618290"));
    assert_eq!(a.facts[0].attributes["flavor_name"], "m1.tiny");

    for (file, kind) in [
        (
            "captures/oslo/nova-compute.instance.create.end.v2.body",
            "created",
        ),
        (
            "captures/oslo/nova-compute.instance.delete.end.v2.body",
            "deleted",
        ),
    ] {
        let a = accept(&std::fs::read(fixture_path(file)).unwrap());
        assert_eq!(a.facts.len(), 1, "{file}");
        assert_eq!(a.facts[0].kind.as_str(), kind, "{file}");
        assert_eq!(
            a.facts[0].project_id.as_deref(),
            Some("a3f2c6b0e1d94b6f8c1f1d7e2a9b0c11")
        );
    }
}

#[test]
fn unknown_event_types_are_stored_raw_without_facts() {
    let env = serde_json::json!({
        "message_id": "u-1", "event_type": "identity.project.created", "priority": "INFO",
        "publisher_id": "identity.ctl-01", "timestamp": "2023-05-03 10:11:12",
        "payload": {"resource_info": "p-9"}
    });
    let a = accept(&v2(&env));
    assert!(a.facts.is_empty());
    assert_eq!(
        a.record.event_type.as_deref(),
        Some("identity.project.created")
    );
}

fn quarantine_reason(body: &[u8]) -> String {
    match decode(body) {
        Decoded::Quarantined(q) => {
            assert_eq!(q.body, body, "the body is kept as received");
            assert_eq!(q.exchange.as_deref(), Some("nova"));
            q.reason
        }
        Decoded::Accepted(_) => panic!("accepted: {}", String::from_utf8_lossy(body)),
    }
}

#[test]
fn malformed_bodies_are_quarantined_with_a_reason() {
    let cases: &[(&[u8], &str)] = &[
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1,2]", "not a JSON object"),
        (br#"{"oslo.version": "3.0", "oslo.message": "{}"}"#, "unsupported oslo.version"),
        (br#"{"oslo.version": "2.0", "oslo.message": "{broken"}"#, "oslo.message is not JSON"),
        (br#"{"oslo.version": "2.0", "oslo.message": {"a": 1}}"#, "oslo.message is not a string"),
        (br#"{"event_type": "compute.instance.create.end"}"#, "no message_id"),
        (br#"{"message_id": "m"}"#, "no event_type"),
        (
            br#"{"message_id": "m", "event_type": "x", "timestamp": "yesterday"}"#,
            "envelope field timestamp",
        ),
        (
            br#"{"message_id": "m", "event_type": "compute.instance.create.end", "timestamp": "2023-05-03 10:11:12", "payload": {"tenant_id": "p"}}"#,
            "payload has no instance_id",
        ),
        (
            br#"{"message_id": "m", "event_type": "compute.instance.create.end", "payload": {"instance_id": "i", "launched_at": "soon"}}"#,
            "field launched_at holds an unrecognised timestamp",
        ),
        (
            br#"{"message_id": "m", "event_type": "volume.delete.end", "payload": {"volume_id": "v"}}"#,
            "no time in the payload and no envelope timestamp",
        ),
    ];
    for (body, expected) in cases {
        let reason = quarantine_reason(body);
        assert!(
            reason.contains(expected),
            "{reason:?} should mention {expected:?}"
        );
    }
}
