//! Workloads for Steward's benchmarks and end-to-end tests: realistic OpenStack notification
//! streams with known expected results.

use serde_json::{Value, json};

/// Wraps a notification dict as oslo.messaging's `messagingv2` driver does.
pub fn oslo_v2(envelope: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "oslo.version": "2.0",
        "oslo.message": envelope.to_string(),
    }))
    .unwrap_or_default()
}

/// Notification `i` of a mixed stream (nova legacy + versioned, cinder, glance, neutron and an
/// event type without billing meaning), as oslo v2 bodies. Per 10 notifications: 8 facts (the
/// versioned create repeats the legacy create's fact; the identity event has none).
pub fn mixed_notification(run: &str, i: usize) -> Vec<u8> {
    let t = |offset: usize| {
        let secs = 1_683_108_000 + (i / 10) as i64 * 60 + offset as i64;
        chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default()
    };
    let naive = |offset| t(offset).format("%Y-%m-%d %H:%M:%S").to_string();
    let iso = |offset| t(offset).format("%Y-%m-%dT%H:%M:%S.000000").to_string();
    let z = |offset| t(offset).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let group = i / 10;
    let vm = format!("vm-{run}-{group}");
    let legacy = |extra: Value| {
        // The field set of nova's legacy `info_from_instance`, as in the real capture.
        let mut p = json!({"tenant_id": "a3f2c6b0e1d94b6f8c1f1d7e2a9b0c11",
            "user_id": "5b2e3e4e0d8e4c5e9b1b7f4c1f3a2d10", "instance_id": vm,
            "display_name": format!("web-{group}"), "reservation_id": format!("r-{group:08}"),
            "hostname": format!("web-{group}"), "instance_type": "SCS-2V-4", "instance_type_id": 12,
            "instance_flavor_id": "a0b7c1d2-0000-4000-8000-000000000012", "memory_mb": 4096,
            "disk_gb": 20, "vcpus": 2, "root_gb": 20, "ephemeral_gb": 0, "host": "cmp-01",
            "node": "cmp-01.example.net", "availability_zone": "nova", "cell_name": "",
            "created_at": naive(0), "launched_at": iso(1), "terminated_at": "", "deleted_at": "",
            "image_ref_url": "http://127.0.0.1:9292/images/0c7e4b7e-5c3e-4d7e-9c11-2b1f3ad0e6a1",
            "os_type": null, "kernel_id": "", "ramdisk_id": "", "state": "active",
            "state_description": "", "progress": "", "access_ip_v4": null, "access_ip_v6": null,
            "architecture": "x86_64", "metadata": {"group": group.to_string()},
            "image_meta": {"base_image_ref": "0c7e4b7e-5c3e-4d7e-9c11-2b1f3ad0e6a1",
                "min_disk": "20", "min_ram": "0", "container_format": "bare",
                "disk_format": "qcow2", "os_distro": "ubuntu"},
            "fixed_ips": [{"address": "10.0.0.2", "type": "fixed", "version": 4,
                "vif_mac": "fa:16:3e:00:00:00", "floating_ips": [], "label": "private", "meta": {}}]});
        if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                p.insert(k.clone(), v.clone());
            }
        }
        p
    };
    let (event_type, payload, ts) = match i % 10 {
        0 => ("compute.instance.create.end", legacy(json!({})), naive(2)),
        1 => (
            "instance.create.end",
            json!({"nova_object.name": "InstanceActionPayload",
              "nova_object.data": {"uuid": vm, "tenant_id": "a3f2c6b0e1d94b6f8c1f1d7e2a9b0c11", "launched_at": z(1), "state": "active"}}),
            naive(2),
        ),
        2 => (
            "compute.instance.power_off.end",
            legacy(json!({"state": "stopped"})),
            naive(10),
        ),
        3 => (
            "compute.instance.power_on.end",
            legacy(json!({})),
            naive(20),
        ),
        4 => (
            "compute.instance.delete.end",
            legacy(json!({"state": "deleted", "terminated_at": iso(30)})),
            naive(31),
        ),
        5 => (
            "volume.create.end",
            json!({"tenant_id": "a3f2c6b0e1d94b6f8c1f1d7e2a9b0c11", "volume_id": format!("vol-{run}-{group}"),
              "size": 10, "volume_type": "t-1", "created_at": z(3)}),
            naive(4),
        ),
        6 => (
            "volume.resize.end",
            json!({"tenant_id": "a3f2c6b0e1d94b6f8c1f1d7e2a9b0c11", "volume_id": format!("vol-{run}-{group}"),
              "size": 20, "volume_type": "t-1", "created_at": z(3)}),
            naive(40),
        ),
        7 => (
            "image.upload",
            json!({"id": format!("img-{run}-{group}"), "owner": "a3f2c6b0e1d94b6f8c1f1d7e2a9b0c11", "size": 1024,
              "status": "active", "updated_at": z(5)}),
            naive(6),
        ),
        8 => (
            "floatingip.create.end",
            json!({"floatingip": {"id": format!("fip-{run}-{group}"),
              "project_id": "a3f2c6b0e1d94b6f8c1f1d7e2a9b0c11", "floating_ip_address": "203.0.113.1", "created_at": z(7)}}),
            naive(8),
        ),
        _ => (
            "identity.project.created",
            json!({"resource_info": "p-9"}),
            naive(9),
        ),
    };
    oslo_v2(&json!({
        "message_id": format!("{run}-{i:08}"),
        "publisher_id": "test.host1",
        "event_type": event_type,
        "priority": "INFO",
        "payload": payload,
        "timestamp": ts,
        "_unique_id": format!("{:032x}", i),
    }))
}

/// Facts expected from `mixed_notification(run, 0..n)` for `n` a multiple of 10.
pub fn mixed_expected_facts(n: usize) -> i64 {
    (n / 10 * 8) as i64
}
