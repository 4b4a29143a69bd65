//! Nova instance notifications, legacy (`compute.instance.*`) and versioned (`instance.*`).
//!
//! Times (reference §2.1/2.2): `launched_at` is overwritten with "now" on create, resize finish,
//! rebuild and unshelve, so for those events it *is* the transition time; deletes carry
//! `terminated_at`; power and suspend transitions carry no time of their own and fall back to the
//! envelope. `finish_resize.end` and `resize.confirm.end` share the same `launched_at`, so they
//! collapse into one `resized` fact through the semantic key.

use std::collections::BTreeMap;

use super::{
    Fact, FactError, FactKind, Fields, Notification, Origin, ResourceType, audit_period_attributes,
    dating_attributes, effective_time,
};

/// How one event type maps to a fact.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    pub(crate) kind: FactKind,
    /// Payload time fields, most specific first; empty = envelope time.
    pub(crate) times: &'static [&'static str],
}

const LAUNCH: &[&str] = &["launched_at"];
const ENVELOPE: &[&str] = &[];

pub(crate) fn legacy_rule(event_type: &str) -> Option<Rule> {
    let rule = |kind, times| Some(Rule { kind, times });
    match event_type {
        "compute.instance.create.end" => rule(FactKind::Created, &["launched_at", "created_at"]),
        "compute.instance.delete.end" => rule(FactKind::Deleted, &["terminated_at", "deleted_at"]),
        "compute.instance.finish_resize.end" | "compute.instance.resize.confirm.end" => {
            rule(FactKind::Resized, LAUNCH)
        }
        "compute.instance.power_off.end" => rule(FactKind::Stopped, ENVELOPE),
        "compute.instance.power_on.end" => rule(FactKind::Started, ENVELOPE),
        "compute.instance.shelve_offload.end" => rule(FactKind::ShelvedOffloaded, ENVELOPE),
        "compute.instance.unshelve.end" => rule(FactKind::Unshelved, LAUNCH),
        "compute.instance.suspend.end" => rule(FactKind::Suspended, ENVELOPE),
        "compute.instance.resume.end" => rule(FactKind::Resumed, ENVELOPE),
        "compute.instance.rebuild.end" => rule(FactKind::Rebuilt, LAUNCH),
        "compute.instance.exists" => rule(FactKind::Exists, &["audit_period_ending"]),
        _ => None,
    }
}

pub(crate) fn versioned_rule(event_type: &str) -> Option<Rule> {
    let rule = |kind, times| Some(Rule { kind, times });
    match event_type {
        "instance.create.end" => rule(FactKind::Created, &["launched_at", "created_at"]),
        "instance.delete.end" => rule(FactKind::Deleted, &["terminated_at", "deleted_at"]),
        "instance.resize_finish.end" | "instance.resize_confirm.end" => {
            rule(FactKind::Resized, LAUNCH)
        }
        "instance.power_off.end" => rule(FactKind::Stopped, ENVELOPE),
        "instance.power_on.end" => rule(FactKind::Started, ENVELOPE),
        "instance.shelve_offload.end" => rule(FactKind::ShelvedOffloaded, ENVELOPE),
        "instance.unshelve.end" => rule(FactKind::Unshelved, LAUNCH),
        "instance.suspend.end" => rule(FactKind::Suspended, ENVELOPE),
        "instance.resume.end" => rule(FactKind::Resumed, ENVELOPE),
        "instance.rebuild.end" => rule(FactKind::Rebuilt, LAUNCH),
        "instance.exists" => rule(FactKind::Exists, ENVELOPE),
        _ => None,
    }
}

/// Legacy payloads are flat; Ceilometer's `compute.instance.*` traits use the same names.
pub(crate) fn legacy_fact(
    n: &Notification<'_>,
    rule: Rule,
    origin: Origin,
) -> Result<Fact, FactError> {
    let p = Fields::new(n.event_type, n.payload)?;
    let resource_id = p.required_text(&["instance_id"])?;
    let (effective_at, time_source) = effective_time(&p, rule.times, n.emitted_at)?;
    let mut attributes = BTreeMap::new();
    p.copy_into(
        &mut attributes,
        &[
            ("instance_type", "flavor_name"),
            ("instance_flavor_id", "flavor_id"),
            ("vcpus", "vcpus"),
            ("memory_mb", "memory_mb"),
            ("root_gb", "root_gb"),
            ("ephemeral_gb", "ephemeral_gb"),
            ("state", "state"),
            ("availability_zone", "availability_zone"),
        ],
    );
    if rule.kind == FactKind::Exists {
        audit_period_attributes(&p, &mut attributes)?;
    }
    dating_attributes(&p, &mut attributes, &["launched_at", "created_at"])?;
    Ok(Fact {
        resource_type: ResourceType::Instance,
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

/// Versioned payloads are oslo versioned objects: the fields sit under `nova_object.data`.
pub(crate) fn versioned_fact(n: &Notification<'_>, rule: Rule) -> Result<Fact, FactError> {
    let outer = Fields::new(n.event_type, n.payload)?;
    let p = outer
        .object("nova_object.data")
        .ok_or_else(|| FactError::MissingField {
            event_type: n.event_type.to_owned(),
            field: "nova_object.data".to_owned(),
        })?;
    let resource_id = p.required_text(&["uuid"])?;
    let mut times = rule.times;
    let audit = p
        .object("audit_period")
        .and_then(|a| a.object("nova_object.data"));
    if rule.kind == FactKind::Exists {
        times = &["audit_period_ending"];
    }
    let time_fields = match (rule.kind, audit) {
        (FactKind::Exists, Some(audit)) => audit,
        _ => p,
    };
    let (effective_at, time_source) = effective_time(&time_fields, times, n.emitted_at)?;
    let mut attributes = BTreeMap::new();
    p.copy_into(
        &mut attributes,
        &[
            ("state", "state"),
            ("power_state", "power_state"),
            ("availability_zone", "availability_zone"),
        ],
    );
    if let Some(flavor) = p
        .object("flavor")
        .and_then(|f| f.object("nova_object.data"))
    {
        flavor.copy_into(
            &mut attributes,
            &[
                ("name", "flavor_name"),
                ("flavorid", "flavor_id"),
                ("vcpus", "vcpus"),
                ("memory_mb", "memory_mb"),
                ("root_gb", "root_gb"),
                ("ephemeral_gb", "ephemeral_gb"),
            ],
        );
    }
    if let Some(audit) = audit {
        audit_period_attributes(&audit, &mut attributes)?;
    }
    dating_attributes(&p, &mut attributes, &["launched_at", "created_at"])?;
    Ok(Fact {
        resource_type: ResourceType::Instance,
        resource_id,
        project_id: p.text("tenant_id"),
        user_id: p.text("user_id"),
        kind: rule.kind,
        effective_at,
        time_source,
        origin: Origin::Notification,
        event_type: n.event_type.to_owned(),
        attributes,
    })
}
