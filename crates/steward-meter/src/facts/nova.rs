//! Nova instance notifications, legacy (`compute.instance.*`) and versioned (`instance.*`).
//!
//! Times (reference §2.1/2.2): `launched_at` is overwritten with "now" on create, resize finish,
//! rebuild and unshelve, so for those events it *is* the transition time; deletes carry
//! `terminated_at`; power and suspend transitions carry no time of their own and fall back to the
//! envelope. `finish_resize.end` and `resize.confirm.end` share the same `launched_at`, so they
//! collapse into one `resized` fact through the semantic key. The meaning of every event is
//! written down in `docs/billing-semantics.md`; this table implements it.

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

/// The billing meaning of each nova event, by its versioned name; `legacy_rule` maps the
/// legacy names onto it. See `docs/billing-semantics.md`.
fn rule_by_action(action: &str) -> Option<Rule> {
    use FactKind as K;
    let (kind, times) = match action {
        "create.end" => (K::Created, &["launched_at", "created_at"][..]),
        "create.error" => (K::CreateFailed, ENVELOPE),
        "delete.end" => (K::Deleted, &["terminated_at", "deleted_at"][..]),
        "soft_delete.end" => (K::SoftDeleted, ENVELOPE),
        "restore.end" => (K::Restored, ENVELOPE),
        "resize_finish.end" | "resize_confirm.end" => (K::Resized, LAUNCH),
        "resize_revert.end" => (K::ResizeReverted, LAUNCH),
        "power_off.end" => (K::Stopped, ENVELOPE),
        "power_on.end" => (K::Started, ENVELOPE),
        "suspend.end" => (K::Suspended, ENVELOPE),
        "resume.end" => (K::Resumed, ENVELOPE),
        "pause.end" => (K::Paused, ENVELOPE),
        "unpause.end" => (K::Unpaused, ENVELOPE),
        "shelve.end" => (K::Shelved, ENVELOPE),
        "shelve_offload.end" => (K::ShelvedOffloaded, ENVELOPE),
        "unshelve.end" => (K::Unshelved, LAUNCH),
        "rebuild.end" => (K::Rebuilt, LAUNCH),
        "rescue.end" => (K::Rescued, LAUNCH),
        "unrescue.end" => (K::Unrescued, ENVELOPE),
        "exists" => (K::Exists, ENVELOPE),
        _ => return None,
    };
    Some(Rule { kind, times })
}

pub(crate) fn legacy_rule(event_type: &str) -> Option<Rule> {
    let action = match event_type.strip_prefix("compute.instance.")? {
        "finish_resize.end" => "resize_finish.end",
        "resize.confirm.end" => "resize_confirm.end",
        "resize.revert.end" => "resize_revert.end",
        // The legacy audit dates itself by its period's end.
        "exists" => {
            return Some(Rule {
                kind: FactKind::Exists,
                times: &["audit_period_ending"],
            });
        }
        other => other,
    };
    rule_by_action(action)
}

pub(crate) fn versioned_rule(event_type: &str) -> Option<Rule> {
    rule_by_action(event_type.strip_prefix("instance.")?)
}

/// Keeps "never launched" (`launched_at` sent empty or null) as `launched_at: null`, so the
/// usage engine knows the instance had not run by then (and never bills a failed build).
fn mark_never_launched(p: &Fields<'_>, attributes: &mut BTreeMap<String, serde_json::Value>) {
    let empty = match p.value("launched_at") {
        Some(serde_json::Value::Null) => true,
        Some(serde_json::Value::String(s)) => s.trim().is_empty(),
        _ => false,
    };
    if empty {
        attributes.insert("launched_at".to_owned(), serde_json::Value::Null);
    }
}

/// Whether the event is a failed build (sent with priority ERROR, still billing-relevant:
/// it says the instance never ran).
pub(crate) fn is_create_error(event_type: &str) -> bool {
    matches!(
        event_type,
        "compute.instance.create.error" | "instance.create.error"
    )
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
    mark_never_launched(&p, &mut attributes);
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
    mark_never_launched(&p, &mut attributes);
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
