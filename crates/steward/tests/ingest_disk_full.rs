//! Disk full on SQLite: the store's file system fills up mid-stream (AMQP and HTTP at once) and
//! is freed again. Every message the broker saw acknowledged and every post answered 200 must be
//! in the store afterwards, ingest must resume by itself, and a restart must change nothing.
//!
//! Needs root for a small tmpfs (`mount -t tmpfs`); it fails loudly without it, unless the test
//! command leaves it out on purpose with `STEWARD_TEST_SKIP_TMPFS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Publisher, Steward, ceilometer_event, mixed_notification, unique};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// A tmpfs of `size_mib`, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mib: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "the disk-full test needs to mount a tmpfs (run as root): mount exited {status}"
        );
        Self { path, _dir: dir }
    }

    /// Fills the file system to the last byte; returns the filler's path.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let small = [0u8; 512];
        while file.write_all(&small).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

async fn records(db_file: &Path, source: &str) -> HashSet<String> {
    let options = SqliteConnectOptions::new()
        .filename(db_file)
        .read_only(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    let keys: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT dedup_key FROM raw_records WHERE source = '{source}'"
    )))
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    keys.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_mid_stream_loses_nothing_acknowledged_and_recovers_by_itself() {
    const N: usize = 20_000;
    const POSTS: usize = 600;
    if std::env::var("STEWARD_TEST_SKIP_TMPFS").is_ok_and(|v| v == "1") {
        return;
    }
    let fs = Tmpfs::mount(48);
    let db_file = fs.path.join("steward.db");
    let first = Steward::new("diskfull", "");
    let mut steward = Steward::replica(&first, &format!("sqlite://{}", db_file.display()));
    steward.start().await;
    let run = unique("df");

    let exchange = steward.exchange.clone();
    let amqp_run = run.clone();
    let publisher = tokio::spawn(async move {
        let p = Publisher::connect().await;
        let bodies: Vec<Vec<u8>> = (0..N).map(|i| mixed_notification(&amqp_run, i)).collect();
        for chunk in bodies.chunks(500) {
            p.publish(&exchange, "notifications.info", chunk.to_vec())
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        p.close().await;
    });
    let answered = Arc::new(Mutex::new(HashSet::new()));
    let url = format!("{}/v1/ceilometer/events", steward.base_url());
    let (http_run, http_answered) = (run.clone(), answered.clone());
    let poster = tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        for i in 0..POSTS {
            // Like a sender that retries until acknowledged.
            loop {
                match client
                    .post(&url)
                    .body(ceilometer_event(&http_run, i))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        http_answered
                            .lock()
                            .unwrap()
                            .insert(format!("msg:{http_run}-{i:06}"));
                        break;
                    }
                    Ok(r) if r.status() == 503 => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    Ok(r) => panic!("unexpected answer {}", r.status()),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });

    // Let some traffic land, then fill the disk while the stream flows.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let filler = fs.fill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !steward.log().contains("store commit failed") {
        assert!(
            Instant::now() < deadline,
            "the disk never filled:\n{}",
            steward.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    std::fs::remove_file(&filler).unwrap();

    publisher.await.unwrap();
    poster.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stored = records(&db_file, "amqp").await.len();
        if stored >= N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ingest did not resume: {stored} of {N} stored:\n{}",
            steward.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let check = |amqp: &HashSet<String>, http: &HashSet<String>| {
        let answered = answered.lock().unwrap();
        let missing: Vec<_> = answered.difference(http).take(5).collect();
        assert!(
            missing.is_empty(),
            "posts answered 200 but not stored: {missing:?}"
        );
        assert_eq!(
            amqp.len(),
            N,
            "every published notification stored exactly once"
        );
        assert_eq!(answered.len(), POSTS);
    };
    let amqp = records(&db_file, "amqp").await;
    let http = records(&db_file, "http").await;
    check(&amqp, &http);
    assert_eq!(
        steward.terminate(),
        Some(0),
        "graceful stop:\n{}",
        steward.log()
    );
    steward.start().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(steward.terminate(), Some(0));
    let (amqp_after, http_after) = (
        records(&db_file, "amqp").await,
        records(&db_file, "http").await,
    );
    assert_eq!(
        (amqp_after.len(), http_after.len()),
        (amqp.len(), http.len()),
        "a restart changes nothing"
    );
    check(&amqp_after, &http_after);
    steward.cleanup_broker().await;
}
