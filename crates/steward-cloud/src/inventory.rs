//! What the OpenStack APIs say exists: narrow records of servers, instance actions, volumes,
//! volume types, snapshots, floating IPs, routers and load balancers, read from the JSON the
//! APIs answer (nova `/servers/detail`, `/servers/{id}/os-instance-actions[/{request_id}]`,
//! cinder `/volumes/detail`, `/types`, `/snapshots/detail`, neutron `/floatingips`, `/routers`,
//! octavia `/lbaas/loadbalancers`). The reconciler compares these with the timelines.
//!
//! Invariants:
//! - only what billing needs is kept; unknown fields are ignored, so API additions never break
//!   a listing;
//! - every time is UTC: nova and cinder write naive times (`2026-12-02T03:29:24.000000`) that
//!   are UTC, others write `Z` or an offset; all three forms are read, to the microsecond;
//! - an item that lacks a field billing needs, or holds an unreadable time, is an error naming the
//!   listing, the item's index and id, and the field; the listing is not silently shortened.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A listing that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{listing}: {detail}")]
pub struct InventoryError {
    /// Which listing (`servers`, `volumes`, …), with the item's index and id when one failed.
    pub listing: String,
    /// What was wrong.
    pub detail: String,
}

/// A UTC time from any of the forms the APIs write.
pub fn parse_api_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|t| t.and_utc())
}

fn time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(d)?;
    parse_api_time(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("unreadable time {text:?}")))
}

fn optional_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(text) if text.trim().is_empty() => Ok(None),
        Some(text) => parse_api_time(&text)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("unreadable time {text:?}"))),
    }
}

/// A nova flavor with its extra specs (microversion 2.61 and later).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Flavor {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// vCPUs.
    pub vcpus: u32,
    /// RAM in MiB.
    pub ram: u64,
    /// Root disk in GiB.
    pub disk: u64,
    /// Whether every project may use it.
    #[serde(rename = "os-flavor-access:is_public", default = "yes")]
    pub is_public: bool,
    /// Extra specs (`hw_rng:allowed`, …), values as nova keeps them (text).
    #[serde(default)]
    pub extra_specs: std::collections::BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// The flavor embedded in a server (microversion 2.47 and later).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ServerFlavor {
    /// The flavor's name when the server got it.
    pub original_name: String,
    /// vCPUs.
    pub vcpus: u32,
    /// RAM in MiB.
    pub ram: u64,
    /// Root disk in GiB.
    pub disk: u64,
    /// Ephemeral disk in GiB.
    #[serde(default)]
    pub ephemeral: u64,
}

/// A nova server, live or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Server {
    /// Server id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Owner project.
    pub tenant_id: String,
    /// Owner user.
    #[serde(default)]
    pub user_id: Option<String>,
    /// API status (`ACTIVE`, `SHUTOFF`, `SHELVED_OFFLOADED`, `DELETED`, …).
    pub status: String,
    /// `vm_state` (`active`, `stopped`, `shelved_offloaded`, `soft-delete`, `deleted`, …).
    #[serde(rename = "OS-EXT-STS:vm_state", default)]
    pub vm_state: Option<String>,
    /// Its current flavor.
    pub flavor: ServerFlavor,
    /// When the create request was accepted.
    #[serde(deserialize_with = "time")]
    pub created: DateTime<Utc>,
    /// When the row last changed.
    #[serde(deserialize_with = "time")]
    pub updated: DateTime<Utc>,
    /// The last (re)launch: reset by resize, revert, rebuild, rescue and unshelve.
    #[serde(
        rename = "OS-SRV-USG:launched_at",
        deserialize_with = "optional_time",
        default
    )]
    pub launched_at: Option<DateTime<Utc>>,
    /// When it was terminated (deleted servers).
    #[serde(
        rename = "OS-SRV-USG:terminated_at",
        deserialize_with = "optional_time",
        default
    )]
    pub terminated_at: Option<DateTime<Utc>>,
}

/// One step of an instance action (`compute__do_build_and_run_instance`, `compute_stop_instance`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ActionEvent {
    /// The step.
    pub event: String,
    /// When it started.
    #[serde(deserialize_with = "optional_time", default)]
    pub start_time: Option<DateTime<Utc>>,
    /// When it finished (`null` while running).
    #[serde(deserialize_with = "optional_time", default)]
    pub finish_time: Option<DateTime<Utc>>,
    /// `Success` or `Error`.
    #[serde(default)]
    pub result: Option<String>,
}

/// One instance action (`create`, `resize`, `confirmResize`, `stop`, `shelve`, `delete`, …).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct InstanceAction {
    /// The action.
    pub action: String,
    /// The server.
    pub instance_uuid: String,
    /// The request that caused it.
    pub request_id: String,
    /// When the request arrived.
    #[serde(deserialize_with = "time")]
    pub start_time: DateTime<Utc>,
    /// The steps (only in the per-request detail, microversion 2.51+ for non-admins).
    #[serde(default)]
    pub events: Vec<ActionEvent>,
}

impl InstanceAction {
    /// When the action was done: its last step's finish, if any step finished.
    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.events.iter().filter_map(|e| e.finish_time).max()
    }
}

/// A cinder volume.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Volume {
    /// Volume id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Owner project (admin listings).
    #[serde(rename = "os-vol-tenant-attr:tenant_id")]
    pub project_id: String,
    /// Size in GiB.
    pub size: u64,
    /// The volume type's **name**.
    #[serde(default)]
    pub volume_type: Option<String>,
    /// The volume type's id (microversion 3.63+), the id notifications carry.
    #[serde(default)]
    pub volume_type_id: Option<String>,
    /// `available`, `in-use`, `deleting`, …
    pub status: String,
    /// When it was created.
    #[serde(deserialize_with = "time")]
    pub created_at: DateTime<Utc>,
    /// When it last changed (an extend, a retype, an attachment, a status change).
    #[serde(deserialize_with = "optional_time", default)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// A cinder volume type.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct VolumeType {
    /// Type id (what notifications carry).
    pub id: String,
    /// Type name (what products should read).
    pub name: String,
}

/// A cinder snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Snapshot {
    /// Snapshot id.
    pub id: String,
    /// The volume it was taken of.
    pub volume_id: String,
    /// Owner project (admin listings).
    #[serde(rename = "os-extended-snapshot-attributes:project_id")]
    pub project_id: String,
    /// Size in GiB.
    pub size: u64,
    /// `available`, `deleting`, …
    pub status: String,
    /// When it was created.
    #[serde(deserialize_with = "time")]
    pub created_at: DateTime<Utc>,
}

/// A neutron floating IP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct FloatingIp {
    /// Floating IP id.
    pub id: String,
    /// Owner project.
    pub project_id: String,
    /// The address.
    pub floating_ip_address: String,
    /// The port it is associated with, if any.
    #[serde(default)]
    pub port_id: Option<String>,
    /// `ACTIVE`, `DOWN`, `ERROR`.
    pub status: String,
    /// When it was created.
    #[serde(deserialize_with = "time")]
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    #[serde(deserialize_with = "time")]
    pub updated_at: DateTime<Utc>,
}

/// A neutron router.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Router {
    /// Router id.
    pub id: String,
    /// Owner project.
    pub project_id: String,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// `ACTIVE`, …
    pub status: String,
    /// When it was created.
    #[serde(deserialize_with = "time")]
    pub created_at: DateTime<Utc>,
}

/// An octavia load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct LoadBalancer {
    /// Load balancer id.
    pub id: String,
    /// Owner project.
    pub project_id: String,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// `ACTIVE`, `PENDING_CREATE`, `DELETED`, `ERROR`, …
    pub provisioning_status: String,
    /// The provider (`amphora`, `ovn`).
    #[serde(default)]
    pub provider: Option<String>,
    /// Its flavor, if any.
    #[serde(default)]
    pub flavor_id: Option<String>,
    /// When the create request was accepted.
    #[serde(deserialize_with = "time")]
    pub created_at: DateTime<Utc>,
    /// When it last changed (for a new one: when it became ACTIVE).
    #[serde(deserialize_with = "optional_time", default)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// Reads the list under `key` of an API answer into records; see the module invariants.
pub fn parse_list<T: DeserializeOwned>(body: &Value, key: &str) -> Result<Vec<T>, InventoryError> {
    let items = body
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| InventoryError {
            listing: key.to_owned(),
            detail: format!("the answer has no list {key:?}"),
        })?;
    parse_items(items, key)
}

/// Reads the items of listing `key` (already taken out of the answer) into records.
pub fn parse_items<T: DeserializeOwned>(
    items: &[Value],
    key: &str,
) -> Result<Vec<T>, InventoryError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            T::deserialize(item).map_err(|e| {
                let id = item.get("id").and_then(Value::as_str).unwrap_or("?");
                InventoryError {
                    listing: format!("{key}[{i}] (id {id})"),
                    detail: e.to_string(),
                }
            })
        })
        .collect()
}

/// The instance actions of one server from `os-instance-actions` (the list) or one action with
/// its events from `os-instance-actions/{request_id}` (`instanceAction`).
pub fn parse_instance_actions(body: &Value) -> Result<Vec<InstanceAction>, InventoryError> {
    if let Some(one) = body.get("instanceAction") {
        return InstanceAction::deserialize(one)
            .map(|a| vec![a])
            .map_err(|e| InventoryError {
                listing: "instanceAction".to_owned(),
                detail: e.to_string(),
            });
    }
    parse_list(body, "instanceActions")
}

#[cfg(test)]
mod tests;
