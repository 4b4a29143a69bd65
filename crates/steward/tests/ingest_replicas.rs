//! Several `steward meter serve` replicas: competing consumers on one quorum queue, one
//! PostgreSQL. One replica is SIGKILLed mid-stream; its unacknowledged deliveries go to the
//! other, and the database's unique keys keep every notification exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Duration;

use common::{
    Publisher, Steward, drop_postgres_database, mixed_expected_facts, mixed_notification,
    pg_count as count, pg_wait_for as wait_for, postgres_database, unique,
};
use sqlx::PgPool;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_survive_a_sigkill_with_exact_totals() {
    let Some(url) = postgres_database("replicas").await else {
        return;
    };
    const N: usize = 10_000;

    let first = Steward::new("replica", "");
    let mut a = Steward::replica(&first, &url);
    let mut b = Steward::replica(&first, &url);
    a.start().await;
    b.start().await;
    let db = PgPool::connect(&url).await.unwrap();

    let run = unique("rep");
    let exchange = first.exchange.clone();
    let publisher = tokio::spawn(async move {
        let p = Publisher::connect().await;
        for chunk in (0..N).collect::<Vec<_>>().chunks(250) {
            let bodies = chunk.iter().map(|&i| mixed_notification(&run, i)).collect();
            p.publish(&exchange, "notifications.info", bodies).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p.close().await;
    });
    let records = "SELECT COUNT(*) FROM raw_records";
    let seen = wait_for(&db, records, 3_000, Duration::from_secs(60)).await;
    a.kill();
    assert!(seen < N as i64, "the kill must hit mid-stream ({seen})");
    a.start().await;
    publisher.await.unwrap();
    assert_eq!(
        wait_for(&db, records, N as i64, Duration::from_secs(60)).await,
        N as i64
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(&db, records).await, N as i64, "nothing stored twice");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM facts").await,
        mixed_expected_facts(N)
    );
    // Both replicas did work.
    for s in [&a, &b] {
        let log = s.log();
        assert!(log.contains("consuming notifications"), "{log}");
    }
    let stats: i64 = count(&db, "SELECT CAST(SUM(records) AS BIGINT) FROM ingest_stats").await;
    assert_eq!(stats, N as i64, "the counters agree with the rows");
    assert_eq!(a.terminate(), Some(0));
    assert_eq!(b.terminate(), Some(0));
    db.close().await;
    first.cleanup_broker().await;
    drop_postgres_database(&url).await;
}

/// Per-replica heartbeats: restarting one replica while another listens for Ceilometer posts
/// is no HTTP downtime; stopping both is, from the last one's heartbeat to the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_gap_is_recorded_only_when_no_replica_was_listening() {
    let Some(url) = postgres_database("heartbeats").await else {
        return;
    };
    let first = Steward::new("heartbeat", "");
    let mut a = Steward::replica(&first, &url);
    let mut b = Steward::replica(&first, &url);
    a.start().await;
    b.start().await;
    let db = PgPool::connect(&url).await.unwrap();
    let http_gaps = "SELECT COUNT(*) FROM gaps WHERE source = 'http'";
    // Heartbeats every second; each start checks 1.5 s later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.kill();
    b.start().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        count(&db, http_gaps).await,
        0,
        "a listened throughout:\n{}",
        b.log()
    );
    // Now nobody listens for a while.
    a.kill();
    b.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.start().await;
    let gaps = wait_for(&db, http_gaps, 1, Duration::from_secs(10)).await;
    assert_eq!(gaps, 1, "{}", b.log());
    let (started, ended): (i64, i64) =
        sqlx::query_as("SELECT started_at, ended_at FROM gaps WHERE source = 'http'")
            .fetch_one(&db)
            .await
            .unwrap();
    let window = Duration::from_micros((ended - started) as u64);
    assert!(
        window >= Duration::from_secs(3) && window < Duration::from_secs(6),
        "the window from the last beat to the restart: {window:?}"
    );
    assert_eq!(b.terminate(), Some(0));
    db.close().await;
    first.cleanup_broker().await;
    drop_postgres_database(&url).await;
}
