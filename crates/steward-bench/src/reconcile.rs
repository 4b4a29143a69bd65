//! `steward-bench reconcile`: one reconciliation of a large cloud against a large store.
//!
//! The store holds `servers` servers and `volumes` volumes as notifications left them; the
//! cloud answers in pages of 1000 JSON items (nova's and cinder's shapes, generated page by page
//! and parsed by the same `parse_items` as `steward_cloud::Cloud`), with 1 % drift of each kind:
//! servers stopped while the store heard nothing (their instance actions are read), volumes
//! extended, volumes gone, volumes the store never heard of. The run is a child process, so its
//! peak RSS is the reconciliation's alone; HTTP transport is not part of it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context as _;
use serde_json::{Value, json};
use steward_cloud::CloudError;
use steward_cloud::inventory::{
    FloatingIp, InstanceAction, LoadBalancer, Router, Server, Snapshot, Volume, VolumeType,
    parse_items,
};
use steward_meter::facts::{Fact, FactKind, Origin, ResourceType, TimeSource};
use steward_meter::ingest::reconcile::{Api, ReconcileOptions, reconcile};
use steward_meter::record::{Accepted, Batch, RawRecord, RecordKind, Source};
use steward_meter::store::{SqlStore, Store};
use steward_meter::time::Instant;

const PAGE: usize = 1000;
/// 2026-11-01T00:00:00Z, when everything was created.
const CREATED: i64 = 1_793_491_200;
/// One resource in a hundred drifts.
fn drifts(i: usize) -> bool {
    i % 100 == 7
}

fn server_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}
fn volume_id(i: usize) -> String {
    format!("00000000-0000-4000-9000-{i:012}")
}
fn project(i: usize) -> String {
    format!("{:032x}", i % 1000)
}
fn time(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S.000000")
        .to_string()
}

fn server_json(i: usize) -> Value {
    let stopped = drifts(i);
    json!({
        "id": server_id(i), "name": format!("vm-{i}"), "tenant_id": project(i),
        "user_id": "u", "status": if stopped { "SHUTOFF" } else { "ACTIVE" },
        "OS-EXT-STS:vm_state": if stopped { "stopped" } else { "active" },
        "flavor": {"original_name": "SCS-2V-4", "vcpus": 2, "ram": 4096, "disk": 20, "ephemeral": 0},
        "created": format!("{}Z", time(CREATED)), "updated": format!("{}Z", time(CREATED + 60)),
        "OS-SRV-USG:launched_at": time(CREATED + 30), "OS-SRV-USG:terminated_at": null,
    })
}

fn volume_json(i: usize) -> Value {
    let size = if drifts(i) { 20 } else { 10 };
    json!({
        "id": volume_id(i), "name": null, "os-vol-tenant-attr:tenant_id": project(i),
        "size": size, "volume_type": "ssd", "volume_type_id": "type-ssd", "status": "in-use",
        "created_at": time(CREATED), "updated_at": time(CREATED + 7200),
    })
}

/// The cloud as the listings show it, generated one page at a time.
struct Synthetic {
    servers: usize,
    volumes: usize,
}

#[allow(clippy::result_large_err)] // the Api trait's error type
fn pages<T: serde::de::DeserializeOwned>(
    ids: impl Iterator<Item = usize>,
    item: impl Fn(usize) -> Value,
    key: &str,
) -> Result<Vec<T>, CloudError> {
    let ids: Vec<usize> = ids.collect();
    let mut records = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(PAGE) {
        let page: Vec<Value> = chunk.iter().map(|&i| item(i)).collect();
        records.extend(
            parse_items::<T>(&page, key).map_err(|e| CloudError::Unexpected {
                what: key.to_owned(),
                detail: e.to_string(),
            })?,
        );
    }
    Ok(records)
}

impl Api for Synthetic {
    async fn servers(
        &self,
        changes_since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Vec<Server>, CloudError> {
        match changes_since {
            // Nothing changed since the last listing but the drifted ones' stop.
            Some(_) => pages(
                (0..self.servers).filter(|i| drifts(*i)),
                server_json,
                "servers",
            ),
            None => pages(0..self.servers, server_json, "servers"),
        }
    }
    async fn instance_actions(&self, server_id: &str) -> Result<Vec<InstanceAction>, CloudError> {
        let event = |name: &str, at: i64| json!({"event": name, "start_time": time(at), "finish_time": time(at), "result": "Success"});
        let actions = vec![
            json!({"action": "create", "instance_uuid": server_id, "request_id": "req-1",
                   "start_time": time(CREATED), "events": [event("compute__do_build_and_run_instance", CREATED + 30)]}),
            json!({"action": "stop", "instance_uuid": server_id, "request_id": "req-2",
                   "start_time": time(CREATED + 3600), "events": [event("compute_stop_instance", CREATED + 3601)]}),
        ];
        parse_items(&actions, "instanceAction").map_err(|e| CloudError::Unexpected {
            what: "instanceAction".to_owned(),
            detail: e.to_string(),
        })
    }
    async fn volumes(&self) -> Result<Vec<Volume>, CloudError> {
        // Drifted volumes are extended; every 100th from 50 is gone; as many new ones appear.
        let listed =
            (0..self.volumes + self.volumes / 100).filter(|i| *i >= self.volumes || i % 100 != 50);
        pages(listed, volume_json, "volumes")
    }
    async fn volume_types(&self) -> Result<Vec<VolumeType>, CloudError> {
        Ok(vec![VolumeType {
            id: "type-ssd".to_owned(),
            name: "ssd".to_owned(),
        }])
    }
    async fn snapshots(&self) -> Result<Vec<Snapshot>, CloudError> {
        Ok(vec![])
    }
    async fn floating_ips(&self) -> Result<Vec<FloatingIp>, CloudError> {
        Ok(vec![])
    }
    async fn routers(&self) -> Result<Vec<Router>, CloudError> {
        Ok(vec![])
    }
    async fn load_balancers(&self) -> Result<Vec<LoadBalancer>, CloudError> {
        Ok(vec![])
    }
}

fn created(resource_type: ResourceType, id: String, i: usize) -> Fact {
    let attributes: BTreeMap<String, Value> = match resource_type {
        ResourceType::Instance => [
            ("flavor_name", json!("SCS-2V-4")),
            ("vcpus", json!(2)),
            ("memory_mb", json!(4096)),
            ("state", json!("active")),
        ],
        _ => [
            ("size_gb", json!(10)),
            ("volume_type", json!("type-ssd")),
            ("status", json!("available")),
            ("created_at", json!("2026-11-01T00:00:00Z")),
        ],
    }
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Fact {
        resource_type,
        resource_id: id,
        project_id: Some(project(i)),
        user_id: None,
        kind: FactKind::Created,
        effective_at: Instant((CREATED + 30) * 1_000_000),
        time_source: TimeSource::Payload,
        origin: Origin::Notification,
        event_type: "bench".to_owned(),
        attributes,
    }
}

/// Fills the store with what the notifications said: every server and volume created.
async fn generate(path: &Path, servers: usize, volumes: usize) -> anyhow::Result<()> {
    let store = SqlStore::open(&format!("sqlite://{}", path.display())).await?;
    let facts = (0..servers)
        .map(|i| created(ResourceType::Instance, server_id(i), i))
        .chain((0..volumes).map(|i| created(ResourceType::Volume, volume_id(i), i)));
    let facts: Vec<Fact> = facts.collect();
    for (n, chunk) in facts.chunks(2_000).enumerate() {
        let accepted = chunk
            .iter()
            .enumerate()
            .map(|(j, fact)| Accepted {
                record: RawRecord {
                    dedup_key: format!("bench:{n}:{j}"),
                    source: Source::Amqp,
                    kind: RecordKind::Notification,
                    message_id: None,
                    exchange: None,
                    routing_key: None,
                    envelope_version: None,
                    publisher_id: None,
                    event_type: None,
                    priority: None,
                    emitted_at: None,
                    received_at: Instant(CREATED * 1_000_000),
                    body: "{}".to_owned(),
                    scrubbed: None,
                },
                facts: vec![fact.clone()],
            })
            .collect();
        store
            .commit(&[Batch {
                accepted,
                quarantined: vec![],
            }])
            .await?;
    }
    // A previous run listed everything an hour after the creations.
    store
        .record_reconcile_run(&steward_meter::store::ReconcileRun {
            started_at: Instant((CREATED + 3600) * 1_000_000),
            finished_at: Instant((CREATED + 3700) * 1_000_000),
            listed: vec!["instance".to_owned(), "volume".to_owned()],
            resources_seen: (servers + volumes) as i64,
            facts_written: 0,
            estimated: 0,
            problems: None,
        })
        .await?;
    store.pool().close().await;
    Ok(())
}

/// The measured child: one reconciliation; prints the outcome as JSON.
pub async fn run_once(db: &Path, servers: usize, volumes: usize) -> anyhow::Result<()> {
    let store = SqlStore::open(&format!("sqlite://{}", db.display())).await?;
    let options = ReconcileOptions {
        resources: vec![ResourceType::Instance, ResourceType::Volume],
        ..ReconcileOptions::default()
    };
    let started = std::time::Instant::now();
    let outcome = reconcile(&store, &Synthetic { servers, volumes }, &options).await?;
    let secs = started.elapsed().as_secs_f64();
    let by = |kind: FactKind, origin: Origin| {
        outcome
            .changes
            .iter()
            .filter(|p| p.fact.kind == kind && p.fact.origin == origin)
            .count()
    };
    println!(
        "{}",
        json!({
            "seconds_in_process": (secs * 100.0).round() / 100.0,
            "resources_seen": outcome.run.resources_seen,
            "servers_read": outcome.looked_at.len(),
            "facts_written": outcome.run.facts_written,
            "stopped": by(FactKind::Stopped, Origin::Reconciled),
            "volumes_created": by(FactKind::Created, Origin::Reconciled),
            "volumes_resized": by(FactKind::Resized, Origin::Estimated),
            "volumes_vanished": by(FactKind::Deleted, Origin::Estimated),
        })
    );
    Ok(())
}

/// Generates the store, then measures one reconciliation in a child process.
pub async fn bench(servers: usize, volumes: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("reconcile.db");
    eprintln!("generating {servers} servers and {volumes} volumes");
    generate(&db, servers, volumes).await?;
    let child = Command::new(std::env::current_exe()?)
        .args([
            "reconcile-run",
            "--db",
            db.to_str().context("temporary path")?,
            "--servers",
            &servers.to_string(),
            "--volumes",
            &volumes.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let (wall, peak_mb, status, out) = crate::run_measured_output(child)?;
    anyhow::ensure!(status.success(), "the reconciliation failed: {status}");
    let outcome: Value = serde_json::from_str(out.trim())?;
    let drifted = (0..servers).filter(|i| drifts(*i)).count();
    anyhow::ensure!(
        outcome["stopped"] == drifted
            && outcome["volumes_resized"] == (0..volumes).filter(|i| drifts(*i)).count()
            && outcome["volumes_vanished"] == (0..volumes).filter(|i| i % 100 == 50).count()
            && outcome["volumes_created"] == volumes / 100,
        "unexpected outcome {outcome}"
    );
    println!(
        "{}",
        json!({
            "bench": "reconcile",
            "servers": servers,
            "volumes": volumes,
            "wall_s": (wall * 100.0).round() / 100.0,
            "peak_rss_mb": (peak_mb * 10.0).round() / 10.0,
            "outcome": outcome,
        })
    );
    Ok(())
}
