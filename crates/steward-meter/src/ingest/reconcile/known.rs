//! What the store knows about each resource, compacted: the state at the end of its timeline
//! and the kinds and times of its facts. Built by streaming the store one resource at a time,
//! so memory holds these summaries, never all facts.

use std::collections::HashMap;

use futures_lite::StreamExt;
use serde_json::Value;

use crate::facts::{FactKind, ResourceType};
use crate::store::{Store, StoreError};
use crate::time::Instant;
use crate::usage::timeline::{Presence, Status, build};

/// One resource as the store sees it now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Known {
    /// Presence at the end of the timeline.
    pub presence: Presence,
    /// Run state at the end of the timeline (instances).
    pub status: Status,
    /// Flavor name in force at the end (instances; shared among resources).
    pub flavor_name: Option<std::sync::Arc<str>>,
    /// Size in force at the end (volumes, snapshots).
    pub size_gb: Option<u64>,
    /// Volume type in force at the end (volumes; shared among resources).
    pub volume_type: Option<std::sync::Arc<str>>,
    /// The latest fact's time.
    pub last_fact_at: Option<Instant>,
    /// Every fact's kind and time (µs), for the idempotence check.
    pub facts: Vec<(FactKind, i64)>,
}

impl Known {
    /// Whether a fact of `kind` lies within `slack_micros` of `at`.
    pub fn has_near(&self, kind: FactKind, at: Instant, slack_micros: i64) -> bool {
        self.facts
            .iter()
            .any(|(k, t)| *k == kind && (t - at.micros()).abs() <= slack_micros)
    }
}

/// The summaries, by resource type and id.
pub(crate) type KnownMap = HashMap<(ResourceType, String), Known>;

/// Reads every resource of the `types` the reconciler compares into summaries.
pub(crate) async fn known(
    store: &dyn Store,
    types: &[ResourceType],
) -> Result<KnownMap, StoreError> {
    let mut map = KnownMap::new();
    // A cloud has few flavors and volume types: each name is held once.
    let mut names: std::collections::HashSet<std::sync::Arc<str>> = Default::default();
    let mut intern = |name: Option<&str>| {
        name.map(|n| match names.get(n) {
            Some(shared) => shared.clone(),
            None => {
                let shared: std::sync::Arc<str> = n.into();
                names.insert(shared.clone());
                shared
            }
        })
    };
    let mut stream = store.resources_until(Instant(i64::MAX));
    while let Some(resource) = stream.next().await {
        let Some((resource_type, id, facts)) = crate::report::usage_facts(resource?) else {
            continue;
        };
        if !types.contains(&resource_type) {
            continue;
        }
        let timeline = build(resource_type, &id, &facts);
        let Some(last) = timeline.segments.last() else {
            continue;
        };
        let known = Known {
            presence: last.presence,
            status: last.status,
            flavor_name: intern(last.attributes.get("flavor_name").and_then(Value::as_str)),
            size_gb: last.attributes.get("size_gb").and_then(Value::as_u64),
            volume_type: intern(last.attributes.get("volume_type").and_then(Value::as_str)),
            last_fact_at: facts.iter().map(|f| f.effective_at).max(),
            facts: facts
                .iter()
                .map(|f| (f.kind, f.effective_at.micros()))
                .collect(),
        };
        map.insert((resource_type, id), known);
    }
    Ok(map)
}
