//! Volumes, snapshots, floating IPs, routers and load balancers: what a complete listing says,
//! compared with the store.
//!
//! - listed, billable and not in the store (or not present there): created at its
//!   `created_at`, exact;
//! - listed as gone (octavia keeps deleted load balancers as `DELETED` for a while): deleted
//!   at its `updated_at`, exact;
//! - listed with another size or type than the store's: changed between the store's last fact
//!   (or the previous listing) and the resource's `updated_at` — an estimate, dated so that the
//!   smaller size bills the longer;
//! - in the store but not in a complete listing: deleted, an estimate between the store's last
//!   fact (or the previous listing, which still showed it) and this listing, narrowed to the
//!   gaps inside that window (a deletion outside a gap would have been heard), dated at the
//!   earliest possible time: time the resource may not have existed is never billed. Neutron,
//!   cinder and octavia cannot list deleted resources, so no API dates these deletions.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use steward_cloud::inventory::{FloatingIp, LoadBalancer, Router, Snapshot, Volume};

use super::{Planned, estimate_attributes, instant};
use crate::facts::{Fact, FactKind, Origin, ResourceType, TimeSource};
use crate::time::Instant;

/// One listed resource, in the terms the facts use. Compact: its attributes are built only for
/// the facts written ([`Listed::attributes`]), not for the whole listing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Listed {
    pub resource_type: ResourceType,
    pub id: String,
    pub project_id: String,
    pub created_at: Instant,
    pub updated_at: Option<Instant>,
    /// The API's status word.
    pub status: String,
    /// Whether the status bills (not `creating`, `error`, `PENDING_CREATE`, …).
    pub billable: bool,
    /// Whether the listing shows it as deleted (octavia `DELETED`).
    pub gone: bool,
    /// Size in GiB (volumes, snapshots).
    pub size_gb: Option<u64>,
    /// The volume type's id (volumes; its name where the API gives only that).
    pub volume_type: Option<String>,
    /// The other attributes, as the notification normalisers name them.
    detail: Vec<(&'static str, String)>,
}

impl Listed {
    /// A cinder volume. Notifications carry the type's id, so the id is kept (the name where
    /// the API is older than 3.63 and gives only that).
    pub fn volume(v: Volume) -> Self {
        let status = v.status.to_ascii_lowercase();
        Self {
            resource_type: ResourceType::Volume,
            project_id: v.project_id,
            created_at: instant(v.created_at),
            updated_at: v.updated_at.map(instant),
            billable: !matches!(status.as_str(), "creating" | "error"),
            gone: false,
            size_gb: Some(v.size),
            volume_type: v.volume_type_id.or(v.volume_type),
            detail: vec![("status", v.status)],
            id: v.id,
            status,
        }
    }

    /// A cinder snapshot.
    pub fn snapshot(s: Snapshot) -> Self {
        let status = s.status.to_ascii_lowercase();
        Self {
            resource_type: ResourceType::Snapshot,
            project_id: s.project_id,
            created_at: instant(s.created_at),
            updated_at: None,
            billable: !matches!(status.as_str(), "creating" | "error"),
            gone: false,
            size_gb: Some(s.size),
            volume_type: None,
            detail: vec![("volume_id", s.volume_id), ("status", s.status)],
            id: s.id,
            status,
        }
    }

    /// A neutron floating IP (billed while allocated, whatever its status).
    pub fn floating_ip(f: FloatingIp) -> Self {
        Self {
            resource_type: ResourceType::FloatingIp,
            project_id: f.project_id,
            created_at: instant(f.created_at),
            updated_at: Some(instant(f.updated_at)),
            billable: true,
            gone: false,
            size_gb: None,
            volume_type: None,
            detail: vec![
                ("floating_ip_address", f.floating_ip_address),
                ("status", f.status.clone()),
            ],
            id: f.id,
            status: f.status,
        }
    }

    /// A neutron router.
    pub fn router(r: Router) -> Self {
        let mut detail = vec![("status", r.status.clone())];
        detail.extend(r.name.map(|n| ("name", n)));
        Self {
            resource_type: ResourceType::Router,
            project_id: r.project_id,
            created_at: instant(r.created_at),
            updated_at: None,
            billable: true,
            gone: false,
            size_gb: None,
            volume_type: None,
            detail,
            id: r.id,
            status: r.status,
        }
    }

    /// An octavia load balancer.
    pub fn load_balancer(lb: LoadBalancer) -> Self {
        let status = lb.provisioning_status.to_ascii_uppercase();
        let detail = [
            ("name", lb.name),
            ("provider", lb.provider),
            ("flavor_id", lb.flavor_id),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
        Self {
            resource_type: ResourceType::LoadBalancer,
            project_id: lb.project_id,
            created_at: instant(lb.created_at),
            updated_at: lb.updated_at.map(instant),
            billable: !matches!(status.as_str(), "PENDING_CREATE" | "ERROR" | "DELETED"),
            gone: status == "DELETED",
            size_gb: None,
            volume_type: None,
            detail,
            id: lb.id,
            status,
        }
    }

    /// The attributes a fact about it carries.
    pub fn attributes(&self) -> BTreeMap<String, Value> {
        let mut attributes: BTreeMap<String, Value> = self
            .detail
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        if let Some(size) = self.size_gb {
            attributes.insert("size_gb".to_owned(), json!(size));
        }
        if let Some(t) = &self.volume_type {
            attributes.insert("volume_type".to_owned(), json!(t));
        }
        attributes.insert("created_at".to_owned(), json!(self.created_at.to_rfc3339()));
        attributes
    }

    fn fact(&self, kind: FactKind, at: Instant, attributes: BTreeMap<String, Value>) -> Fact {
        Fact {
            resource_type: self.resource_type,
            resource_id: self.id.clone(),
            project_id: Some(self.project_id.clone()),
            user_id: None,
            kind,
            effective_at: at,
            time_source: TimeSource::Payload,
            origin: Origin::Reconciled,
            event_type: format!(
                "reconcile.{}.{}",
                self.resource_type.as_str(),
                kind.as_str()
            ),
            attributes,
        }
    }

    /// The creation the listing dates.
    pub fn created(&self) -> Planned {
        Planned::new(
            self.fact(FactKind::Created, self.created_at, self.attributes()),
            format!("listed ({}), created then", self.status),
        )
    }

    /// The deletion of a resource listed as gone, at its last update.
    pub fn deleted(&self) -> Planned {
        let at = self.updated_at.unwrap_or(self.created_at);
        Planned::new(
            self.fact(FactKind::Deleted, at, BTreeMap::new()),
            format!("listed as {}, deleted then", self.status),
        )
    }

    /// A change of size (`Resized`) or type (`Retyped`) the store did not hear, between
    /// `not_before` and the resource's last update (or `listed_at`).
    pub fn changed(
        &self,
        kind: FactKind,
        not_before: Instant,
        listed_at: Instant,
        grew: bool,
        why: String,
    ) -> Planned {
        let not_after = self
            .updated_at
            .filter(|u| *u >= not_before)
            .unwrap_or(listed_at)
            .max(not_before);
        let at = if grew { not_after } else { not_before };
        let mut attributes = self.attributes();
        attributes.extend(estimate_attributes(not_before, not_after));
        let mut fact = self.fact(kind, at, attributes);
        fact.origin = Origin::Estimated;
        fact.time_source = TimeSource::Envelope;
        Planned::new(fact, why)
    }
}

/// The deletion of a stored resource that a complete listing no longer shows; see the module
/// docs for the bounds.
pub(crate) fn vanished(
    resource_type: ResourceType,
    id: &str,
    project_id: Option<String>,
    not_before: Instant,
    not_after: Instant,
    why: String,
) -> Planned {
    Planned::new(
        Fact {
            resource_type,
            resource_id: id.to_owned(),
            project_id,
            user_id: None,
            kind: FactKind::Deleted,
            effective_at: not_before,
            time_source: TimeSource::Envelope,
            origin: Origin::Estimated,
            event_type: format!("reconcile.{}.vanished", resource_type.as_str()),
            attributes: estimate_attributes(not_before, not_after),
        },
        why,
    )
}

/// `[lo, hi]` narrowed to the part the gaps cover, when they cover any of it.
pub(crate) fn narrow_to_gaps(
    lo: Instant,
    hi: Instant,
    gaps: &[(Instant, Instant)],
) -> (Instant, Instant) {
    let overlaps: Vec<(Instant, Instant)> = gaps
        .iter()
        .map(|(s, e)| ((*s).max(lo), (*e).min(hi)))
        .filter(|(s, e)| s <= e)
        .collect();
    match (
        overlaps.iter().map(|o| o.0).min(),
        overlaps.iter().map(|o| o.1).max(),
    ) {
        (Some(s), Some(e)) => (s, e),
        _ => (lo, hi),
    }
}
