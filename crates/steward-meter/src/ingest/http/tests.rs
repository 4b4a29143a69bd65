//! HTTP source tests: Ceilometer captures and event fixtures decode to the expected facts; the
//! endpoint answers 2xx only after commit, 400 with reasons (and quarantine), 401, 413, 503.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::{Expect, HttpIngest, decode_body};
use crate::config::Secret;
use crate::ingest::amqp::decode_delivery;
use crate::ingest::{Writer, WriterConfig};
use crate::record::{Accepted, Batch, Decoded, Gap, Source};
use crate::scrub::Scrubber;
use crate::store::{
    CommitOutcome, QuarantineEntry, SqlStore, StatusSummary, Store, StoreError, StoreFuture,
    StoredFact,
};
use crate::time::{Instant, parse_timestamp};

fn fixture(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn capture_body(rel: &str) -> String {
    let capture: Value = serde_json::from_str(&fixture(rel)).unwrap();
    serde_json::to_string(&capture["body"]).unwrap()
}

fn accepted(decoded: Vec<Decoded>) -> Vec<Accepted> {
    decoded
        .into_iter()
        .map(|d| match d {
            Decoded::Accepted(a) => a,
            Decoded::Quarantined(q) => panic!("quarantined: {}", q.reason),
        })
        .collect()
}

const P: &str = "7c150a59fe714e6f9263774af9688f0e";

#[test]
fn real_ceilometer_event_captures_decode_to_facts() {
    for (file, instance, project) in [
        (
            "captures/ceilometer-http/events-1.capture.json",
            "6b062d41-0000-4000-8000-000000000000",
            "a3f2c6b0e1d94b6f8c1f1d7e2a9b0c11",
        ),
        (
            "captures/ceilometer-http/events-2.capture.json",
            "6b062d41-0000-4000-8000-000000000001",
            "7d1c5e3f9a2b4c6d8e0f1a2b3c4d5e6f",
        ),
    ] {
        let items = accepted(decode_body(
            capture_body(file).as_bytes(),
            Expect::Events,
            Instant(0),
            &Scrubber::default(),
        ));
        assert_eq!(items.len(), 1, "{file}");
        let f = &items[0].facts[0];
        assert_eq!(
            (f.resource_type.as_str(), f.kind.as_str()),
            ("instance", "created"),
            "{file}"
        );
        assert_eq!(f.resource_id, instance);
        assert_eq!(f.project_id.as_deref(), Some(project));
        assert_eq!(f.origin.as_str(), "ceilometer");
        assert_eq!(
            f.time_source.as_str(),
            "payload",
            "launched_at trait dates it"
        );
        assert!(items[0].record.dedup_key.starts_with("msg:"));
    }
}

#[test]
fn real_ceilometer_sample_captures_decode() {
    let items = accepted(decode_body(
        capture_body("captures/ceilometer-http/samples-1.capture.json").as_bytes(),
        Expect::Samples,
        Instant(0),
        &Scrubber::default(),
    ));
    assert_eq!(items.len(), 5);
    let keys: Vec<&str> = items.iter().map(|a| a.record.dedup_key.as_str()).collect();
    assert!(
        keys.contains(&"sample:vcpus:6b062d41-0000-4000-8000-000000000000:1795566926638669"),
        "{keys:?}"
    );
    // Billable gauges become measured facts; booting time is not billable.
    let measured: Vec<_> = items.iter().flat_map(|a| &a.facts).collect();
    assert_eq!(measured.len(), 4);
    let vcpus = measured
        .iter()
        .find(|f| f.attributes["meter"] == "vcpus")
        .unwrap();
    assert_eq!(vcpus.kind.as_str(), "measured");
    assert_eq!(vcpus.attributes["volume"], 1);
    assert_eq!(vcpus.attributes["flavor_name"], "m1.tiny");
}

/// (fixture, resource type, resource id, kind, owner, time, source)
type EventExpectation = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
);

const EVENTS: &[EventExpectation] = &[
    (
        "volume.create.end",
        "volume",
        "2c1f0a57-8e1b-4a9f-9a65-1c6a1f1e7b10",
        "created",
        Some(P),
        "2023-05-03T09:00:05Z",
        "payload",
    ),
    (
        "volume.resize.end",
        "volume",
        "2c1f0a57-8e1b-4a9f-9a65-1c6a1f1e7b10",
        "resized",
        Some(P),
        "2023-05-03T11:30:00Z",
        "envelope",
    ),
    (
        "snapshot.create.end",
        "snapshot",
        "7d2e9a1c-3b4f-4c5d-8e6f-a1b2c3d4e5f6",
        "created",
        Some(P),
        "2023-05-03T20:00:00Z",
        "payload",
    ),
    (
        "image.upload",
        "image",
        "5f4c6a3e-8d0b-4a4e-9a57-2f2d3c1b0a99",
        "uploaded",
        Some(P),
        "2023-05-03T10:02:31Z",
        "envelope",
    ),
    (
        "floatingip.create.end",
        "floating_ip",
        "2f245a7b-796b-4f26-9cf9-9e82d248fda7",
        "created",
        None,
        "2023-05-03T10:11:13Z",
        "envelope",
    ),
    (
        "octavia.loadbalancer.create.end",
        "load_balancer",
        "8d4c8f66-7ac1-408e-82d5-59f6fcdea9ee",
        "created",
        Some(P),
        "2023-05-03T10:11:12.123456Z",
        "envelope",
    ),
];

#[test]
fn ceilometer_event_fixtures_decode_to_their_facts() {
    for (name, rtype, id, kind, owner, time, source) in EVENTS {
        let body = fixture(&format!("ceilometer/{name}.json"));
        let items = accepted(decode_body(
            body.as_bytes(),
            Expect::Events,
            Instant(0),
            &Scrubber::default(),
        ));
        let f = &items[0].facts[0];
        assert_eq!(f.resource_type.as_str(), *rtype, "{name}");
        assert_eq!(f.resource_id, *id, "{name}");
        assert_eq!(f.kind.as_str(), *kind, "{name}");
        assert_eq!(f.project_id.as_deref(), *owner, "{name}: owner");
        assert_eq!(
            f.effective_at,
            parse_timestamp(time).unwrap().unwrap(),
            "{name}"
        );
        assert_eq!(f.time_source.as_str(), *source, "{name}");
    }
}

#[test]
fn neutron_events_keep_the_caller_apart_from_the_owner() {
    let body = fixture("ceilometer/floatingip.create.end.json");
    let items = accepted(decode_body(
        body.as_bytes(),
        Expect::Events,
        Instant(0),
        &Scrubber::default(),
    ));
    let f = &items[0].facts[0];
    assert_eq!(
        f.project_id, None,
        "ceilometer's network traits name the caller, not the owner"
    );
    assert_eq!(
        f.attributes["caller_project_id"],
        "admin0000000000000000000000000000"
    );
}

#[test]
fn catch_all_events_are_stored_without_facts() {
    let body = fixture("ceilometer/backup.create.end.json");
    let items = accepted(decode_body(
        body.as_bytes(),
        Expect::Events,
        Instant(0),
        &Scrubber::default(),
    ));
    assert_eq!(items.len(), 1);
    assert!(items[0].facts.is_empty());
}

#[test]
fn event_and_notification_of_one_message_share_the_dedup_key() {
    let notification = fixture("captures/oslo/nova-compute.instance.create.end.v2.body");
    let Decoded::Accepted(n) = decode_delivery(
        notification.as_bytes(),
        "nova",
        "notifications.info",
        Instant(0),
        &Scrubber::default(),
    ) else {
        panic!()
    };
    let message_id = n.record.message_id.clone().unwrap();
    let event = serde_json::json!([{
        "message_id": message_id, "event_type": "compute.instance.create.end",
        "generated": "2026-11-25T00:01:39.618401", "raw": {}, "traits": []
    }]);
    let e = accepted(decode_body(
        event.to_string().as_bytes(),
        Expect::Events,
        Instant(0),
        &Scrubber::default(),
    ));
    assert_eq!(e[0].record.dedup_key, n.record.dedup_key);
}

#[test]
fn single_objects_and_counter_keys_are_accepted() {
    let one = r#"{"counter_name": "volume.size", "counter_type": "gauge", "counter_unit": "GB",
        "counter_volume": 20, "resource_id": "v-1", "project_id": "p", "user_id": "u",
        "timestamp": "2023-05-03T10:11:12.123456", "resource_metadata": {}}"#;
    let items = accepted(decode_body(
        one.as_bytes(),
        Expect::Samples,
        Instant(0),
        &Scrubber::default(),
    ));
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].facts[0].resource_type.as_str(), "volume");
    assert_eq!(items[0].facts[0].attributes["volume"], 20);
}

#[test]
fn malformed_items_are_quarantined_one_by_one() {
    let body = r#"[{"name": "vcpus", "type": "gauge", "volume": 1, "resource_id": "r",
        "timestamp": "2023-05-03T10:11:12"}, {"name": "vcpus"}, 7,
        {"name": "x", "resource_id": "r", "volume": 1, "timestamp": "someday"}]"#;
    let decoded = decode_body(
        body.as_bytes(),
        Expect::Samples,
        Instant(0),
        &Scrubber::default(),
    );
    let reasons: Vec<String> = decoded
        .iter()
        .filter_map(|d| match d {
            Decoded::Quarantined(q) => Some(q.reason.clone()),
            Decoded::Accepted(_) => None,
        })
        .collect();
    assert_eq!(decoded.len(), 4);
    assert_eq!(
        reasons,
        [
            "item 1: sample has no resource_id",
            "item 2: not a JSON object",
            "item 3: field timestamp: unrecognised timestamp \"someday\""
        ]
    );
    let whole = decode_body(
        b"{\"truncated",
        Expect::Events,
        Instant(0),
        &Scrubber::default(),
    );
    assert!(
        matches!(&whole[..], [Decoded::Quarantined(q)] if q.reason.starts_with("body is not JSON"))
    );
}

/// A store whose commits always fail (a database outage).
#[derive(Debug)]
struct BrokenStore;

fn broken<T>() -> StoreFuture<'static, T> {
    Box::pin(async { Err(StoreError::Query(sqlx::Error::PoolTimedOut)) })
}

impl Store for BrokenStore {
    fn commit<'a>(&'a self, _: &'a [Batch]) -> StoreFuture<'a, Vec<CommitOutcome>> {
        broken()
    }
    fn open_gap<'a>(&'a self, _: Source, _: Instant, _: &'a str) -> StoreFuture<'a, i64> {
        broken()
    }
    fn close_gap(&self, _: i64, _: Instant) -> StoreFuture<'_, ()> {
        broken()
    }
    fn record_gap<'a>(
        &'a self,
        _: Source,
        _: Instant,
        _: Instant,
        _: &'a str,
    ) -> StoreFuture<'a, bool> {
        broken()
    }
    fn close_stale_gaps(&self, _: Source, _: Instant) -> StoreFuture<'_, u64> {
        broken()
    }
    fn gaps(&self, _: u32) -> StoreFuture<'_, Vec<Gap>> {
        broken()
    }
    fn heartbeat<'a>(
        &'a self,
        _: Source,
        _: &'a str,
        _: Instant,
        _: Instant,
    ) -> StoreFuture<'a, ()> {
        broken()
    }
    fn heartbeats(&self, _: Source) -> StoreFuture<'_, Vec<crate::store::Heartbeat>> {
        broken()
    }
    fn status(&self) -> StoreFuture<'_, StatusSummary> {
        broken()
    }
    fn quarantine_list(&self, _: u32) -> StoreFuture<'_, Vec<QuarantineEntry>> {
        broken()
    }
    fn quarantine_get(&self, _: i64) -> StoreFuture<'_, Option<QuarantineEntry>> {
        broken()
    }
    fn facts(&self, _: u32) -> StoreFuture<'_, Vec<StoredFact>> {
        broken()
    }
    fn resources_until(
        &self,
        _: Instant,
    ) -> crate::store::StoreStream<'_, crate::store::ResourceFacts> {
        Box::pin(futures_lite::stream::once(Err(StoreError::Query(
            sqlx::Error::PoolClosed,
        ))))
    }
    fn coverage(&self) -> StoreFuture<'_, crate::store::Coverage> {
        broken()
    }
    fn gaps_overlapping(&self, _: Instant, _: Instant) -> StoreFuture<'_, Vec<Gap>> {
        broken()
    }
    crate::test_support::store_methods_failing_with!(broken);
}

/// Serves the ingest routes on a loopback port; returns the base URL.
async fn serve(store: Arc<dyn Store>, token: Option<&str>, limit: usize) -> String {
    let (writer, _task) = Writer::spawn(store, WriterConfig::default());
    let app = HttpIngest::new(writer, token.map(Secret::new), Scrubber::default())
        .with_body_limits(limit, std::time::Duration::from_secs(2))
        .router();
    let (addr, stop, server) = spawn_server(app, 1, 1).await;
    tokio::spawn(async move {
        let _ = server.await;
        drop(stop);
    });
    format!("http://{addr}")
}

/// Runs [`crate::server::run`] on a loopback port with the given header timeout and shutdown
/// grace (seconds); returns the address, the shutdown switch and the server task.
async fn spawn_server(
    app: axum::Router,
    header_read_timeout_secs: u64,
    shutdown_grace_secs: u64,
) -> (
    std::net::SocketAddr,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = crate::server::ServerLimits {
        header_read_timeout: std::time::Duration::from_secs(header_read_timeout_secs),
        shutdown_grace: std::time::Duration::from_secs(shutdown_grace_secs),
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(crate::server::run(listener, app, limits, shutdown));
    (addr, stop, server)
}

async fn sqlite() -> (Arc<SqlStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open(&format!("sqlite://{}/s.db", dir.path().display()))
        .await
        .unwrap();
    (Arc::new(store), dir)
}

#[tokio::test]
async fn answers_only_after_commit_and_counts_duplicates() {
    let (store, _dir) = sqlite().await;
    let base = serve(store.clone(), None, 1 << 20).await;
    let client = reqwest::Client::new();
    let body = capture_body("captures/ceilometer-http/samples-1.capture.json");
    let post = || {
        client
            .post(format!("{base}/v1/ceilometer/samples"))
            .body(body.clone())
            .send()
    };
    let first = post().await.unwrap();
    assert_eq!(first.status(), 200);
    // 200 means committed: the rows are there when the answer arrives.
    assert_eq!(store.status().await.unwrap().records_total, 5);
    let second: Value = post().await.unwrap().json().await.unwrap();
    assert_eq!(second["duplicates"], 5);
    assert_eq!(store.status().await.unwrap().records_total, 5);
}

#[tokio::test]
async fn malformed_input_gets_400_with_reasons_and_is_kept() {
    let (store, _dir) = sqlite().await;
    let base = serve(store.clone(), None, 1 << 20).await;
    let body = r#"[{"message_id": "m-ok", "event_type": "x.y", "generated": "2023-05-03T10:11:12", "traits": []},
                   {"event_type": "x.y"}]"#;
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/ceilometer/events"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["quarantined"][0], "item 1: event has no message_id");
    assert_eq!(
        answer["stored"], 1,
        "the good item of the same post is stored"
    );
    let q = store.quarantine_list(5).await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].body, br#"{"event_type": "x.y"}"#);
}

#[tokio::test]
async fn token_is_required_when_configured() {
    let (store, _dir) = sqlite().await;
    let base = serve(store.clone(), Some("s3cret"), 1 << 20).await;
    let client = reqwest::Client::new();
    let body = capture_body("captures/ceilometer-http/events-1.capture.json");
    let url = format!("{base}/v1/ceilometer/events");
    let none = client.post(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = client
        .post(&url)
        .bearer_auth("nope")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        store.status().await.unwrap().records_total,
        0,
        "nothing stored without auth"
    );
    let bearer = client
        .post(&url)
        .bearer_auth("s3cret")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    // Ceilometer's publisher can only send Basic auth from the URL's userinfo.
    let basic = client
        .post(&url)
        .basic_auth("steward", Some("s3cret"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let (store, _dir) = sqlite().await;
    let base = serve(store.clone(), None, 1024).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/ceilometer/samples"))
        .body(vec![b' '; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(store.status().await.unwrap().quarantined_total, 0);
}

#[tokio::test]
async fn store_failure_gets_503_so_nothing_is_acknowledged() {
    let base = serve(Arc::new(BrokenStore), None, 1 << 20).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/ceilometer/events"))
        .body(capture_body(
            "captures/ceilometer-http/events-1.capture.json",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains("retry"),
        "{answer}"
    );
}

#[test]
fn a_sample_in_a_leap_second_is_not_a_duplicate_of_the_next_second() {
    let sample = |ts: &str| {
        serde_json::json!({"name": "cpu", "resource_id": "r-1", "volume": 1, "type": "cumulative",
                           "unit": "ns", "timestamp": ts})
    };
    let body = serde_json::json!([
        sample("2016-12-31T23:59:59.999"),
        sample("2016-12-31T23:59:60"),
        sample("2017-01-01T00:00:00"),
    ])
    .to_string();
    let items = accepted(decode_body(
        body.as_bytes(),
        Expect::Samples,
        Instant(0),
        &Scrubber::default(),
    ));
    let keys: std::collections::HashSet<_> =
        items.iter().map(|a| a.record.dedup_key.clone()).collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
}

/// Sends `head` (and then nothing) on a raw connection; returns what the server answered and
/// how long it took, or `None` when it closed the connection without an answer.
async fn raw_exchange(
    base: &str,
    head: &str,
    wait: std::time::Duration,
) -> (Option<String>, std::time::Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server held the connection for more than {wait:?}"
    );
    let text = String::from_utf8_lossy(&answer).into_owned();
    ((!text.is_empty()).then_some(text), started.elapsed())
}

#[tokio::test]
async fn an_announced_oversize_body_gets_413_before_it_is_sent() {
    let (store, _dir) = sqlite().await;
    let base = serve(store.clone(), None, 1024).await;
    let head =
        "POST /v1/ceilometer/events HTTP/1.1\r\nhost: x\r\ncontent-length: 100000000\r\n\r\n";
    let (answer, took) = raw_exchange(&base, head, std::time::Duration::from_secs(5)).await;
    let answer = answer.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("max_body_bytes"), "{answer}");
    assert!(took < std::time::Duration::from_secs(1), "{took:?}");
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_cut_off_with_413() {
    let (store, _dir) = sqlite().await;
    let base = serve(store.clone(), None, 1024).await;
    let chunk = "x".repeat(4000);
    let head = format!(
        "POST /v1/ceilometer/events HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
        chunk.len()
    );
    let (answer, _) = raw_exchange(&base, &head, std::time::Duration::from_secs(5)).await;
    assert!(answer.expect("an answer").starts_with("HTTP/1.1 413"));
    assert_eq!(store.status().await.unwrap().records_total, 0);
}

#[tokio::test]
async fn a_client_stalling_in_the_header_is_dropped() {
    let (store, _dir) = sqlite().await;
    let base = serve(store, None, 1 << 20).await;
    // The test server's header read timeout is 1 s.
    let (_, took) = raw_exchange(
        &base,
        "POST /v1/ceilometer/events HTTP/1.1\r\nhost:",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(took >= std::time::Duration::from_millis(900), "{took:?}");
}

#[tokio::test]
async fn a_client_stalling_in_the_body_gets_408_and_nothing_is_stored() {
    let (store, _dir) = sqlite().await;
    let base = serve(store.clone(), None, 1 << 20).await;
    // The test server's body timeout is 2 s.
    let head = "POST /v1/ceilometer/events HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\n[{\"message_id\"";
    let (answer, took) = raw_exchange(&base, head, std::time::Duration::from_secs(6)).await;
    assert!(answer.expect("an answer").starts_with("HTTP/1.1 408"));
    assert!(took >= std::time::Duration::from_millis(1900), "{took:?}");
    assert_eq!(store.status().await.unwrap().records_total, 0);
}

#[tokio::test]
async fn shutdown_finishes_in_bounded_time_with_a_client_mid_body() {
    use tokio::io::AsyncWriteExt;
    let (store, _dir) = sqlite().await;
    let (writer, _task) = Writer::spawn(store, WriterConfig::default());
    let app = HttpIngest::new(writer, None, Scrubber::default())
        .with_body_limits(1 << 20, std::time::Duration::from_secs(600))
        .router();
    let (addr, stop, server) = spawn_server(app, 600, 1).await;
    let mut mid_body = tokio::net::TcpStream::connect(addr).await.unwrap();
    mid_body
        .write_all(
            b"POST /v1/ceilometer/events HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\n[",
        )
        .await
        .unwrap();
    let mut mid_header = tokio::net::TcpStream::connect(addr).await.unwrap();
    mid_header.write_all(b"POST /v1/ceil").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    stop.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("shutdown is bounded")
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_post_of_countless_tiny_bad_items_is_kept_whole_and_answered() {
    let (store, _dir) = sqlite().await;
    let base = serve(store.clone(), None, 16 << 20).await;
    let items = 300_000;
    let mut body = String::with_capacity(items * 2 + 200);
    body.push('[');
    for i in 0..items {
        if i == 1234 {
            body.push_str(r#"{"message_id": "good-1", "event_type": "compute.instance.exists", "traits": []},"#);
        }
        body.push_str(if i + 1 < items { "1," } else { "1" });
    }
    body.push(']');
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/ceilometer/events"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["stored"], 1, "the good item among them is stored");
    let reasons = answer["quarantined"].as_array().unwrap();
    assert_eq!(reasons.len(), super::decode::MAX_ITEM_QUARANTINE + 1);
    assert!(
        reasons
            .last()
            .unwrap()
            .as_str()
            .unwrap()
            .contains("300000 of 300001 items are malformed"),
        "{}",
        reasons.last().unwrap()
    );
    // The hundred identical bad items are one entry (same bytes), plus the whole post.
    let status = store.status().await.unwrap();
    assert_eq!(status.quarantined_total, 2);
    // The whole post is kept byte for byte.
    let whole = store.quarantine_list(1).await.unwrap().remove(0);
    assert_eq!(whole.body, body.as_bytes());
}

#[test]
fn streaming_decode_hands_over_bounded_chunks_and_stops_when_asked() {
    let body = format!(
        "[{}]",
        vec![r#"{"message_id": "m", "event_type": "x"}"#; 2500].join(",")
    );
    let mut sizes = Vec::new();
    let summary = super::decode_stream(
        body.as_bytes(),
        Expect::Events,
        Instant(0),
        &Scrubber::default(),
        1000,
        |chunk| {
            sizes.push(chunk.len());
            true
        },
    );
    assert_eq!(sizes, [1000, 1000, 500]);
    assert_eq!(summary.items, 2500);
    let mut calls = 0;
    super::decode_stream(
        body.as_bytes(),
        Expect::Events,
        Instant(0),
        &Scrubber::default(),
        1000,
        |_| {
            calls += 1;
            false
        },
    );
    assert_eq!(calls, 1, "a closed sink stops the decoding");
    // A truncated list is one entry, never stored in part.
    let truncated = &body.as_bytes()[..body.len() - 1];
    let all = decode_body(truncated, Expect::Events, Instant(0), &Scrubber::default());
    assert_eq!(all.len(), 1);
    assert!(
        matches!(&all[0], Decoded::Quarantined(q) if q.reason.starts_with("body is not a JSON array"))
    );
}
