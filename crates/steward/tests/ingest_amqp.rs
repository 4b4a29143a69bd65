//! End to end through RabbitMQ: crash safety (SIGKILL), broker disconnects, quarantine,
//! graceful shutdown. Real broker, real binary, real SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Duration;

use common::{
    Publisher, Steward, count, mixed_expected_facts, mixed_notification, unique, wait_for_count,
};

const RECORDS: &str = "SELECT COUNT(*) FROM raw_records";
const FACTS: &str = "SELECT COUNT(*) FROM facts";

/// 20,000 mixed notifications; SIGKILL four times at different points (right after start-up,
/// then at roughly 20 %, 50 % and 80 % of the stream) and restart each time. Afterwards every
/// notification is stored exactly once with exactly the expected facts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing_and_counts_nothing_twice() {
    const N: usize = 20_000;
    let mut steward = Steward::new("crash", "");
    steward.start().await;
    let run = unique("crash");
    let bodies: Vec<Vec<u8>> = (0..N).map(|i| mixed_notification(&run, i)).collect();
    let exchange = steward.exchange.clone();
    let publisher = tokio::spawn(async move {
        let p = Publisher::connect().await;
        // Publish in slices so the stream is still flowing while Steward is killed.
        for chunk in bodies.chunks(1000) {
            p.publish(&exchange, "notifications.info", chunk.to_vec())
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        p.close().await;
    });

    // Kill right after start-up, before or while the first deliveries arrive.
    steward.kill();
    steward.start().await;
    let db = steward.db().await;
    let mut killed_at = Vec::new();
    for threshold in [4_000, 10_000, 16_000] {
        let seen = wait_for_count(&db, RECORDS, threshold, Duration::from_secs(120)).await;
        assert!(
            seen >= threshold,
            "stalled at {seen} records:\n{}",
            steward.log()
        );
        steward.kill();
        killed_at.push(seen);
        steward.start().await;
    }
    publisher.await.unwrap();
    let stored = wait_for_count(&db, RECORDS, N as i64, Duration::from_secs(120)).await;
    assert!(
        killed_at.iter().all(|&k| k < N as i64),
        "kills must hit mid-stream: {killed_at:?}"
    );

    assert_eq!(
        stored,
        N as i64,
        "every notification stored once:\n{}",
        steward.log()
    );
    assert_eq!(
        count(&db, "SELECT COUNT(DISTINCT message_id) FROM raw_records").await,
        N as i64
    );
    assert_eq!(count(&db, FACTS).await, mixed_expected_facts(N));
    assert_eq!(count(&db, "SELECT COUNT(*) FROM quarantine").await, 0);
    // Let a few more seconds pass: redeliveries of anything not acked must not add records.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&db, RECORDS).await, N as i64);
    assert_eq!(
        steward.terminate(),
        Some(0),
        "graceful stop:\n{}",
        steward.log()
    );
    let status = steward.status();
    assert_eq!(status["summary"]["records_total"], N as i64);
    steward.cleanup_broker().await;
    eprintln!(
        "killed at {killed_at:?} records; restarts: {}",
        steward.restarts
    );
}

/// The broker closes Steward's connection twice mid-stream (as a RabbitMQ restart or a network
/// cut does); Steward reconnects, records a gap per disconnect and stores everything once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_disconnect_mid_stream_is_a_recorded_gap_and_loses_nothing() {
    const N: usize = 10_000;
    let mut steward = Steward::new("broker", "");
    steward.start().await;
    let run = unique("broker");
    let bodies: Vec<Vec<u8>> = (0..N).map(|i| mixed_notification(&run, i)).collect();
    let exchange = steward.exchange.clone();
    let publisher = tokio::spawn(async move {
        let p = Publisher::connect().await;
        // Paced over ~12 s: each rabbitmqctl call takes a second or more under load, and the
        // second disconnect must still land while the stream flows.
        for chunk in bodies.chunks(250) {
            p.publish(&exchange, "notifications.info", chunk.to_vec())
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        p.close().await;
    });
    let db = steward.db().await;
    for threshold in [2_000, 5_000] {
        wait_for_count(&db, RECORDS, threshold, Duration::from_secs(60)).await;
        close_steward_connection(&steward.queue);
        let after = count(&db, RECORDS).await;
        assert!(
            after < N as i64,
            "the disconnect must hit mid-stream ({after} stored)"
        );
        steward.wait_ready().await;
    }
    publisher.await.unwrap();
    let stored = wait_for_count(&db, RECORDS, N as i64, Duration::from_secs(60)).await;
    steward.wait_ready().await;
    assert_eq!(stored, N as i64, "{}", steward.log());
    assert_eq!(count(&db, FACTS).await, mixed_expected_facts(N));

    let gaps = steward.cli(&["meter", "gaps", "-o", "json"]);
    let gaps: serde_json::Value = serde_json::from_slice(&gaps.stdout).unwrap();
    let amqp: Vec<_> = gaps
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["source"] == "amqp")
        .collect();
    assert_eq!(amqp.len(), 2, "one gap per disconnect: {gaps:#}");
    for gap in amqp {
        assert!(gap["end"].is_string(), "gap closed after reconnect: {gap}");
        assert!(
            gap["cause"].as_str().unwrap().contains("CONNECTION_FORCED"),
            "{gap}"
        );
        assert!(gap["start"].as_str() <= gap["end"].as_str());
    }
    assert_eq!(steward.terminate(), Some(0));
    steward.cleanup_broker().await;
}

/// Closes the broker side of Steward's connection (`rabbitmqctl close_connection`).
fn close_steward_connection(queue: &str) {
    let list = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "-q"])
        .output()
        .expect("rabbitmqctl is needed for this test");
    let text = String::from_utf8_lossy(&list.stdout);
    let name = format!("steward-meter {queue}");
    let pid = text
        .lines()
        .find(|l| l.contains(&name))
        .and_then(|l| l.split('\t').next())
        .unwrap_or_else(|| panic!("no connection named {name:?} in:\n{text}"));
    let status = std::process::Command::new("rabbitmqctl")
        .args(["close_connection", pid, "test: broker-side disconnect"])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Malformed bodies between good ones: each bad one is quarantined with its reason and
/// acknowledged (never requeued in a loop), and the good ones after it are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_notifications_are_quarantined_and_do_not_block_the_stream() {
    let mut steward = Steward::new("quarantine", "");
    steward.start().await;
    let run = unique("q");
    let mut bodies = Vec::new();
    let bad: [&[u8]; 4] = [
        b"{not json",
        br#"{"oslo.version": "2.0", "oslo.message": "{\"event_type\": \"x\"}"}"#,
        br#"{"oslo.version": "2.0", "oslo.message": "{\"message_id\": \"m\", \"event_type\": \"compute.instance.create.end\", \"payload\": {}}"}"#,
        b"\xff\xfe",
    ];
    for i in 0..400 {
        bodies.push(mixed_notification(&run, i));
        if i % 100 == 50 {
            bodies.push(bad[i / 100].to_vec());
        }
    }
    let p = Publisher::connect().await;
    p.publish(&steward.exchange, "notifications.info", bodies)
        .await;
    p.close().await;
    let db = steward.db().await;
    assert_eq!(
        wait_for_count(&db, RECORDS, 400, Duration::from_secs(30)).await,
        400
    );
    assert_eq!(
        wait_for_count(
            &db,
            "SELECT COUNT(*) FROM quarantine",
            4,
            Duration::from_secs(10)
        )
        .await,
        4
    );

    let list = steward.cli(&["meter", "quarantine", "list", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let reasons: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("body is not JSON")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("no message_id")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("payload has no instance_id")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not UTF-8")),
        "{reasons:?}"
    );
    let id = list[0]["id"].as_i64().unwrap().to_string();
    let show = steward.cli(&["meter", "quarantine", "show", &id]);
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.contains(&format!("exchange:    {}", steward.exchange)),
        "{show}"
    );

    // Acknowledged, not requeued: after a restart nothing comes back.
    assert_eq!(steward.terminate(), Some(0));
    steward.start().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM quarantine").await, 4);
    let status = steward.status();
    assert_eq!(status["summary"]["sources"][0]["quarantined"], 4);
    assert_eq!(
        status["summary"]["sources"][0]["duplicates"], 0,
        "nothing was redelivered"
    );
    assert_eq!(steward.terminate(), Some(0));
    steward.cleanup_broker().await;
}

/// SIGTERM while notifications flow: the batch in hand is committed and acknowledged, so a
/// restart sees no redeliveries of it (duplicates stay 0) and the totals are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_and_acknowledges_the_batch_in_hand() {
    const N: usize = 5_000;
    let mut steward = Steward::new("sigterm", "");
    steward.start().await;
    let run = unique("term");
    let p = Publisher::connect().await;
    p.publish(
        &steward.exchange,
        "notifications.info",
        (0..N).map(|i| mixed_notification(&run, i)).collect(),
    )
    .await;
    let db = steward.db().await;
    wait_for_count(&db, RECORDS, 1_000, Duration::from_secs(30)).await;
    assert_eq!(steward.terminate(), Some(0), "{}", steward.log());
    let at_stop = count(&db, RECORDS).await;
    steward.start().await;
    assert_eq!(
        wait_for_count(&db, RECORDS, N as i64, Duration::from_secs(30)).await,
        N as i64
    );
    let status = steward.status();
    assert_eq!(
        status["summary"]["sources"][0]["duplicates"], 0,
        "stopped at {at_stop}: {status:#}"
    );
    assert_eq!(steward.terminate(), Some(0));
    p.close().await;
    steward.cleanup_broker().await;
}
