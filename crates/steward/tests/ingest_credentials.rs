//! No credentials at rest: real captures from nova, neutron, cinder and octavia with a live-
//! looking Keystone token in their request context (and nested contexts in payloads) go through
//! `serve` over AMQP, broken copies of them into quarantine, and a Ceilometer event whose `raw`
//! holds a context over HTTP. Afterwards the token is nowhere: not in the SQLite file (WAL
//! included), not in a PostgreSQL dump, not in the log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Publisher, Steward, drop_postgres_database, postgres_database, unique};
use serde_json::{Value, json};

const TOKEN: &str = "gAAAAABsteward-live-token-7f3a";

/// The captures' envelopes with the token put where real services put it.
fn bodies_with_tokens() -> Vec<(Vec<u8>, bool)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/real");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let capture: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let Some(message) = capture["envelope"]["oslo.message"].as_str() else {
            continue;
        };
        if !message.contains("_context_auth_token") {
            continue;
        }
        let mut inner: Value = serde_json::from_str(message).unwrap();
        inner["_context_auth_token"] = json!(TOKEN);
        inner["_context_auth_token_info"] =
            json!({"token": {"id": TOKEN, "methods": ["password"]}});
        let inner = inner.to_string().replace("REDACTED-test-token", TOKEN);
        let body = json!({"oslo.version": "2.0", "oslo.message": inner}).to_string();
        out.push((body.clone().into_bytes(), true));
        // The same, cut short: quarantined, and scrubbed there too.
        out.push((body.as_bytes()[..body.len() - 3].to_vec(), false));
    }
    assert!(out.len() > 100, "the captures carry contexts");
    out
}

async fn run(store_url: Option<String>) -> Steward {
    let mut steward = match &store_url {
        Some(url) => Steward::replica(&Steward::new("credentials", ""), url),
        None => Steward::new("credentials", ""),
    };
    steward.start().await;
    let bodies = bodies_with_tokens();
    let expected = bodies.len();
    let publisher = Publisher::connect().await;
    publisher
        .publish(
            &steward.exchange,
            "notifications.info",
            bodies.into_iter().map(|(b, _)| b).collect(),
        )
        .await;
    publisher.close().await;
    let event = json!([{"message_id": unique("ev"), "event_type": "compute.instance.update",
        "generated": "2026-11-25T00:35:26.638669", "traits": [["tenant_id", 1, "p-1"]],
        "raw": {"_context_auth_token": TOKEN, "payload": {"admin_password": TOKEN}}}]);
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/ceilometer/events", steward.base_url()))
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // Every delivery received (stored or quarantined), then stop cleanly.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = steward.status();
        let records = status["summary"]["records_total"].as_i64().unwrap_or(0);
        let quarantined = status["summary"]["quarantined_total"].as_i64().unwrap_or(0);
        // Every capture and its broken copy, plus the HTTP event.
        if records + quarantined > expected as i64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{status}\n{}",
            steward.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(steward.terminate(), Some(0));
    assert!(!steward.log().contains(TOKEN), "token in the log");
    steward.cleanup_broker().await;
    steward
}

fn assert_no_token(what: &str, bytes: &[u8]) {
    let hit = bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes());
    assert!(!hit, "the token is in {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_real_captures_reach_neither_the_sqlite_file_nor_the_log() {
    let steward = run(None).await;
    let store = std::fs::read_dir(steward.db_path().parent().unwrap()).unwrap();
    let mut checked = 0;
    for entry in store {
        let path = entry.unwrap().path();
        assert_no_token(&path.display().to_string(), &std::fs::read(&path).unwrap());
        checked += 1;
    }
    assert!(checked >= 1);
    assert!(steward.db_path().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_real_captures_are_not_in_a_postgres_dump() {
    let Some(url) = postgres_database("credentials").await else {
        return;
    };
    let steward = run(Some(url.clone())).await;
    let dump = std::process::Command::new("pg_dump")
        .arg(&url)
        .output()
        .expect("pg_dump (PostgreSQL client) is needed");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(dump.stdout.len() > 10_000, "the dump holds the records");
    assert!(
        String::from_utf8_lossy(&dump.stdout).contains("***scrubbed***"),
        "scrubbed values are marked"
    );
    assert_no_token("the PostgreSQL dump", &dump.stdout);
    drop(steward);
    drop_postgres_database(&url).await;
}
