//! Neutron floating IP and router notifications.
//!
//! The payload wraps the resource: `{"floatingip": {...}}`, and on delete
//! `{"floatingip_id": ..., "floatingip": {...as it was}}` (reference §2.5). The owner is the
//! resource's `project_id` (or `tenant_id`), never the caller from the context. Neutron dates
//! creation (`created_at`) and updates (`updated_at`) but not deletion: deletes use the envelope.

use std::collections::BTreeMap;

use super::{
    Fact, FactError, FactKind, Fields, Notification, Origin, ResourceType, effective_time,
};

/// How one neutron event type maps to a fact.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    resource: ResourceType,
    /// The payload key that wraps the resource (`floatingip`, `router`).
    wrapper: &'static str,
    kind: FactKind,
    times: &'static [&'static str],
}

pub(crate) fn rule(event_type: &str) -> Option<Rule> {
    use FactKind as K;
    let (resource, wrapper) = if event_type.starts_with("floatingip.") {
        (ResourceType::FloatingIp, "floatingip")
    } else if event_type.starts_with("router.") {
        (ResourceType::Router, "router")
    } else {
        return None;
    };
    let (kind, times): (_, &'static [&'static str]) = match &event_type[wrapper.len()..] {
        ".create.end" => (K::Created, &["created_at"]),
        ".update.end" if resource == ResourceType::FloatingIp => (K::Updated, &["updated_at"]),
        ".delete.end" => (K::Deleted, &[]),
        _ => return None,
    };
    Some(Rule {
        resource,
        wrapper,
        kind,
        times,
    })
}

pub(crate) fn fact(n: &Notification<'_>, rule: Rule) -> Result<Fact, FactError> {
    let outer = Fields::new(n.event_type, n.payload)?;
    let id_key = format!("{}_id", rule.wrapper);
    let inner = outer.object(rule.wrapper);
    let resource_id = match (&inner, outer.text(&id_key)) {
        (_, Some(id)) => id,
        (Some(inner), None) => inner.required_text(&["id"])?,
        (None, None) => {
            return Err(FactError::MissingField {
                event_type: n.event_type.to_owned(),
                field: format!("{}.id", rule.wrapper),
            });
        }
    };
    let fields = inner.unwrap_or(outer);
    let (effective_at, time_source) = effective_time(&fields, rule.times, n.emitted_at)?;
    let mut attributes = BTreeMap::new();
    fields.copy_into(
        &mut attributes,
        &[
            ("floating_ip_address", "floating_ip_address"),
            ("floating_network_id", "floating_network_id"),
            ("router_id", "router_id"),
            ("status", "status"),
            ("name", "name"),
        ],
    );
    if rule.resource == ResourceType::FloatingIp {
        // `port_id: null` means "not associated" and is billing-relevant, so keep the null.
        if let Some(port) = fields.value("port_id") {
            attributes.insert("port_id".to_owned(), port.clone());
        }
    }
    super::dating_attributes(&fields, &mut attributes, &["created_at"])?;
    if let Some(gateway) = fields.object("external_gateway_info") {
        gateway.copy_into(&mut attributes, &[("network_id", "external_network_id")]);
    }
    Ok(Fact {
        resource_type: rule.resource,
        resource_id,
        project_id: fields
            .text("project_id")
            .or_else(|| fields.text("tenant_id")),
        user_id: None,
        kind: rule.kind,
        effective_at,
        time_source,
        origin: Origin::Notification,
        event_type: n.event_type.to_owned(),
        attributes,
    })
}
