//! Poison inputs on PostgreSQL: a notification whose ids hold a NUL character (legal JSON,
//! refused by PostgreSQL's `TEXT`) among good ones. It must be quarantined with its reason while
//! everything around it is stored, delivered about once (no redelivery loop), over AMQP and HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Duration;

use common::{
    Publisher, Steward, drop_postgres_database, metric, mixed_notification, oslo_v2,
    pg_count as count, pg_wait_for as wait_for, postgres_database, unique,
};
use serde_json::json;
use sqlx::PgPool;

fn poison(run: &str) -> Vec<u8> {
    oslo_v2(&json!({
        "message_id": format!("{run}-poison"),
        "event_type": "compute.instance.delete.end",
        "priority": "INFO",
        "publisher_id": "compute.cmp-01",
        "timestamp": "2026-11-25 00:35:26.638669",
        "payload": {"instance_id": "vm-\u{0}-evil", "tenant_id": "p-1",
                    "terminated_at": "2026-11-25T00:35:26.000000"},
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_poison_among_a_thousand_on_postgres_is_quarantined_once_and_blocks_nothing() {
    const GOOD: usize = 1_000;
    let Some(url) = postgres_database("poison").await else {
        return;
    };
    let first = Steward::new("poison", "");
    let mut steward = Steward::replica(&first, &url);
    steward.start().await;
    let run = unique("p");
    let mut bodies: Vec<Vec<u8>> = (0..GOOD).map(|i| mixed_notification(&run, i)).collect();
    bodies.insert(GOOD / 2, poison(&run));
    let publisher = Publisher::connect().await;
    publisher
        .publish(&steward.exchange, "notifications.info", bodies)
        .await;

    // HTTP: a Ceilometer post with the same kind of poison between two good events.
    let event = |id: &str, instance: &str| {
        json!({"message_id": id, "event_type": "compute.instance.create.end",
               "generated": "2026-11-25T00:35:26.638669", "raw": {},
               "traits": [["tenant_id", 1, "p-1"], ["instance_id", 1, instance],
                          ["launched_at", 4, "2026-11-25T00:30:57.638546"]]})
    };
    let post = json!([
        event(&format!("{run}-h1"), "vm-h1"),
        event(&format!("{run}-h2"), "vm-\u{0}-h2"),
        event(&format!("{run}-h3"), "vm-h3"),
    ]);
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/ceilometer/events", steward.base_url()))
        .body(post.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        400,
        "a refused item is reported, not retried"
    );
    let answer: serde_json::Value = answer.json().await.unwrap();
    let reasons = answer["quarantined"].to_string();
    assert!(reasons.contains("NUL"), "{answer}");
    assert_eq!(answer["stored"], 2, "{answer}");

    let db = PgPool::connect(&url).await.unwrap();
    let stored = wait_for(
        &db,
        "SELECT COUNT(*) FROM raw_records WHERE source = 'amqp'",
        GOOD as i64,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        stored,
        GOOD as i64,
        "every good notification stored:\n{}",
        steward.log()
    );
    let quarantined = wait_for(
        &db,
        "SELECT COUNT(*) FROM quarantine",
        2,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(quarantined, 2, "the AMQP and the HTTP poison, each once");
    let reason: String = sqlx::query_scalar("SELECT reason FROM quarantine WHERE source = 'amqp'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(
        reason.contains("resource_id") && reason.contains("NUL"),
        "{reason}"
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM raw_records WHERE source = 'http'"
        )
        .await,
        2
    );
    // Settle, then count deliveries: nothing loops.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deliveries = metric(
        &steward.base_url(),
        "steward_ingest_received_total{source=\"amqp\"}",
    )
    .await;
    assert!(
        deliveries >= (GOOD + 1) as f64 && deliveries <= (GOOD + 1 + 500) as f64,
        "deliveries {deliveries}"
    );
    // Ordinary notifications open the prefetch to the configured maximum.
    assert_eq!(
        metric(&steward.base_url(), "steward_amqp_prefetch").await,
        2000.0
    );
    assert!(
        !steward.log().contains("store commit failed"),
        "no commit failed:\n{}",
        steward.log()
    );
    publisher.close().await;
    steward.terminate();
    steward.cleanup_broker().await;
    db.close().await;
    drop_postgres_database(&url).await;
}
