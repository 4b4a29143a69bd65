//! End to end through HTTP: Ceilometer-style posts while the server is SIGKILLed and restarted.
//! Whatever was answered 2xx must be in the store afterwards, and nothing twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Steward, ceilometer_event, count, unique, wait_for_count};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_answered_2xx_survive_sigkill_and_none_is_stored_twice() {
    const SENDERS: usize = 8;
    const PER_SENDER: usize = 400;
    let mut steward = Steward::new("http-crash", "");
    steward.start().await;
    let run = unique("h");
    let url = format!("{}/v1/ceilometer/events", steward.base_url());
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let attempts = Arc::new(Mutex::new(0usize));
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (url, run, acked, attempts) =
            (url.clone(), run.clone(), acked.clone(), attempts.clone());
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            for i in (s * PER_SENDER)..((s + 1) * PER_SENDER) {
                // Like a sender that retries until acknowledged (Ceilometer itself would drop it).
                loop {
                    *attempts.lock().unwrap() += 1;
                    match client
                        .post(&url)
                        .body(ceilometer_event(&run, i))
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => {
                            acked.lock().unwrap().insert(format!("msg:{run}-{i:06}"));
                            break;
                        }
                        Ok(r) => panic!("unexpected answer {}", r.status()),
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
        }));
    }
    let db = steward.db().await;
    let total = (SENDERS * PER_SENDER) as i64;
    for threshold in [300, 1_200, 2_400] {
        wait_for_count(
            &db,
            "SELECT COUNT(*) FROM raw_records",
            threshold,
            Duration::from_secs(60),
        )
        .await;
        steward.kill();
        tokio::time::sleep(Duration::from_millis(200)).await;
        steward.start().await;
    }
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len() as i64, total);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM raw_records").await,
        total,
        "none twice"
    );
    // Every acknowledged key is in the store.
    let stored: HashSet<String> =
        sqlx::query_scalar::<_, String>("SELECT dedup_key FROM raw_records")
            .fetch_all(&db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM facts").await, total);
    let attempts = *attempts.lock().unwrap();
    assert!(
        attempts > acked.len(),
        "the kills must have failed some posts ({attempts} attempts)"
    );

    // Downtime is a gap for the HTTP source (Ceilometer drops what it cannot post). The last
    // restart's window is recorded 1.5 heartbeat intervals after it, or at the latest at
    // shutdown.
    assert_eq!(steward.terminate(), Some(0));
    let gaps = steward.cli(&["meter", "gaps", "-o", "json"]);
    let gaps: serde_json::Value = serde_json::from_slice(&gaps.stdout).unwrap();
    let http_gaps = gaps
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["source"] == "http")
        .count();
    // One gap per kill, or fewer when a restarted replica was killed again before its first
    // heartbeat: it never recorded that it listened, so the two downtimes are one gap
    // (over-reported, never lost; seen once under load in CI).
    assert!(
        (1..=3).contains(&http_gaps),
        "one downtime gap per kill, or merged ones: {gaps:#}"
    );
    steward.cleanup_broker().await;
}

/// SIGTERM while one client is stuck mid-body and another mid-header: `serve` still exits, and
/// within its shutdown grace (2 s here) plus the final commit, not never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_bounded_time_with_stalled_clients() {
    use tokio::io::AsyncWriteExt;
    let mut steward = Steward::new(
        "http-stall",
        "    shutdown_grace_secs: 2\n    header_read_timeout_secs: 600\n    body_read_timeout_secs: 600\n",
    );
    steward.start().await;
    let addr = format!("127.0.0.1:{}", steward.port);
    let mut mid_body = tokio::net::TcpStream::connect(&addr).await.unwrap();
    mid_body
        .write_all(
            b"POST /v1/ceilometer/events HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n[{",
        )
        .await
        .unwrap();
    let mut mid_header = tokio::net::TcpStream::connect(&addr).await.unwrap();
    mid_header
        .write_all(b"POST /v1/ceilometer/ev")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let code = tokio::task::spawn_blocking(move || {
        let code = steward.terminate();
        (code, steward)
    })
    .await
    .unwrap();
    let (code, steward) = code;
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{}", steward.log());
    assert!(
        took < Duration::from_secs(8),
        "SIGTERM took {took:?}:\n{}",
        steward.log()
    );
    assert!(
        steward.log().contains("dropping them unanswered"),
        "the stalled connections were cut at the grace:\n{}",
        steward.log()
    );
    steward.cleanup_broker().await;
}

/// One writer per SQLite store: a second `serve` on the same file is refused and names the
/// process that holds it; once that one is gone (even by SIGKILL), the store can be served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_the_same_sqlite_store_is_refused() {
    let mut steward = Steward::new("one-writer", "");
    steward.start().await;
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
        .args([
            "--config",
            steward.config.to_str().unwrap(),
            "meter",
            "serve",
        ])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!(
            "already served by another process (pid {}",
            steward.pid()
        )),
        "{stderr}"
    );
    assert!(steward.is_ready().await, "the first one is undisturbed");
    steward.kill();
    steward.start().await;
    assert_eq!(steward.terminate(), Some(0));
    steward.cleanup_broker().await;
}
