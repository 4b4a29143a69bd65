//! Glance image notifications.
//!
//! The payload is the image itself; `updated_at` dates uploads, activations and updates, and
//! `deleted_at` dates deletes (reference §2.4). The owner is the image's `owner` project.
//! Error-priority `image.upload` notifications carry a plain string and never reach this module.

use std::collections::BTreeMap;

use super::{
    Fact, FactError, FactKind, Fields, Notification, Origin, ResourceType, effective_time,
};

/// How one glance event type maps to a fact.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    kind: FactKind,
    times: &'static [&'static str],
}

pub(crate) fn rule(event_type: &str) -> Option<Rule> {
    let (kind, times): (_, &'static [&'static str]) = match event_type {
        "image.upload" => (FactKind::Uploaded, &["updated_at"]),
        "image.activate" => (FactKind::Activated, &["updated_at"]),
        "image.update" => (FactKind::Updated, &["updated_at"]),
        "image.delete" => (FactKind::Deleted, &["deleted_at", "updated_at"]),
        _ => return None,
    };
    Some(Rule { kind, times })
}

pub(crate) fn fact(n: &Notification<'_>, rule: Rule, origin: Origin) -> Result<Fact, FactError> {
    let p = Fields::new(n.event_type, n.payload)?;
    let resource_id = p.required_text(&["id"])?;
    let (effective_at, time_source) = effective_time(&p, rule.times, n.emitted_at)?;
    let mut attributes = BTreeMap::new();
    p.copy_into(
        &mut attributes,
        &[
            ("size", "size_bytes"),
            ("virtual_size", "virtual_size_bytes"),
            ("status", "status"),
            ("visibility", "visibility"),
            ("disk_format", "disk_format"),
            ("name", "name"),
        ],
    );
    super::dating_attributes(&p, &mut attributes, &["created_at"])?;
    Ok(Fact {
        resource_type: ResourceType::Image,
        resource_id,
        project_id: p.text("owner"),
        user_id: None,
        kind: rule.kind,
        effective_at,
        time_source,
        origin,
        event_type: n.event_type.to_owned(),
        attributes,
    })
}
