//! The whole billing chain across a real outage, against real nova, cinder, neutron and
//! octavia: `serve` ingests the notifications of two projects; then it is stopped and its queue
//! deleted — what the services publish meanwhile is lost for good (routed nowhere) — while a
//! server is resized and confirmed, stopped, another shelved (and offloaded) and a third
//! created and deleted, a volume extended, a floating IP and a load balancer deleted. `serve`
//! comes back, records the outage as a gap, and its reconciler resolves it; the window is closed
//! as a period. The closed report bills every server as the notifications did (a capture queue
//! on the real exchanges is the truth) to the second, everything else within the stated bounds
//! and never more; the completeness statement lists the gap as resolved; reconciling again
//! adds nothing.
//!
//! (The broker itself is not restarted here: the other test groups share it while this runs.
//! A deleted queue loses notifications exactly as a restart that deletes the producers'
//! transient exchanges does — they are routed nowhere — and the restart path of the consumer is
//! covered by `ingest_amqp`.)
//!
//! Needs Keystone, Glance, nova, cinder, neutron and octavia on loopback and RabbitMQ's vhost
//! `openstack`; fails loudly without them unless `STEWARD_TEST_SKIP_OPENSTACK_SERVICES=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::options::QueueDeleteOptions;
use lapin::{Connection, ConnectionProperties};
use reqwest::Method;
use serde_json::{Value, json};
use steward_meter::config::MeterConfig;
use steward_meter::ingest::reconcile::{ReconcileOptions, reconcile};
use steward_meter::report::Resolution;
use steward_meter::store;
use steward_meter::time::Instant;
use steward_meter::usage::period::Period;
use support::{
    Admin, BROKER, Captured, GLANCE, NOVA, billed, capture, close_now, free_port, skipped,
    store_of, tiny_flavor_and_image,
};
use tokio::sync::watch;

const NEUTRON: &str = "http://127.0.0.1:9696/v2.0";

/// `serve`'s settings for these tests: the store at `url`, the AMQP section `amqp`, a free
/// HTTP port with 1 s heartbeats, the reconciler on the test cloud for `resources` (its own
/// interval out of the way: it runs at start and after gaps), no automatic close.
fn meter_config(url: &str, amqp: Value, resources: &[&str]) -> MeterConfig {
    serde_json::from_value(json!({
        "store": {"url": url},
        "amqp": amqp,
        "http": {"listen": format!("127.0.0.1:{}", free_port()), "heartbeat_secs": 1},
        "reconcile": {"cloud": "steward-test", "interval_secs": 3600, "resources": resources},
        "close": {"auto": false},
    }))
    .unwrap()
}

/// A running `serve`, in process.
struct Serve {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn start(config: &MeterConfig) -> Serve {
    let (stop, shutdown) = watch::channel(false);
    let config = config.clone();
    let task = tokio::spawn(async move {
        steward_meter::serve::serve(config, None, shutdown)
            .await
            .expect("serve");
    });
    Serve { stop, task }
}

impl Serve {
    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("serve stops")
            .unwrap();
    }
}

/// Waits until the store holds a fact of `kind` about `id`.
async fn wait_for_fact(url: &str, id: &str, kind: &str) {
    for _ in 0..240 {
        if let Ok(store) = store::open_read_only(url, Duration::from_secs(5)).await {
            let facts = store.facts(1_000_000).await.unwrap();
            if facts.iter().any(|f| f.resource_id == id && f.kind == kind) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("serve never stored {kind} of {id}");
}

/// Waits until the store holds a gap `wanted` and a reconciliation resolved it (serve's
/// reconciler runs 30 s after a gap closes); returns the gap and when it was resolved.
async fn wait_for_resolved_gap(
    url: &str,
    wanted: impl Fn(&steward_meter::record::Gap) -> bool,
) -> (steward_meter::record::Gap, Instant) {
    for _ in 0..180 {
        let store = store::open_read_only(url, Duration::from_secs(5))
            .await
            .unwrap();
        let gaps = store.gaps(100).await.unwrap();
        let runs = store.reconcile_runs(100).await.unwrap();
        if let Some(gap) = gaps.iter().find(|g| wanted(g))
            && let Some(at) = steward_meter::ingest::reconcile::gap_resolved_at(gap, &runs)
        {
            return (gap.clone(), at);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("serve recorded no such gap, or no reconciliation resolved it");
}

/// The reconciliation before a close (as `steward meter close` runs one), then the close of
/// `[began, its start)`.
async fn reconcile_and_close(
    store: &dyn steward_meter::store::Store,
    cloud: &steward_cloud::Cloud,
    config: &MeterConfig,
    began: Instant,
) -> (
    ReconcileOptions,
    steward_meter::ingest::reconcile::Outcome,
    Period,
    steward_meter::close::CloseOutcome,
) {
    let options = ReconcileOptions {
        resources: config.reconcile.options(false).resources,
        ..ReconcileOptions::default()
    };
    let last = reconcile(store, cloud, &options).await.unwrap();
    assert_eq!(last.run.problems, None);
    let period = Period::new(began, last.run.started_at).unwrap();
    let closed = close_now(store, &period).await;
    (options, last, period, closed)
}

async fn server(admin: &Admin, name: &str, flavor: &str, image: &str) -> String {
    let id = admin
        .call(
            Method::POST,
            &format!("{NOVA}/servers"),
            Some(
                json!({"server": {"name": name, "flavorRef": flavor, "imageRef": image,
                "networks": "none"}}),
            ),
        )
        .await["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin
        .wait(
            &format!("{NOVA}/servers/{id}"),
            "server",
            "status",
            Some("ACTIVE"),
        )
        .await;
    id
}

async fn action(admin: &Admin, id: &str, body: Value, then: Option<&str>) {
    let url = format!("{NOVA}/servers/{id}");
    admin
        .call(Method::POST, &format!("{url}/action"), Some(body))
        .await;
    admin.wait(&url, "server", "status", then).await;
}

/// The external network floating IPs come from (created once, kept like the test flavor).
async fn public_network(admin: &Admin) -> String {
    let found = admin
        .call(
            Method::GET,
            &format!("{NEUTRON}/networks?router:external=true"),
            None,
        )
        .await;
    if let Some(n) = found["networks"].as_array().and_then(|n| n.first()) {
        return n["id"].as_str().unwrap().to_owned();
    }
    let net = admin
        .call(
            Method::POST,
            &format!("{NEUTRON}/networks"),
            Some(
                json!({"network": {"name": "steward-public", "router:external": true,
                "provider:network_type": "flat", "provider:physical_network": "public"}}),
            ),
        )
        .await["network"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin
        .call(
            Method::POST,
            &format!("{NEUTRON}/subnets"),
            Some(
                json!({"subnet": {"name": "steward-public-v4", "network_id": net,
                "ip_version": 4, "cidr": "203.0.113.0/24", "enable_dhcp": false,
                "gateway_ip": "203.0.113.1"}}),
            ),
        )
        .await;
    net
}

fn seconds(m: &BTreeMap<String, f64>) -> f64 {
    m.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_across_two_projects_closes_complete_and_bills_what_nova_states() {
    if skipped() {
        return;
    }
    let (_capture, captured) = capture().await;
    let a = Admin::login().await;
    let b = a.project("steward-e2e-b").await;
    let cloud = steward_cloud::Cloud::connect("steward-test", None)
        .await
        .expect("the steward-test cloud (scripts/openstack start)");
    let (flavor, image) = tiny_flavor_and_image(&a).await;
    let bigger = {
        let flavors = a.call(Method::GET, &format!("{NOVA}/flavors"), None).await;
        match flavors["flavors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "steward.small")
        {
            Some(f) => f["id"].as_str().unwrap().to_owned(),
            None => a
                .call(
                    Method::POST,
                    &format!("{NOVA}/flavors"),
                    Some(
                        json!({"flavor": {"name": "steward.small", "ram": 512, "vcpus": 2,
                        "disk": 1}}),
                    ),
                )
                .await["flavor"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        }
    };
    let network = public_network(&a).await;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let queue = format!("steward.e2e.outage.{}", std::process::id());
    let config = meter_config(
        &url,
        json!({"url": BROKER, "queue": queue, "queue_type": "classic",
            "exchanges": ["nova", "openstack", "neutron", "octavia"]}),
        &["instance", "volume", "floating_ip", "load_balancer"],
    );
    let began = Instant::now();
    let serve = start(&config);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Seen by Steward: servers in A and B, a volume in B, a floating IP and an LB in A.
    let a1 = server(&a, "steward-e2e-a1", &flavor, &image).await;
    let b1 = server(&b, "steward-e2e-b1", &flavor, &image).await;
    let (volume, vurl) = b.volume("steward-e2e", 1).await;
    let fip = a
        .call(
            Method::POST,
            &format!("{NEUTRON}/floatingips"),
            Some(json!({"floatingip": {"floating_network_id": network}})),
        )
        .await["floatingip"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (lb, lburl) = a.load_balancer("steward-e2e").await;
    for (id, kind) in [
        (&a1, "created"),
        (&b1, "created"),
        (&volume, "created"),
        (&fip, "created"),
        (&lb, "created"),
    ] {
        wait_for_fact(&url, id, kind).await;
    }

    // The outage: Steward stops and its queue is deleted; nothing published now reaches it.
    serve.stop().await;
    let broker = Connection::connect(BROKER, ConnectionProperties::default())
        .await
        .unwrap();
    broker
        .create_channel()
        .await
        .unwrap()
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let outage_from = Instant::now();
    action(
        &a,
        &a1,
        json!({"resize": {"flavorRef": bigger}}),
        Some("VERIFY_RESIZE"),
    )
    .await;
    action(&a, &a1, json!({"confirmResize": null}), Some("ACTIVE")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    action(&a, &a1, json!({"os-stop": null}), Some("SHUTOFF")).await;
    action(&b, &b1, json!({"shelve": null}), Some("SHELVED_OFFLOADED")).await;
    let a2 = server(&a, "steward-e2e-a2", &flavor, &image).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.call(Method::DELETE, &format!("{NOVA}/servers/{a2}"), None)
        .await;
    a.wait(&format!("{NOVA}/servers/{a2}"), "server", "status", None)
        .await;
    b.extend(&vurl, 2).await;
    a.call(
        Method::DELETE,
        &format!("{NEUTRON}/floatingips/{fip}"),
        None,
    )
    .await;
    a.send(Method::DELETE, &lburl, None).await;
    a.wait(&lburl, "loadbalancer", "provisioning_status", None)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outage_until = Instant::now();

    // Steward is back: a fresh queue, the outage recorded as a gap, the reconciler after it.
    let serve = start(&config);
    tokio::time::sleep(Duration::from_secs(3)).await;
    action(&a, &a1, json!({"os-start": null}), Some("ACTIVE")).await;
    wait_for_fact(&url, &a1, "started").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (admin, id) in [(&a, &a1), (&b, &b1)] {
        admin
            .call(Method::DELETE, &format!("{NOVA}/servers/{id}"), None)
            .await;
        admin
            .wait(&format!("{NOVA}/servers/{id}"), "server", "status", None)
            .await;
    }
    b.call(Method::DELETE, &vurl, None).await;
    b.wait(&vurl, "volume", "status", None).await;
    for (id, kind) in [(&a1, "deleted"), (&b1, "deleted"), (&volume, "deleted")] {
        wait_for_fact(&url, id, kind).await;
    }
    // serve's reconciler runs 30 s after a gap closes.
    let (_, resolved_by) = wait_for_resolved_gap(&url, |g| {
        g.started_at <= outage_from && g.ended_at.is_some_and(|e| e >= outage_until)
    })
    .await;
    serve.stop().await;

    // What the outage hid was lost for real: no notification of it reached the store; serve's
    // reconciler wrote it back from nova.
    let store = store::open(&url).await.unwrap();
    let facts = store.facts(1_000_000).await.unwrap();
    let of = |id: &str, kind: &str, origin: &str| {
        facts
            .iter()
            .any(|f| f.resource_id == id && f.kind == kind && f.origin == origin)
    };
    assert!(!of(&a1, "resized", "notification") && !of(&a1, "stopped", "notification"));
    assert!(of(&a1, "resized", "reconciled") && of(&a1, "stopped", "reconciled"));
    assert!(!of(&a2, "created", "notification") && of(&a2, "created", "reconciled"));
    assert!(of(&a2, "deleted", "reconciled"));

    // Before the close: one more reconciliation (as `steward meter close` runs one).
    let (options, last, period, closed) =
        reconcile_and_close(&*store, &cloud, &config, began).await;
    let ours = [&a1, &b1, &a2, &volume, &fip, &lb];
    assert!(
        last.changes
            .iter()
            .all(|p| !ours.contains(&&p.fact.resource_id)),
        "serve's reconciliation left nothing of ours to write: {:?}",
        last.changes
    );
    let statement = closed.report().completeness.clone().unwrap();
    assert!(!statement.gaps.is_empty());
    for gap in &statement.gaps {
        assert_ne!(gap.resolution, Resolution::Unresolved, "{statement:#?}");
    }
    let outage = statement
        .gaps
        .iter()
        .find(|g| g.start <= outage_from)
        .unwrap();
    assert_eq!(outage.resolved_by_reconcile_at, Some(resolved_by));
    assert!(
        statement.facts_by_origin.contains_key("reconciled")
            && statement.facts_by_origin.contains_key("estimated"),
        "{statement:#?}"
    );
    // Project B has its own entry.
    assert!(
        closed
            .report()
            .projects
            .iter()
            .any(|p| p.project_id.as_deref() == Some(b.project.as_str())
                && p.lines.iter().any(|l| l.product.starts_with("instance:"))),
        "{:#?}",
        closed.report().projects
    );

    // The truth: every notification the services sent about our resources.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all: Vec<Captured> = captured
        .lock()
        .unwrap()
        .iter()
        .filter(|c| ours.iter().any(|id| c.text.contains(id.as_str())))
        .cloned()
        .collect();
    let (_t, truth) = store_of(&all).await;
    truth
        .record_volume_types(
            &store
                .volume_type_names()
                .await
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            Instant::now(),
        )
        .await
        .unwrap();
    let gap_secs = (outage_until.micros() - outage_from.micros()) as f64 / 1e6 + 10.0;
    for id in [&a1, &b1, &a2] {
        let want = billed(&*truth, id, &period).await;
        let got = billed(&*store, id, &period).await;
        assert!(!want.is_empty(), "{id}: the truth bills it");
        if id == &b1 {
            // The offload is dated by no API: estimated between the shelve and the listing
            // that showed it offloaded; billed at the earliest, never more.
            assert!(
                seconds(&got) <= seconds(&want) + 2.0,
                "{id}: {got:?} > {want:?}"
            );
            assert!(
                seconds(&want) - seconds(&got) <= gap_secs,
                "{id}: {got:?} vs {want:?}"
            );
        } else {
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>(),
                "{id}: products"
            );
            for (product, s) in &want {
                assert!(
                    (got[product] - s).abs() <= 2.0,
                    "{id} {product}: {} s, truth {s} s",
                    got[product]
                );
            }
        }
    }
    for id in [&volume, &fip, &lb] {
        let want = billed(&*truth, id, &period).await;
        let got = billed(&*store, id, &period).await;
        assert!(!want.is_empty(), "{id}: the truth bills it");
        // Sizes in GiB: the volume is 2 GiB at most.
        assert!(
            seconds(&got) <= seconds(&want) + 4.0,
            "{id}: {got:?} > truth {want:?}"
        );
        assert!(
            seconds(&want) - seconds(&got) <= 2.0 * gap_secs,
            "{id}: {got:?} vs truth {want:?} (outside the gap's bounds)"
        );
    }
    // Reconciling again adds nothing.
    let again = reconcile(&*store, &cloud, &options).await.unwrap();
    assert!(
        again
            .changes
            .iter()
            .all(|p| !ours.contains(&&p.fact.resource_id)),
        "{:?}",
        again.changes
    );
    a.call(Method::DELETE, &format!("{GLANCE}/images/{image}"), None)
        .await;
}

fn rabbitmqctl(args: &[&str]) {
    let status = std::process::Command::new("rabbitmqctl")
        .args(args)
        .status()
        .expect("rabbitmqctl is needed for the broker-restart test");
    assert!(status.success(), "rabbitmqctl {args:?}");
}

/// Nova's own account of a server: `(launched_at, terminated_at)` in microseconds.
async fn nova_times(admin: &Admin, since: Instant, id: &str) -> Option<(i64, i64)> {
    let since = since.to_rfc3339();
    let listed = admin
        .call(
            Method::GET,
            &format!("{NOVA}/servers/detail?all_tenants=1&deleted=true&changes-since={since}"),
            None,
        )
        .await;
    let server = listed["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)?;
    let micros = |key: &str| {
        server[key].as_str().and_then(|t| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc().timestamp_micros())
        })
    };
    Some((
        micros("OS-SRV-USG:launched_at")?,
        micros("OS-SRV-USG:terminated_at")?,
    ))
}

/// A real broker restart while nova publishes: the producers' transient exchanges go with the
/// broker, and with them Steward's bindings; until Steward has reconnected and bound again
/// (its backoff is held at 15 s here), nova's notifications are routed nowhere. Steward records
/// the gap, its reconciler fills it from nova, and the closed window bills every server exactly
/// as nova's `launched_at`/`terminated_at` state.
///
/// Restarts the shared broker, so `scripts/test` runs it alone, after everything else
/// (`--run-ignored only`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the shared RabbitMQ: scripts/test runs it alone, after the other tests"]
async fn a_broker_restart_while_nova_publishes_closes_as_nova_bills() {
    if skipped() {
        return;
    }
    let admin = Admin::login().await;
    let cloud = steward_cloud::Cloud::connect("steward-test", None)
        .await
        .expect("the steward-test cloud (scripts/openstack start)");
    let (flavor, image) = tiny_flavor_and_image(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let queue = format!("steward.e2e.restart.{}", std::process::id());
    let config = meter_config(
        &url,
        json!({"url": BROKER, "queue": queue, "exchanges": ["nova", "openstack"],
            "reconnect_initial_ms": 15000, "reconnect_max_ms": 15000}),
        &["instance"],
    );
    let began = Instant::now();
    let serve = start(&config);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s0 = server(&admin, "steward-restart-0", &flavor, &image).await;
    let s1 = server(&admin, "steward-restart-1", &flavor, &image).await;
    wait_for_fact(&url, &s1, "created").await;

    // The restart; right after it nova publishes while Steward still backs off.
    rabbitmqctl(&["stop_app"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
    let s2 = server(&admin, "steward-restart-2", &flavor, &image).await;
    admin
        .call(Method::DELETE, &format!("{NOVA}/servers/{s0}"), None)
        .await;
    admin
        .wait(&format!("{NOVA}/servers/{s0}"), "server", "status", None)
        .await;

    // Steward is bound again: what follows reaches it.
    let s3 = server(&admin, "steward-restart-3", &flavor, &image).await;
    wait_for_fact(&url, &s3, "created").await;
    for id in [&s1, &s2, &s3] {
        admin
            .call(Method::DELETE, &format!("{NOVA}/servers/{id}"), None)
            .await;
        admin
            .wait(&format!("{NOVA}/servers/{id}"), "server", "status", None)
            .await;
    }
    wait_for_fact(&url, &s3, "deleted").await;
    // The gap the restart caused, resolved by serve's reconciler (30 s after it closed).
    let (gap, _) = wait_for_resolved_gap(&url, |g| g.source.as_str() == "amqp").await;
    let cause = gap.cause;
    assert!(cause.contains("connection"), "{cause}");
    serve.stop().await;

    let store = store::open(&url).await.unwrap();
    // The restart lost notifications for real: serve's reconciler wrote some back.
    let facts = store.facts(1_000_000).await.unwrap();
    let reconciled: Vec<(String, String)> = facts
        .iter()
        .filter(|f| f.origin == "reconciled" && [&s0, &s2].contains(&&f.resource_id))
        .map(|f| (f.resource_id.clone(), f.kind.clone()))
        .collect();
    assert!(
        !reconciled.is_empty(),
        "nothing of s0/s2 was lost: {facts:#?}"
    );
    let (_, _, period, closed) = reconcile_and_close(&*store, &cloud, &config, began).await;
    let statement = closed.report().completeness.clone().unwrap();
    assert!(
        statement
            .gaps
            .iter()
            .any(|g| g.source == "amqp" && g.resolution != Resolution::Unresolved),
        "{statement:#?}"
    );
    assert!(
        statement
            .gaps
            .iter()
            .all(|g| g.resolution != Resolution::Unresolved),
        "{statement:#?}"
    );
    for id in [&s0, &s1, &s2, &s3] {
        let (launched, terminated) = nova_times(&admin, began, id)
            .await
            .unwrap_or_else(|| panic!("nova lists {id} as deleted"));
        let want = (terminated - launched) as f64 / 1e6;
        let got = billed(&*store, id, &period).await;
        assert!(
            (seconds(&got) - want).abs() <= 1.0,
            "{id}: billed {got:?}, nova says {want} s"
        );
    }
    admin
        .call(Method::DELETE, &format!("{GLANCE}/images/{image}"), None)
        .await;
}
