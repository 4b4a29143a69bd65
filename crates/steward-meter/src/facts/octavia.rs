//! Octavia load-balancer notifications.
//!
//! Octavia strips timestamps from its payload (reference §2.6), so facts use the envelope time
//! unless the API-style variant from octavia's docs (`id`, `created_at`) is sent. The
//! `event_type` is `octavia.loadbalancer.*`; the bare `loadbalancer.*` form is accepted too.

use std::collections::BTreeMap;

use super::{
    Fact, FactError, FactKind, Fields, Notification, Origin, ResourceType, effective_time,
};

pub(crate) fn rule(event_type: &str) -> Option<FactKind> {
    match event_type.strip_prefix("octavia.").unwrap_or(event_type) {
        "loadbalancer.create.end" => Some(FactKind::Created),
        "loadbalancer.update.end" => Some(FactKind::Updated),
        "loadbalancer.delete.end" => Some(FactKind::Deleted),
        _ => None,
    }
}

pub(crate) fn fact(
    n: &Notification<'_>,
    kind: FactKind,
    origin: Origin,
) -> Result<Fact, FactError> {
    let p = Fields::new(n.event_type, n.payload)?;
    let resource_id = p.required_text(&["loadbalancer_id", "id"])?;
    let times: &[&str] = match kind {
        FactKind::Created => &["created_at"],
        _ => &[],
    };
    let (effective_at, time_source) = effective_time(&p, times, n.emitted_at)?;
    let mut attributes = BTreeMap::new();
    p.copy_into(
        &mut attributes,
        &[
            ("name", "name"),
            ("flavor", "flavor"),
            ("flavor_id", "flavor_id"),
            ("availability_zone", "availability_zone"),
            ("vip_address", "vip_address"),
            ("provider", "provider"),
        ],
    );
    super::dating_attributes(&p, &mut attributes, &["created_at"])?;
    Ok(Fact {
        resource_type: ResourceType::LoadBalancer,
        resource_id,
        project_id: p.text("project_id").or_else(|| p.text("tenant_id")),
        user_id: None,
        kind,
        effective_at,
        time_source,
        origin,
        event_type: n.event_type.to_owned(),
        attributes,
    })
}
