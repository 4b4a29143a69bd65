//! Memory stays bounded by bytes, whatever the input: a post at the body limit made of tiny
//! bad items, and AMQP messages of tens of megabytes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Duration;

use common::{Publisher, Steward, count, metric, oslo_v2, unique, wait_for_count};

const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_16_mib_post_of_tiny_bad_items_stays_under_300_mb() {
    let mut steward = Steward::new("limits-http", "");
    steward.start().await;
    // 16 MiB minus a little: about 5.6 million empty objects (no message_id, no event_type).
    let items = (16 * MIB as usize - 16) / 3;
    let mut body = String::with_capacity(items * 3 + 2);
    body.push('[');
    for i in 0..items {
        body.push_str(if i + 1 < items { "{}," } else { "{}" });
    }
    body.push(']');
    assert!(body.len() as u64 <= 16 * MIB);
    let before = steward.peak_rss_bytes();
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
        .post(format!("{}/v1/ceilometer/events", steward.base_url()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        answer["quarantined"].as_array().unwrap().len(),
        101,
        "{}",
        answer["error"]
    );
    let peak = steward.peak_rss_bytes();
    println!(
        "peak rss before {} MB, after {} MB",
        before / 1_000_000,
        peak / 1_000_000
    );
    assert!(peak < 300_000_000, "peak RSS {} MB", peak / 1_000_000);
    let db = steward.db().await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM quarantine").await, 2);
    steward.terminate();
    steward.cleanup_broker().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_amqp_messages_of_20_mb_stay_within_the_inflight_budget() {
    const MESSAGES: usize = 20;
    let mut steward = Steward::new("limits-amqp", "");
    steward.start().await;
    let run = unique("big");
    let filler = "x".repeat(20_000_000);
    let bodies: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| {
            oslo_v2(&serde_json::json!({
                "message_id": format!("{run}-{i}"),
                "event_type": "compute.instance.update",
                "priority": "INFO",
                "publisher_id": "compute.cmp-01",
                "timestamp": "2026-11-25 00:35:26.638669",
                "payload": {"instance_id": format!("vm-{i}"), "tenant_id": "p-1", "metadata": {"blob": filler}},
            }))
        })
        .collect();
    drop(filler);
    let before = steward.peak_rss_bytes();
    let publisher = Publisher::connect().await;
    publisher
        .publish(&steward.exchange, "notifications.info", bodies)
        .await;
    let db = steward.db().await;
    let stored = wait_for_count(
        &db,
        "SELECT COUNT(*) FROM raw_records",
        MESSAGES as i64,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(stored, MESSAGES as i64, "{}", steward.log());
    let peak = steward.peak_rss_bytes();
    println!(
        "peak rss before {} MB, after {} MB",
        before / 1_000_000,
        peak / 1_000_000
    );
    // One message in flight at a time, held several times over while it is decoded and
    // committed (the old code took 506 MB here).
    assert!(peak < 400_000_000, "peak RSS {} MB", peak / 1_000_000);
    // Prefetch was sized for 20 MB messages: 64 MiB / (8 x 20 MB) rounds down to the minimum.
    assert_eq!(
        metric(&steward.base_url(), "steward_amqp_prefetch").await,
        1.0
    );
    publisher.close().await;
    steward.terminate();
    steward.cleanup_broker().await;
}
