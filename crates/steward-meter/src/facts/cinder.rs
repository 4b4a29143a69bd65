//! Cinder notifications: volumes, snapshots and backups.
//!
//! Only creation is dated by the payload (`created_at`, the one time every source of a volume
//! carries); deletes, resizes, retypes,
//! attachments and transfers carry no time of their own and use the envelope timestamp
//! (reference §2.3). On `volume.transfer.accept.end` the payload's `tenant_id` is the recipient,
//! so the fact's owner is the new owner.

use std::collections::BTreeMap;

use super::{
    Fact, FactError, FactKind, Fields, Notification, Origin, ResourceType, audit_period_attributes,
    effective_time,
};

/// How one cinder event type maps to a fact.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    resource: ResourceType,
    kind: FactKind,
    times: &'static [&'static str],
}

pub(crate) fn rule(event_type: &str) -> Option<Rule> {
    use FactKind as K;
    use ResourceType as R;
    let (resource, kind, times): (_, _, &'static [&'static str]) = match event_type {
        // `created_at`, not `launched_at`: it is what every source carries (Ceilometer's
        // volume traits and the API have no `launched_at`), so one volume has one start.
        "volume.create.end" | "volume.manage_existing.end" => {
            (R::Volume, K::Created, &["created_at", "launched_at"])
        }
        "volume.delete.end" | "volume.unmanage.end" => (R::Volume, K::Deleted, &[]),
        "volume.resize.end" => (R::Volume, K::Resized, &[]),
        "volume.retype" => (R::Volume, K::Retyped, &[]),
        "volume.attach.end" => (R::Volume, K::Attached, &[]),
        "volume.detach.end" => (R::Volume, K::Detached, &[]),
        "volume.transfer.accept.end" => (R::Volume, K::Transferred, &[]),
        "volume.exists" => (R::Volume, K::Exists, &["audit_period_ending"]),
        "snapshot.create.end" | "snapshot.manage_existing_snapshot.end" => {
            (R::Snapshot, K::Created, &["created_at"])
        }
        "snapshot.delete.end" | "snapshot.unmanage.end" => (R::Snapshot, K::Deleted, &[]),
        "snapshot.exists" => (R::Snapshot, K::Exists, &["audit_period_ending"]),
        "backup.create.end" => (R::Backup, K::Created, &["created_at"]),
        "backup.delete.end" => (R::Backup, K::Deleted, &[]),
        "backup.exists" => (R::Backup, K::Exists, &["audit_period_ending"]),
        _ => return None,
    };
    Some(Rule {
        resource,
        kind,
        times,
    })
}

/// Works on the notification payload and on Ceilometer's volume traits mapped to payload names.
pub(crate) fn fact(n: &Notification<'_>, rule: Rule, origin: Origin) -> Result<Fact, FactError> {
    let p = Fields::new(n.event_type, n.payload)?;
    let id_field = match rule.resource {
        ResourceType::Snapshot => "snapshot_id",
        ResourceType::Backup => "backup_id",
        _ => "volume_id",
    };
    let resource_id = p.required_text(&[id_field])?;
    let (effective_at, time_source) = effective_time(&p, rule.times, n.emitted_at)?;
    let mut attributes = BTreeMap::new();
    match rule.resource {
        ResourceType::Snapshot => p.copy_into(
            &mut attributes,
            &[
                ("volume_size", "size_gb"),
                ("volume_id", "volume_id"),
                ("status", "status"),
            ],
        ),
        ResourceType::Backup => p.copy_into(
            &mut attributes,
            &[
                ("size", "size_gb"),
                ("volume_id", "volume_id"),
                ("status", "status"),
            ],
        ),
        _ => p.copy_into(
            &mut attributes,
            &[
                ("size", "size_gb"),
                ("volume_type", "volume_type"),
                ("status", "status"),
                ("availability_zone", "availability_zone"),
            ],
        ),
    }
    super::dating_attributes(&p, &mut attributes, &["created_at"])?;
    if rule.kind == FactKind::Exists {
        audit_period_attributes(&p, &mut attributes)?;
    }
    Ok(Fact {
        resource_type: rule.resource,
        resource_id,
        project_id: p.text("tenant_id").or_else(|| p.text("project_id")),
        user_id: p.text("user_id"),
        kind: rule.kind,
        effective_at,
        time_source,
        origin,
        event_type: n.event_type.to_owned(),
        attributes,
    })
}
