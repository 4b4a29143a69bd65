//! Servers: nova's listing and instance actions, turned into the facts the notifications would
//! have given.
//!
//! Times, exactly as nova states them (whole seconds, its database's precision):
//! - creation at `launched_at` when no later action reset it (resize, revert, rebuild, rescue
//!   and unshelve overwrite it), else at the create action's last step; a server that never
//!   launched gets nothing (a failed build never bills);
//! - every other transition at its instance action's last step (`stop` → stopped at
//!   `compute_stop_instance`'s finish), only for actions whose every step succeeded;
//! - deletion at `terminated_at`.
//!
//! What nova does not date is estimated between bounds: an offload that shelving did in the
//! same action, or that the periodic task did later (neither leaves an action of its own), lies
//! between the shelve's finish and the next action (or the deletion, or the row's last update).
//!
//! Flavors: an instance action does not say which flavor a resize went to. The last flavor
//! change gets the server's current flavor; earlier ones in the same window get none (their
//! time keeps the previous flavor, or is unknown when the creation flavor is not known either),
//! and a creation followed by a flavor change is created without a flavor. This is a stated
//! limit: several resizes of one server inside one lost window are not billed per flavor.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use steward_cloud::inventory::{InstanceAction, Server};

use super::known::Known;
use super::{Planned, estimate_attributes, instant};
use crate::facts::{Fact, FactKind, Origin, ResourceType, TimeSource};
use crate::time::Instant;
use crate::usage::timeline::{Presence, Status};

/// Whether nova lists the server as deleted.
pub(crate) fn is_deleted(server: &Server) -> bool {
    server.status.eq_ignore_ascii_case("DELETED") || server.vm_state.as_deref() == Some("deleted")
}

/// The run state nova's `vm_state` stands for (`None`: it says nothing, e.g. `resized`).
fn api_status(server: &Server) -> Option<Status> {
    server.vm_state.as_deref().and_then(Status::from_vm_state)
}

/// Why the server's instance actions must be read, or `None` when the store agrees with nova
/// and nova has not changed it since `changed_since` (the previous listing, less the margin).
pub(crate) fn why_look(
    server: &Server,
    known: Option<&Known>,
    changed_since: Option<Instant>,
) -> Option<String> {
    server.launched_at?;
    let Some(known) = known else {
        return Some("not in the store".to_owned());
    };
    if !known.facts.iter().any(|(k, _)| *k == FactKind::Created) {
        // Its life before the first stored fact is unknown: nova dates it.
        return Some("its creation is not in the store".to_owned());
    }
    if is_deleted(server) {
        if known.presence != Presence::Absent {
            return Some(format!(
                "nova: deleted; store: {}",
                presence_name(known.presence)
            ));
        }
    } else {
        if !matches!(known.presence, Presence::Present) {
            return Some(format!(
                "nova lists it; store: {}",
                presence_name(known.presence)
            ));
        }
        if let Some(status) = api_status(server)
            && status != known.status
        {
            return Some(format!(
                "nova: {}; store: {}",
                status.as_str(),
                known.status.as_str()
            ));
        }
        if known.flavor_name.as_deref() != Some(server.flavor.original_name.as_str()) {
            return Some(format!(
                "nova: flavor {}; store: {}",
                server.flavor.original_name,
                known.flavor_name.as_deref().unwrap_or("no flavor")
            ));
        }
    }
    match changed_since {
        Some(since) if instant(server.updated) >= since => Some(format!(
            "nova changed it at {} (since the last listing, {since})",
            instant(server.updated)
        )),
        _ => None,
    }
}

fn presence_name(presence: Presence) -> &'static str {
    match presence {
        Presence::Unknown => "unknown",
        Presence::Undescribed => "undescribed",
        Presence::Present => "present",
        Presence::Absent => "absent",
    }
}

/// When an action was done: its last step's finish, if every step succeeded.
fn done_at(action: &InstanceAction) -> Option<Instant> {
    if action.events.is_empty()
        || action.events.iter().any(|e| {
            !e.result
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case("success"))
        })
    {
        return None;
    }
    action.finished_at().map(instant)
}

const FLAVOR_CHANGES: &[&str] = &["resize", "revertResize"];
const LAUNCH_RESETS: &[&str] = &["resize", "revertResize", "rebuild", "rescue", "unshelve"];

fn flavor_attributes(server: &Server) -> BTreeMap<String, Value> {
    let f = &server.flavor;
    BTreeMap::from([
        ("flavor_name".to_owned(), json!(f.original_name)),
        ("vcpus".to_owned(), json!(f.vcpus)),
        ("memory_mb".to_owned(), json!(f.ram)),
        ("root_gb".to_owned(), json!(f.disk)),
        ("ephemeral_gb".to_owned(), json!(f.ephemeral)),
    ])
}

/// The facts nova's records of one server state (see the module docs), in time order.
pub(crate) fn server_facts(server: &Server, actions: &[InstanceAction]) -> Vec<Planned> {
    let Some(launched_at) = server.launched_at.map(instant) else {
        return Vec::new();
    };
    let mut done: Vec<(&InstanceAction, Instant)> = actions
        .iter()
        .filter(|a| a.instance_uuid == server.id)
        .filter_map(|a| done_at(a).map(|t| (a, t)))
        .collect();
    done.sort_by(|(a, ta), (b, tb)| {
        (a.start_time, *ta, &a.request_id).cmp(&(b.start_time, *tb, &b.request_id))
    });
    let last_flavor_change = done
        .iter()
        .rposition(|(a, _)| FLAVOR_CHANGES.contains(&a.action.as_str()));
    let launch_reset = done
        .iter()
        .any(|(a, _)| LAUNCH_RESETS.contains(&a.action.as_str()));
    let fact = |kind, at: Instant, event: &str, attributes| Fact {
        resource_type: ResourceType::Instance,
        resource_id: server.id.clone(),
        project_id: Some(server.tenant_id.clone()),
        user_id: server.user_id.clone(),
        kind,
        effective_at: at,
        time_source: TimeSource::Payload,
        origin: Origin::Reconciled,
        event_type: format!("reconcile.instance.{event}"),
        attributes,
    };
    let mut planned = Vec::new();

    let created_at = if launch_reset {
        done.iter()
            .find(|(a, _)| a.action == "create")
            .map(|(_, t)| *t)
    } else {
        Some(launched_at)
    };
    if let Some(at) = created_at {
        let mut attributes = if last_flavor_change.is_none() {
            flavor_attributes(server)
        } else {
            BTreeMap::new()
        };
        attributes.insert("launched_at".to_owned(), json!(at.to_rfc3339()));
        attributes.insert(
            "created_at".to_owned(),
            json!(instant(server.created).to_rfc3339()),
        );
        planned.push(Planned::new(
            fact(FactKind::Created, at, "create", attributes),
            "nova launched it then",
        ));
    }

    let mut status = Status::Running;
    for (i, (action, at)) in done.iter().enumerate() {
        let at = *at;
        let name = action.action.as_str();
        let with_flavor = |kind| {
            let mut attributes = if Some(i) == last_flavor_change {
                flavor_attributes(server)
            } else {
                BTreeMap::new()
            };
            attributes.insert("launched_at".to_owned(), json!(at.to_rfc3339()));
            (kind, attributes)
        };
        let (kind, attributes) = match name {
            "stop" => (FactKind::Stopped, BTreeMap::new()),
            "start" => (FactKind::Started, BTreeMap::new()),
            // A hard reboot powers a stopped server on.
            "reboot" if status == Status::Stopped => (FactKind::Started, BTreeMap::new()),
            "pause" => (FactKind::Paused, BTreeMap::new()),
            "unpause" => (FactKind::Unpaused, BTreeMap::new()),
            "suspend" => (FactKind::Suspended, BTreeMap::new()),
            "resume" => (FactKind::Resumed, BTreeMap::new()),
            "rescue" => (FactKind::Rescued, BTreeMap::new()),
            "unrescue" => (FactKind::Unrescued, BTreeMap::new()),
            "rebuild" => {
                let mut attributes = BTreeMap::new();
                if status == Status::Stopped {
                    attributes.insert("state".to_owned(), json!("stopped"));
                }
                (FactKind::Rebuilt, attributes)
            }
            "resize" => with_flavor(FactKind::Resized),
            "revertResize" => with_flavor(FactKind::ResizeReverted),
            "shelve" => (FactKind::Shelved, BTreeMap::new()),
            "shelveOffload" => (FactKind::ShelvedOffloaded, BTreeMap::new()),
            "unshelve" => (FactKind::Unshelved, BTreeMap::new()),
            "restore" => (FactKind::Restored, BTreeMap::new()),
            "delete"
                if action
                    .events
                    .iter()
                    .any(|e| e.event.contains("soft_delete")) =>
            {
                (FactKind::SoftDeleted, BTreeMap::new())
            }
            _ => continue,
        };
        status = match kind {
            FactKind::Stopped => Status::Stopped,
            FactKind::Paused => Status::Paused,
            FactKind::Suspended => Status::Suspended,
            FactKind::Rescued => Status::Rescued,
            FactKind::Shelved => Status::Shelved,
            FactKind::ShelvedOffloaded => Status::ShelvedOffloaded,
            FactKind::SoftDeleted => Status::SoftDeleted,
            FactKind::Rebuilt => status,
            _ => Status::Running,
        };
        planned.push(Planned::new(
            fact(kind, at, name, attributes),
            format!("instance action {name} ({})", action.request_id),
        ));
        // Any later action bounds the offload, done or not (a delete of an offloaded
        // server records no steps).
        let next = actions
            .iter()
            .filter(|a| a.instance_uuid == server.id && a.start_time > action.start_time)
            .min_by_key(|a| a.start_time);
        if kind == FactKind::Shelved
            && let Some(offload) = offload(server, next, at)
        {
            let (origin, attributes, why) = offload;
            let mut f = fact(FactKind::ShelvedOffloaded, at, "shelve_offload", attributes);
            if origin == Origin::Estimated {
                f.origin = origin;
                f.time_source = TimeSource::Envelope;
            }
            planned.push(Planned::new(f, why));
            status = Status::ShelvedOffloaded;
        }
    }

    if is_deleted(server) {
        let at = server.terminated_at.unwrap_or(server.updated);
        planned.push(Planned::new(
            fact(
                FactKind::Deleted,
                instant(at),
                "delete",
                BTreeMap::from([("terminated_at".to_owned(), json!(instant(at).to_rfc3339()))]),
            ),
            "nova terminated it then",
        ));
    }
    planned
}

/// The offload after a shelve at `shelved_at` that no action records, if the server was
/// offloaded before its next action (or is now): exact when the bounds are under a second
/// apart, else an estimate dated at the shelve (the earliest it can have been).
fn offload(
    server: &Server,
    next: Option<&InstanceAction>,
    shelved_at: Instant,
) -> Option<(Origin, BTreeMap<String, Value>, String)> {
    let upper = match next {
        Some(next) if next.action == "shelveOffload" => return None,
        Some(next) => instant(next.start_time),
        None if server.vm_state.as_deref() == Some("shelved_offloaded") => instant(server.updated),
        None if is_deleted(server) => instant(server.terminated_at.unwrap_or(server.updated)),
        None => return None,
    };
    let upper = upper.max(shelved_at);
    if upper.micros() - shelved_at.micros() < 1_000_000 {
        return Some((
            Origin::Reconciled,
            BTreeMap::new(),
            "offloaded by the shelve itself".to_owned(),
        ));
    }
    Some((
        Origin::Estimated,
        estimate_attributes(shelved_at, upper),
        format!("offloaded between the shelve ({shelved_at}) and {upper}; no action dates it"),
    ))
}
