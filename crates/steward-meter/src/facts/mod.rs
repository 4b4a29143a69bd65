//! Facts: what a notification says about a billable resource, normalised.
//!
//! A [`Fact`] is one state transition or observation of one resource ("instance X was created
//! at T with flavor F", "volume Y was resized to 200 GiB at T"). Facts are what the usage engine
//! builds timelines from; raw records stay the evidence behind them.
//!
//! Invariants:
//! - the owner (`project_id`) comes from the resource's own fields in the payload, never from the
//!   request context (`_context_*`), which names the *caller*;
//! - the effective time comes from the payload when the payload dates the transition, otherwise
//!   from the envelope timestamp, and [`TimeSource`] says which;
//! - the [`Fact::semantic_key`] is `(resource, kind, effective time)`, so the same transition that
//!   arrives twice under different message ids (nova legacy + versioned, audit replays,
//!   Ceilometer events, API backfill) is stored once. The time is keyed at whole seconds: services
//!   store second precision in their databases, while the formats differ in the fraction
//!   (`.000000` in legacy payloads, none in versioned ones). Of the copies, the store keeps the
//!   one with the lowest [`CopyRank`], whatever order they arrive in.
//! - an event type that carries no billing meaning yields no facts (its raw record is still kept);
//!   a billing event whose payload lacks the resource id or has an unreadable time is an error,
//!   which the ingest quarantines.

mod ceilometer;
mod cinder;
mod glance;
mod neutron;
mod nova;
mod octavia;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::time::{Instant, parse_timestamp_value};

pub use ceilometer::{SampleView, event_facts, sample_facts};

/// The kinds of billable resources Steward tracks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResourceType {
    /// A nova server.
    Instance,
    /// A cinder volume.
    Volume,
    /// A cinder snapshot.
    Snapshot,
    /// A cinder backup.
    Backup,
    /// A glance image.
    Image,
    /// A neutron floating IP.
    FloatingIp,
    /// A neutron router.
    Router,
    /// An octavia load balancer.
    LoadBalancer,
}

impl ResourceType {
    /// Every resource type.
    pub const ALL: [Self; 8] = [
        Self::Instance,
        Self::Volume,
        Self::Snapshot,
        Self::Backup,
        Self::Image,
        Self::FloatingIp,
        Self::Router,
        Self::LoadBalancer,
    ];

    /// Parses [`ResourceType::as_str`] back.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The stable name used in the store and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Instance => "instance",
            Self::Volume => "volume",
            Self::Snapshot => "snapshot",
            Self::Backup => "backup",
            Self::Image => "image",
            Self::FloatingIp => "floating_ip",
            Self::Router => "router",
            Self::LoadBalancer => "load_balancer",
        }
    }
}

/// What happened to the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FactKind {
    /// The resource came into existence (billing may start).
    Created,
    /// The resource is gone (billing ends).
    Deleted,
    /// Size or flavor changed (new attributes from then on).
    Resized,
    /// Volume type changed.
    Retyped,
    /// Instance powered off.
    Stopped,
    /// Instance powered on.
    Started,
    /// Instance suspended.
    Suspended,
    /// Instance resumed.
    Resumed,
    /// Instance paused.
    Paused,
    /// Instance unpaused.
    Unpaused,
    /// Instance shelved: powered off, still on its host until the offload.
    Shelved,
    /// Instance shelved and offloaded from its host.
    ShelvedOffloaded,
    /// Instance unshelved.
    Unshelved,
    /// Instance rebuilt with a new image.
    Rebuilt,
    /// A resize reverted: the previous flavor is back.
    ResizeReverted,
    /// Instance booted into its rescue image.
    Rescued,
    /// Instance left rescue mode.
    Unrescued,
    /// Instance soft-deleted: gone for its owner, reclaimable until nova reclaims it.
    SoftDeleted,
    /// A soft-deleted instance restored.
    Restored,
    /// A build failed before the instance ever ran.
    CreateFailed,
    /// Volume attached to a server.
    Attached,
    /// Volume detached from a server.
    Detached,
    /// Ownership moved to another project.
    Transferred,
    /// Image data stored.
    Uploaded,
    /// Image became active.
    Activated,
    /// Metadata or association changed.
    Updated,
    /// A periodic audit says the resource existed during a period.
    Exists,
    /// A Ceilometer sample measured the resource.
    Measured,
}

impl FactKind {
    /// Every fact kind.
    pub const ALL: [Self; 28] = {
        use FactKind as K;
        [
            K::Created,
            K::Deleted,
            K::Resized,
            K::Retyped,
            K::Stopped,
            K::Started,
            K::Suspended,
            K::Resumed,
            K::Paused,
            K::Unpaused,
            K::Shelved,
            K::ShelvedOffloaded,
            K::Unshelved,
            K::Rebuilt,
            K::ResizeReverted,
            K::Rescued,
            K::Unrescued,
            K::SoftDeleted,
            K::Restored,
            K::CreateFailed,
            K::Attached,
            K::Detached,
            K::Transferred,
            K::Uploaded,
            K::Activated,
            K::Updated,
            K::Exists,
            K::Measured,
        ]
    };

    /// Parses [`FactKind::as_str`] back.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The stable name used in the store and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Deleted => "deleted",
            Self::Resized => "resized",
            Self::Retyped => "retyped",
            Self::Stopped => "stopped",
            Self::Started => "started",
            Self::Suspended => "suspended",
            Self::Resumed => "resumed",
            Self::Paused => "paused",
            Self::Unpaused => "unpaused",
            Self::Shelved => "shelved",
            Self::ShelvedOffloaded => "shelved_offloaded",
            Self::Unshelved => "unshelved",
            Self::Rebuilt => "rebuilt",
            Self::ResizeReverted => "resize_reverted",
            Self::Rescued => "rescued",
            Self::Unrescued => "unrescued",
            Self::SoftDeleted => "soft_deleted",
            Self::Restored => "restored",
            Self::CreateFailed => "create_failed",
            Self::Attached => "attached",
            Self::Detached => "detached",
            Self::Transferred => "transferred",
            Self::Uploaded => "uploaded",
            Self::Activated => "activated",
            Self::Updated => "updated",
            Self::Exists => "exists",
            Self::Measured => "measured",
        }
    }
}

/// Where the effective time of a fact came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeSource {
    /// A time field of the payload (`launched_at`, `deleted_at`, `created_at`, …).
    Payload,
    /// The envelope's emission timestamp, because the payload does not date the transition.
    Envelope,
}

impl TimeSource {
    /// The stable name used in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Payload => "payload",
            Self::Envelope => "envelope",
        }
    }
}

/// Which path a fact came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// An oslo.messaging notification from RabbitMQ.
    Notification,
    /// A Ceilometer HTTP-publisher event or sample.
    Ceilometer,
    /// Read from the OpenStack APIs by the reconciler, at a time the API states exactly
    /// (nova's `launched_at`/`terminated_at`, an instance action's finish, a `created_at`).
    Reconciled,
    /// Inferred by the reconciler between two bounds (`estimate_not_before`,
    /// `estimate_not_after` attributes): a deletion or change no API dates, such as a volume
    /// that vanished between two listings. Any other fact of the same kind inside the bounds
    /// supersedes it.
    Estimated,
}

impl Origin {
    /// The stable name used in the store and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notification => "notification",
            Self::Ceilometer => "ceilometer",
            Self::Reconciled => "reconciled",
            Self::Estimated => "estimated",
        }
    }
}

/// One normalised statement about one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    /// What kind of resource.
    pub resource_type: ResourceType,
    /// The resource's id (uuid) as the service knows it.
    pub resource_id: String,
    /// Owner project from the payload; `None` when the source does not say (never the caller).
    pub project_id: Option<String>,
    /// Owner user from the payload, when given.
    pub user_id: Option<String>,
    /// What happened.
    pub kind: FactKind,
    /// When it happened (see [`TimeSource`]).
    pub effective_at: Instant,
    /// Whether `effective_at` came from the payload or the envelope.
    pub time_source: TimeSource,
    /// Which ingest path produced it.
    pub origin: Origin,
    /// The event type (or meter name) it was derived from.
    pub event_type: String,
    /// Billable attributes (flavor, sizes, type, status, …); keys sorted for canonical JSON.
    pub attributes: BTreeMap<String, Value>,
}

impl Fact {
    /// The semantic dedup key `(resource, kind, effective second)`; see the module docs.
    pub fn semantic_key(&self) -> String {
        let discriminator = match (self.kind, self.attributes.get("meter")) {
            (FactKind::Measured, Some(Value::String(meter))) => format!(":{meter}"),
            _ => String::new(),
        };
        format!(
            "{}/{}/{}{}/{}",
            self.resource_type.as_str(),
            self.resource_id,
            self.kind.as_str(),
            discriminator,
            self.effective_at.seconds()
        )
    }

    /// The attributes as canonical JSON (sorted keys, no whitespace).
    pub fn attributes_json(&self) -> String {
        serde_json::to_string(&self.attributes).unwrap_or_else(|_| "{}".to_owned())
    }

    /// This fact's rank among the copies of one transition ([`CopyRank`]).
    pub fn copy_rank(&self) -> CopyRank {
        CopyRank::new(
            self.time_source.as_str(),
            self.project_id.as_deref(),
            self.origin.as_str(),
            self.effective_at.micros(),
            &self.event_type,
            &self.attributes_json(),
            self.user_id.as_deref(),
        )
    }
}

/// Which of several copies of one transition (one semantic key: nova's legacy and versioned
/// notification, a Ceilometer event, a replay) the store keeps, so that what is stored, and
/// every report, is a function of the set of inputs and not of their arrival order. The
/// lowest rank wins: a payload-dated copy before an envelope-dated one, one that names the
/// owner before one that does not, a notification before a Ceilometer copy before a reconciled
/// one before an estimate, then the earliest
/// time, and finally the event type, attributes and user as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CopyRank {
    envelope_dated: bool,
    ownerless: bool,
    origin: u8,
    effective_at: i64,
    event_type: String,
    attributes: String,
    project_id: Option<String>,
    user_id: Option<String>,
}

impl CopyRank {
    /// The rank of a copy from its stored column values.
    pub fn new(
        time_source: &str,
        project_id: Option<&str>,
        origin: &str,
        effective_at: i64,
        event_type: &str,
        attributes: &str,
        user_id: Option<&str>,
    ) -> Self {
        Self {
            envelope_dated: time_source != TimeSource::Payload.as_str(),
            ownerless: project_id.is_none(),
            origin: match origin {
                "notification" => 0,
                "ceilometer" => 1,
                "reconciled" => 2,
                "estimated" => 3,
                _ => 4,
            },
            effective_at,
            event_type: event_type.to_owned(),
            attributes: attributes.to_owned(),
            project_id: project_id.map(str::to_owned),
            user_id: user_id.map(str::to_owned),
        }
    }
}

/// Why a billing notification could not be turned into facts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FactError {
    /// The payload is not a JSON object where the event type requires one.
    #[error("{event_type}: payload is not an object")]
    PayloadNotObject {
        /// The event type.
        event_type: String,
    },
    /// A required field is missing or empty.
    #[error("{event_type}: payload has no {field}")]
    MissingField {
        /// The event type.
        event_type: String,
        /// The path of the missing field.
        field: String,
    },
    /// A time field holds something that is not a timestamp.
    #[error("{event_type}: field {field} holds an unrecognised timestamp {value:?}")]
    BadTimestamp {
        /// The event type.
        event_type: String,
        /// The field path.
        field: String,
        /// The offending text.
        value: String,
    },
    /// Neither the payload nor the envelope dates the event.
    #[error("{event_type}: no time in the payload and no envelope timestamp")]
    NoTime {
        /// The event type.
        event_type: String,
    },
}

/// A decoded notification, as the fact normalisers see it.
#[derive(Debug, Clone, Copy)]
pub struct Notification<'a> {
    /// The envelope `event_type`.
    pub event_type: &'a str,
    /// The envelope `priority` (upper case), when present.
    pub priority: Option<&'a str>,
    /// The payload (any JSON value).
    pub payload: &'a Value,
    /// The envelope timestamp, when present.
    pub emitted_at: Option<Instant>,
}

/// Turns one oslo notification into facts. Unknown event types give an empty list.
pub fn notification_facts(n: &Notification<'_>) -> Result<Vec<Fact>, FactError> {
    let origin = Origin::Notification;
    // Error-priority notifications describe failures (glance's string payloads, nova's
    // `*.error`); they never change what is billed, except a failed build, which says that
    // the instance never ran.
    if n.priority.is_some_and(|p| p.eq_ignore_ascii_case("error"))
        && !nova::is_create_error(n.event_type)
    {
        return Ok(Vec::new());
    }
    if let Some(rule) = nova::legacy_rule(n.event_type) {
        return nova::legacy_fact(n, rule, origin).map(|f| vec![f]);
    }
    if let Some(rule) = nova::versioned_rule(n.event_type) {
        return nova::versioned_fact(n, rule).map(|f| vec![f]);
    }
    if let Some(rule) = cinder::rule(n.event_type) {
        return cinder::fact(n, rule, origin).map(|f| vec![f]);
    }
    if let Some(rule) = glance::rule(n.event_type) {
        return glance::fact(n, rule, origin).map(|f| vec![f]);
    }
    if let Some(rule) = neutron::rule(n.event_type) {
        return neutron::fact(n, rule).map(|f| vec![f]);
    }
    if let Some(kind) = octavia::rule(n.event_type) {
        return octavia::fact(n, kind, origin).map(|f| vec![f]);
    }
    Ok(Vec::new())
}

/// Read access to one JSON object of a payload, with errors that name the event and field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    event_type: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(event_type: &'a str, value: &'a Value) -> Result<Self, FactError> {
        match value {
            Value::Object(map) => Ok(Self { event_type, map }),
            _ => Err(FactError::PayloadNotObject {
                event_type: event_type.to_owned(),
            }),
        }
    }

    /// A nested object, if present.
    pub(crate) fn object(&self, key: &str) -> Option<Fields<'a>> {
        match self.map.get(key) {
            Some(Value::Object(map)) => Some(Fields {
                event_type: self.event_type,
                map,
            }),
            _ => None,
        }
    }

    pub(crate) fn value(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    /// A non-empty string (numbers are rendered as text: ids are sometimes ints).
    pub(crate) fn text(&self, key: &str) -> Option<String> {
        match self.map.get(key)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The first non-empty string among `keys`, or a [`FactError::MissingField`] naming them.
    pub(crate) fn required_text(&self, keys: &[&str]) -> Result<String, FactError> {
        keys.iter()
            .find_map(|k| self.text(k))
            .ok_or_else(|| FactError::MissingField {
                event_type: self.event_type.to_owned(),
                field: keys.join(" or "),
            })
    }

    /// The first present time among `keys` (absent values are skipped, bad ones are errors).
    pub(crate) fn first_time(&self, keys: &[&str]) -> Result<Option<Instant>, FactError> {
        for key in keys {
            if let Some(value) = self.map.get(*key) {
                match parse_timestamp_value(value) {
                    Ok(Some(t)) => return Ok(Some(t)),
                    Ok(None) => {}
                    Err(_) => {
                        return Err(FactError::BadTimestamp {
                            event_type: self.event_type.to_owned(),
                            field: (*key).to_owned(),
                            value: value.to_string(),
                        });
                    }
                }
            }
        }
        Ok(None)
    }

    /// Copies the listed fields that are present and not null into `out`, renamed.
    pub(crate) fn copy_into(&self, out: &mut BTreeMap<String, Value>, pairs: &[(&str, &str)]) {
        for (from, to) in pairs {
            match self.map.get(*from) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if s.is_empty() => {}
                Some(v) => {
                    out.insert((*to).to_owned(), v.clone());
                }
            }
        }
    }
}

/// Picks the effective time: the first payload time in `keys`, else the envelope timestamp.
pub(crate) fn effective_time(
    fields: &Fields<'_>,
    keys: &[&str],
    emitted_at: Option<Instant>,
) -> Result<(Instant, TimeSource), FactError> {
    if let Some(t) = fields.first_time(keys)? {
        return Ok((t, TimeSource::Payload));
    }
    emitted_at
        .map(|t| (t, TimeSource::Envelope))
        .ok_or_else(|| FactError::NoTime {
            event_type: fields.event_type.to_owned(),
        })
}

/// Copies payload times that date the resource (`launched_at`, `created_at`) as RFC 3339
/// attributes, so the usage engine can date a resource whose creation it never saw.
pub(crate) fn dating_attributes(
    fields: &Fields<'_>,
    out: &mut BTreeMap<String, Value>,
    keys: &[&str],
) -> Result<(), FactError> {
    for key in keys {
        if let Some(t) = fields.first_time(&[key])? {
            out.insert((*key).to_owned(), Value::String(t.to_rfc3339()));
        }
    }
    Ok(())
}

/// Audit-period bounds as RFC 3339 attributes (for `exists` facts).
pub(crate) fn audit_period_attributes(
    fields: &Fields<'_>,
    out: &mut BTreeMap<String, Value>,
) -> Result<(), FactError> {
    for key in ["audit_period_beginning", "audit_period_ending"] {
        if let Some(t) = fields.first_time(&[key])? {
            out.insert(key.to_owned(), Value::String(t.to_rfc3339()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
