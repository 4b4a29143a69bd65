//! The reconciler against real nova, cinder and octavia (`scripts/openstack-services start`,
//! which `scripts/test` runs): a server is created, stopped, started and deleted, a volume
//! created, extended and deleted, a load balancer created and deleted, while a capture queue on the real exchanges records every
//! notification. One store gets all of them; the other loses the stop, the start and the
//! volume's extension and deletion (a broker restart, recorded as a gap). The reconciler, reading
//! the real APIs, gives the lossy store the same bill to the second, except for the deletion no
//! API dates, which it estimates inside the gap and never bills longer than the truth; the lost
//! deletion arriving late makes the bills equal. The window closes as a period after the
//! reconciliation (its statement names the gap resolved, with the estimate's bounds), and the
//! late deletion becomes one correction that changes the volume's lines only.
//!
//! Needs Keystone, Glance, nova, cinder and octavia on loopback and RabbitMQ's vhost `openstack`; fails
//! loudly without them unless `STEWARD_TEST_SKIP_OPENSTACK_SERVICES=1` leaves it out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use steward_meter::close::correction::{CheckOutcome, check_period};
use steward_meter::facts::{FactKind, Origin, ResourceType};
use steward_meter::ingest::amqp::decode_delivery;
use steward_meter::ingest::reconcile::{ReconcileOptions, reconcile};
use steward_meter::record::{Batch, Decoded, Source};
use steward_meter::report::{ReportRequest, Resolution, build_report};
use steward_meter::scrub::Scrubber;
use steward_meter::store::Store;
use steward_meter::time::Instant;
use steward_meter::usage::catalogue::default_catalogue;
use steward_meter::usage::period::Period;

mod support;

use support::{
    Admin, Captured, GLANCE, NOVA, assert_close, billed, capture, close_now, skipped, store_of,
    tiny_flavor_and_image,
};

#[tokio::test]
async fn what_a_broker_restart_lost_comes_back_from_nova_cinder_and_octavia() {
    if skipped() {
        return;
    }
    let (_connection, captured) = capture().await;
    let admin = Admin::login().await;
    let cloud = steward_cloud::Cloud::connect("steward-test", None)
        .await
        .expect("the steward-test cloud (scripts/openstack start)");
    let (flavor, image) = tiny_flavor_and_image(&admin).await;
    let began = Instant::now();

    // A server: created, stopped, started, deleted.
    let server = admin
        .call(
            Method::POST,
            &format!("{NOVA}/servers"),
            Some(
                json!({"server": {"name": "steward-reconcile", "flavorRef": flavor,
                "imageRef": image, "networks": "none"}}),
            ),
        )
        .await["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("{NOVA}/servers/{server}");
    admin.wait(&url, "server", "status", Some("ACTIVE")).await;
    // A volume: created, extended, deleted.
    let (volume, vurl) = admin.volume("steward-reconcile", 1).await;
    let (lb, lburl) = admin.load_balancer("steward-reconcile").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The broker restarts: everything from here to its end is lost for the lossy store.
    let lost_from = Instant::now();
    admin
        .call(
            Method::POST,
            &format!("{url}/action"),
            Some(json!({"os-stop": null})),
        )
        .await;
    admin.wait(&url, "server", "status", Some("SHUTOFF")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    admin
        .call(
            Method::POST,
            &format!("{url}/action"),
            Some(json!({"os-start": null})),
        )
        .await;
    admin.wait(&url, "server", "status", Some("ACTIVE")).await;
    admin.extend(&vurl, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    admin.call(Method::DELETE, &vurl, None).await;
    admin.wait(&vurl, "volume", "status", None).await;
    admin.send(Method::DELETE, &lburl, None).await;
    admin
        .wait(&lburl, "loadbalancer", "provisioning_status", None)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lost_until = Instant::now();

    tokio::time::sleep(Duration::from_secs(3)).await;
    admin.call(Method::DELETE, &url, None).await;
    admin.wait(&url, "server", "status", None).await;
    // Wait for the deletion's notification.
    for _ in 0..120 {
        let seen = captured
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.event_type == "compute.instance.delete.end" && c.text.contains(&server));
        if seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ended = Instant::now();
    let all: Vec<Captured> = captured.lock().unwrap().clone();
    let ours =
        |c: &Captured| c.text.contains(&server) || c.text.contains(&volume) || c.text.contains(&lb);
    let all: Vec<Captured> = all.into_iter().filter(ours).collect();
    assert!(
        all.iter()
            .any(|c| c.event_type == "compute.instance.power_off.end"),
        "nova's notifications were captured: {:?}",
        all.iter().map(|c| &c.event_type).collect::<Vec<_>>()
    );

    // What the lossy store lost: every notification of the window.
    let lost = |c: &Captured| {
        [
            "loadbalancer.delete",
            "power_off",
            "power_on",
            "volume.resize",
            "volume.delete",
            "instance.update",
            "compute.instance.exists",
        ]
        .iter()
        .any(|e| c.event_type.contains(e))
    };
    let lost_events: Vec<&str> = all
        .iter()
        .filter(|c| lost(c))
        .map(|c| c.event_type.as_str())
        .collect();
    assert!(
        lost_events.iter().any(|e| e.contains("volume.delete.end")),
        "{lost_events:?}"
    );
    let (_a, truth) = store_of(&all).await;
    let kept: Vec<Captured> = all.iter().filter(|c| !lost(c)).cloned().collect();
    let (_b, lossy) = store_of(&kept).await;
    lossy
        .record_gap(Source::Amqp, lost_from, lost_until, "broker restart")
        .await
        .unwrap();

    let period = Period::new(
        Instant(began.micros() - 60_000_000),
        Instant(ended.micros() + 60_000_000),
    )
    .unwrap();
    let truth_server = billed(&*truth, &server, &period).await;
    let truth_volume = billed(&*truth, &volume, &period).await;
    assert!(!truth_server.is_empty() && !truth_volume.is_empty());
    let lossy_server = billed(&*lossy, &server, &period).await;
    assert!(
        (lossy_server["instance:steward.tiny"] - truth_server["instance:steward.tiny"]).abs() < 1.0,
        "a stop is billed by default, so the loss shows in the detail, not the hours"
    );

    let options = ReconcileOptions {
        resources: vec![
            ResourceType::Instance,
            ResourceType::Volume,
            ResourceType::LoadBalancer,
        ],
        ..ReconcileOptions::default()
    };
    let outcome = reconcile(&*lossy, &cloud, &options).await.unwrap();
    assert_eq!(outcome.run.problems, None);
    // The truth names volume types as the reconciled store now does.
    let names: Vec<(String, String)> = lossy
        .volume_type_names()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert!(!names.is_empty(), "cinder's volume types were listed");
    truth
        .record_volume_types(&names, Instant::now())
        .await
        .unwrap();
    let mine: Vec<(String, FactKind, Origin)> = outcome
        .changes
        .iter()
        .filter(|p| [&server, &volume, &lb].contains(&&p.fact.resource_id))
        .map(|p| (p.fact.resource_id.clone(), p.fact.kind, p.fact.origin))
        .collect();
    assert!(
        mine.contains(&(server.clone(), FactKind::Stopped, Origin::Reconciled))
            && mine.contains(&(server.clone(), FactKind::Started, Origin::Reconciled))
            && mine.contains(&(volume.clone(), FactKind::Deleted, Origin::Estimated))
            && mine.contains(&(lb.clone(), FactKind::Deleted, Origin::Estimated)),
        "{mine:?}"
    );
    assert!(
        outcome.looked_at.iter().any(|(id, _)| *id == server),
        "{:?}",
        outcome.looked_at
    );

    // The server's stopped time is back, to the second of nova's instance actions.
    let detail = |store: Arc<dyn Store>| {
        let server = server.clone();
        async move {
            let request = ReportRequest {
                period,
                as_of: period.end,
                project: None,
                detail: true,
            };
            let report = build_report(&*store, &request, &default_catalogue())
                .await
                .unwrap();
            report
                .projects
                .iter()
                .flat_map(|p| p.resources.clone().unwrap_or_default())
                .find(|r| r.resource_id == server)
                .unwrap()
                .intervals
                .iter()
                .map(|i| (i.status, i.start, i.end))
                .collect::<Vec<_>>()
        }
    };
    let want = detail(truth.clone()).await;
    let got = detail(lossy.clone()).await;
    assert_eq!(want.len(), got.len(), "truth {want:?}, reconciled {got:?}");
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w.0, g.0);
        assert!(
            (w.1.micros() - g.1.micros()).abs() <= 2_000_000,
            "{w:?} vs {g:?}"
        );
        assert!(
            (w.2.micros() - g.2.micros()).abs() <= 2_000_000,
            "{w:?} vs {g:?}"
        );
    }
    assert_close(
        &billed(&*lossy, &server, &period).await,
        &truth_server,
        2.0,
        "server",
    );

    // The volume: cinder cannot list deleted volumes, so its end is estimated at the gap's
    // start, never after the truth; its size change at the latest it can have been.
    let truth_volume = billed(&*truth, &volume, &period).await;
    let estimated_volume = billed(&*lossy, &volume, &period).await;
    assert_eq!(
        estimated_volume.keys().collect::<Vec<_>>(),
        truth_volume.keys().collect::<Vec<_>>()
    );
    assert!(
        estimated_volume
            .keys()
            .all(|p| !p.contains(&volume_type_id_of(&all))),
        "products are named by the type's name: {estimated_volume:?}"
    );
    for (product, seconds) in &estimated_volume {
        assert!(
            *seconds <= truth_volume[product] + 1e-6,
            "{product}: {seconds} > truth"
        );
    }
    // The load balancer: octavia lists no deleted ones either; estimated inside the gap.
    let truth_lb = billed(&*truth, &lb, &period).await;
    assert!(
        !truth_lb.is_empty(),
        "octavia's notifications were captured"
    );
    let estimated_lb = billed(&*lossy, &lb, &period).await;
    for (product, seconds) in &estimated_lb {
        assert!(
            *seconds <= truth_lb[product] + 1e-6,
            "{product}: {seconds} > truth"
        );
    }
    // A second run writes nothing more.
    let again = reconcile(&*lossy, &cloud, &options).await.unwrap();
    assert!(
        again
            .changes
            .iter()
            .all(|p| ![&server, &volume, &lb].contains(&&p.fact.resource_id)),
        "{:?}",
        again.changes
    );

    // The window closes as a period on that second run (it started at the period's end): the
    // statement names the gap resolved, with the volume's estimate and its bounds, and the
    // closed report bills every server as the notifications nova sent did.
    let closing = Period::new(period.start, again.run.started_at).unwrap();
    let closed = close_now(&*lossy, &closing).await;
    let statement = closed.report().completeness.clone().unwrap();
    assert_eq!(statement.gaps.len(), 1, "{statement:#?}");
    assert_eq!(statement.gaps[0].resolution, Resolution::Estimated);
    assert!(
        statement.gaps[0]
            .estimates
            .iter()
            .any(|e| e.resource_id == volume && e.not_before >= lost_from),
        "{statement:#?}"
    );
    assert_eq!(
        statement.reconciliation.as_ref().unwrap().started_at,
        again.run.started_at
    );
    // The closed state is what the store bills now (no fact arrived since): the server as
    // the truth bills it, to the second. (The report's other lines hold whatever else the
    // shared cloud did meanwhile, which the reconciler wrote back too.)
    assert_close(
        &billed(&*lossy, &server, &closing).await,
        &billed(&*truth, &server, &closing).await,
        2.0,
        "closed server",
    );
    assert!(
        closed
            .report()
            .projects
            .iter()
            .any(|p| p.project_id.as_deref() == Some(admin.project.as_str())
                && p.lines.iter().any(|l| l.product == "instance:steward.tiny")),
        "{:#?}",
        closed.report().projects
    );
    let closed_row = lossy
        .closed_period(closing.start, closing.end)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        check_period(&*lossy, &closed_row, Instant::now())
            .await
            .unwrap(),
        CheckOutcome::NothingNew
    );

    // The lost deletion arrives late: the estimate yields to it.
    let late: Vec<Captured> = all
        .iter()
        .filter(|c| c.event_type.contains("volume.delete.end"))
        .cloned()
        .collect();
    let mut batch = Batch {
        accepted: Vec::new(),
        quarantined: Vec::new(),
    };
    for c in &late {
        if let Decoded::Accepted(a) = decode_delivery(
            &c.body,
            &c.exchange,
            &c.routing_key,
            Instant::now(),
            &Scrubber::default(),
        ) {
            batch.accepted.push(a);
        }
    }
    lossy.commit(&[batch]).await.unwrap();
    // The closed period gets one correction, and it changes the volume's lines only.
    let CheckOutcome::Corrected(correction) = check_period(&*lossy, &closed_row, Instant::now())
        .await
        .unwrap()
    else {
        panic!("the late deletion made no correction")
    };
    assert_eq!(correction.corrects, closed.report().content_digest);
    let changed: Vec<&str> = correction
        .projects
        .iter()
        .flat_map(|p| p.lines.iter().map(|l| l.product.as_str()))
        .collect();
    assert!(
        !changed.is_empty() && changed.iter().all(|p| p.starts_with("volume:")),
        "{correction:#?}"
    );
    let closed_row = lossy
        .closed_period(closing.start, closing.end)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        check_period(&*lossy, &closed_row, Instant::now())
            .await
            .unwrap(),
        CheckOutcome::NothingNew
    );
    let after_late = billed(&*lossy, &volume, &period).await;
    let total = |m: &BTreeMap<String, f64>| m.values().sum::<f64>();
    assert!(
        (total(&after_late) - total(&truth_volume)).abs() <= 2.0 * 2.0,
        "late deletion: {after_late:?}, truth {truth_volume:?}"
    );
    admin
        .call(Method::DELETE, &format!("{GLANCE}/images/{image}"), None)
        .await;
}

/// The volume type id cinder's notifications carried.
fn volume_type_id_of(captured: &[Captured]) -> String {
    captured
        .iter()
        .filter(|c| c.event_type.starts_with("volume."))
        .find_map(|c| {
            let outer: Value = serde_json::from_str(&c.text).ok()?;
            let message: Value = serde_json::from_str(outer["oslo.message"].as_str()?).ok()?;
            Some(message["payload"]["volume_type"].as_str()?.to_owned())
        })
        .expect("a volume notification with its type")
}
