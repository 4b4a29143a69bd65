//! Ceilometer-format forwarding: the real captures converted as Ceilometer's default event
//! definitions would, and a forwarder against a consumer on loopback that is down, fails,
//! fails halfway and recovers: every event arrives, in order, and the cursor survives a new
//! forwarder (a restart).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::event::ceilometer_event;
use super::{CeilometerForwarder, ForwardError, ForwarderSettings};
use crate::ingest::amqp::decode::decode_delivery;
use crate::record::{Batch, Decoded};
use crate::scrub::Scrubber;
use crate::store::{ForwardPosition, SqlStore, Store, StoredEvent};
use crate::time::Instant;

/// The real notifications of nova, neutron, cinder and octavia (envelope 1.0 dicts).
fn captures() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/real/notifications.jsonl"
    );
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["body"].clone())
        .collect()
}

fn stored(body: &Value) -> StoredEvent {
    StoredEvent {
        position: ForwardPosition::default(),
        kind: "notification".to_owned(),
        message_id: body["message_id"].as_str().map(str::to_owned),
        event_type: body["event_type"].as_str().map(str::to_owned),
        publisher_id: body["publisher_id"].as_str().map(str::to_owned),
        emitted_at: None,
        received_at: Instant(0),
        body: body.to_string(),
    }
}

fn traits_of(event: &Value) -> BTreeMap<String, (u64, Value)> {
    event["traits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t[0].as_str().unwrap().to_owned(),
                (t[1].as_u64().unwrap(), t[2].clone()),
            )
        })
        .collect()
}

fn first_of<'a>(all: &'a [Value], event_type: &str) -> &'a Value {
    all.iter()
        .find(|b| b["event_type"] == event_type)
        .unwrap_or_else(|| panic!("no {event_type} in the captures"))
}

#[test]
fn real_notifications_become_the_events_ceilometer_would_post() {
    let all = captures();
    for body in &all {
        let event = ceilometer_event(&stored(body), false).unwrap();
        assert_eq!(event["message_id"], body["message_id"]);
        assert_eq!(event["event_type"], body["event_type"]);
        assert_eq!(event["raw"], json!({}));
        // `generated` is the envelope timestamp, naive ISO with a T.
        let ts = body["timestamp"].as_str().unwrap().replace(' ', "T");
        assert!(
            ts.starts_with(event["generated"].as_str().unwrap()),
            "{ts} vs {}",
            event["generated"]
        );
        for t in event["traits"].as_array().unwrap() {
            assert!(!t[2].is_null(), "{t}: traits without a value are left out");
        }
    }
    let create = ceilometer_event(
        &stored(first_of(&all, "compute.instance.create.end")),
        false,
    )
    .unwrap();
    let traits = traits_of(&create);
    let payload = &first_of(&all, "compute.instance.create.end")["payload"];
    assert_eq!(traits["resource_id"], (1, payload["instance_id"].clone()));
    assert_eq!(traits["instance_id"], (1, payload["instance_id"].clone()));
    assert_eq!(traits["vcpus"].0, 2);
    assert_eq!(traits["vcpus"].1, payload["vcpus"]);
    assert_eq!(traits["tenant_id"], (1, payload["tenant_id"].clone()));
    assert_eq!(traits["launched_at"].0, 4);
    assert!(traits.contains_key("availability_zone"), "{traits:?}");
    assert!(traits.contains_key("request_id"));
    let volume = first_of(&all, "volume.create.end");
    let traits = traits_of(&ceilometer_event(&stored(volume), false).unwrap());
    assert_eq!(
        traits["resource_id"],
        (1, volume["payload"]["volume_id"].clone())
    );
    assert_eq!(traits["size"], (2, volume["payload"]["size"].clone()));
    assert_eq!(
        traits["project_id"],
        (1, volume["payload"]["tenant_id"].clone())
    );
    let fip = first_of(&all, "floatingip.create.end");
    let traits = traits_of(&ceilometer_event(&stored(fip), false).unwrap());
    assert_eq!(
        traits["resource_id"],
        (1, fip["payload"]["floatingip"]["id"].clone())
    );
    assert!(
        !traits.contains_key("name"),
        "floating IPs have no name trait"
    );
    let network = first_of(&all, "network.create.end");
    let traits = traits_of(&ceilometer_event(&stored(network), false).unwrap());
    assert_eq!(
        traits["name"],
        (1, network["payload"]["network"]["name"].clone())
    );
    let lb = first_of(&all, "octavia.loadbalancer.create.end");
    let traits = traits_of(&ceilometer_event(&stored(lb), false).unwrap());
    assert_eq!(
        traits["resource_id"],
        (1, lb["payload"]["loadbalancer_id"].clone())
    );
    // Nova's versioned notifications match no default definition: default traits only.
    let versioned = first_of(&all, "instance.create.end");
    let traits = traits_of(&ceilometer_event(&stored(versioned), false).unwrap());
    assert!(
        traits.keys().all(|k| [
            "service",
            "request_id",
            "project_id",
            "tenant_id",
            "user_id"
        ]
        .contains(&k.as_str())),
        "{traits:?}"
    );
    insta::assert_json_snapshot!("compute_instance_create_end", create);
}

#[test]
fn envelope_2_0_and_raw_give_the_same_event_with_the_notification() {
    let all = captures();
    let body = first_of(&all, "volume.create.end");
    let v2 = json!({"oslo.version": "2.0", "oslo.message": body.to_string()});
    let mut stored_v2 = stored(body);
    stored_v2.body = v2.to_string();
    assert_eq!(
        ceilometer_event(&stored_v2, false).unwrap(),
        ceilometer_event(&stored(body), false).unwrap()
    );
    let raw = ceilometer_event(&stored_v2, true).unwrap()["raw"].clone();
    assert_eq!(raw["payload"], body["payload"]);
    assert_eq!(raw["ctxt"]["request_id"], body["_context_request_id"]);
    assert_eq!(raw["metadata"]["message_id"], body["message_id"]);
    // A Ceilometer event stored from Ceilometer's publisher is forwarded as it came.
    let posted = json!({"message_id": "m-1", "event_type": "x", "generated": "2026-01-01T00:00:00",
        "traits": [["tenant_id", 1, "p"]], "raw": {}});
    let mut event = stored(&posted);
    event.kind = "ceilometer_event".to_owned();
    assert_eq!(ceilometer_event(&event, false).unwrap(), posted);
}

/// One request: the answer given, the Authorization header, the body.
type Request = (u16, Option<String>, Value);

/// A consumer on loopback: answers the status the test sets; keeps every request.
#[derive(Clone, Default)]
struct Consumer {
    got: Arc<Mutex<Vec<Request>>>,
    /// Answers to give, in order; 200 when empty.
    answers: Arc<Mutex<Vec<u16>>>,
}

impl Consumer {
    async fn start(addr: Option<SocketAddr>) -> (Self, SocketAddr) {
        let consumer = Consumer::default();
        let state = consumer.clone();
        let app = axum::Router::new().route(
            "/post_json",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let state = state.clone();
                    async move {
                        let status = {
                            let mut answers = state.answers.lock().unwrap();
                            if answers.is_empty() {
                                200
                            } else {
                                answers.remove(0)
                            }
                        };
                        let auth = headers
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_owned());
                        state.got.lock().unwrap().push((
                            status,
                            auth,
                            serde_json::from_slice(&body).unwrap(),
                        ));
                        axum::http::StatusCode::from_u16(status).unwrap()
                    }
                },
            ),
        );
        let listener =
            tokio::net::TcpListener::bind(addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))))
                .await
                .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (consumer, addr)
    }

    /// The message ids the consumer took (2xx), in arrival order.
    fn accepted_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for (status, _, body) in self.got.lock().unwrap().iter() {
            if *status != 200 {
                continue;
            }
            let items = match body {
                Value::Array(items) => items.clone(),
                one => vec![one.clone()],
            };
            ids.extend(
                items
                    .iter()
                    .map(|i| i["message_id"].as_str().unwrap().to_owned()),
            );
        }
        ids
    }
}

/// A store holding the real captures, ingested through the AMQP decoder.
async fn store_with_captures() -> (Arc<SqlStore>, tempfile::TempDir, Vec<String>) {
    let (store, dir) = crate::test_support::store_with(&[]).await;
    let mut batch = Batch::default();
    let mut ids = Vec::new();
    for body in captures() {
        let bytes = serde_json::to_vec(&body).unwrap();
        match decode_delivery(
            &bytes,
            "nova",
            "notifications.info",
            Instant(1),
            &Scrubber::default(),
        ) {
            Decoded::Accepted(accepted) => {
                ids.push((
                    accepted.record.emitted_at,
                    accepted.record.dedup_key.clone(),
                    accepted.record.message_id.clone().unwrap(),
                ));
                batch.accepted.push(accepted);
            }
            Decoded::Quarantined(q) => panic!("capture quarantined: {}", q.reason),
        }
    }
    store.commit(&[batch]).await.unwrap();
    // Events committed together go out in emission order (ties by key).
    ids.sort();
    (store, dir, ids.into_iter().map(|(_, _, id)| id).collect())
}

fn forwarder(url: &str, batch: bool, batch_max_events: u32) -> CeilometerForwarder {
    CeilometerForwarder::new(
        "legacy",
        url,
        &ForwarderSettings {
            batch,
            batch_max_events,
            raw: false,
            timeout: Duration::from_secs(5),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn a_consumer_down_failing_and_failing_halfway_gets_every_event_in_order() {
    let (store, _dir, ids) = store_with_captures().await;
    assert_eq!(ids.len(), 242);
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://steward:s3cret@{free}/post_json");
    // Down: nothing moves, the error names the consumer without its password.
    let down = forwarder(&url, true, 50)
        .forward_once(store.as_ref(), 100)
        .await
        .unwrap_err();
    assert_eq!(down.0.events, 0);
    let ForwardError::Consumer(said) = &down.1 else {
        panic!("{:?}", down.1)
    };
    assert!(said.to_lowercase().contains("refused"), "{said}");
    assert!(
        said.contains("steward:***@") && !said.contains("s3cret"),
        "{said}"
    );
    assert_eq!(
        forwarder(&url, true, 50)
            .position(store.as_ref())
            .await
            .unwrap(),
        ForwardPosition::default()
    );

    // Up: two arrays taken, then 503, then 400: the pass stops at the first failure.
    let (consumer, _) = Consumer::start(Some(free)).await;
    *consumer.answers.lock().unwrap() = vec![200, 200, 503, 400];
    let halfway = forwarder(&url, true, 50)
        .forward_once(store.as_ref(), 100)
        .await
        .unwrap_err();
    assert_eq!((halfway.0.events, halfway.0.requests), (100, 2));
    assert!(halfway.1.to_string().contains("answered 503"));
    // A new forwarder (a restart) starts from the durable cursor; the 400 holds the stream.
    let refused = forwarder(&url, true, 50)
        .forward_once(store.as_ref(), 100)
        .await
        .unwrap_err();
    assert_eq!(refused.0.events, 0);
    assert!(
        refused.1.to_string().contains("the stream waits"),
        "{}",
        refused.1
    );
    let done = forwarder(&url, true, 50)
        .forward_once(store.as_ref(), 100)
        .await
        .unwrap();
    assert_eq!((done.events, done.requests), (142, 3));
    assert_eq!(store.events_behind(done.position).await.unwrap(), 0);
    let again = forwarder(&url, true, 50)
        .forward_once(store.as_ref(), 100)
        .await
        .unwrap();
    assert_eq!(again.requests, 0);

    // Every event once among the accepted requests, in the order stored.
    assert_eq!(consumer.accepted_ids(), ids);
    let got = consumer.got.lock().unwrap().clone();
    assert_eq!(got.len(), 7, "2 + 503 + 400 + 3");
    // Ceilometer's way: credentials in the URL become Basic authentication.
    assert!(
        got.iter()
            .all(|(_, auth, _)| auth.as_deref() == Some("Basic c3Rld2FyZDpzM2NyZXQ="))
    );
    let cursors = store.forward_cursors().await.unwrap();
    assert_eq!(cursors[0].forwarded, 242);
}

#[tokio::test]
async fn without_batching_each_event_is_one_object_per_request() {
    let (store, _dir, ids) = store_with_captures().await;
    let (consumer, addr) = Consumer::start(None).await;
    let one_by_one = forwarder(&format!("http://{addr}/post_json"), false, 50);
    let first = one_by_one.forward_once(store.as_ref(), 5).await.unwrap();
    assert_eq!((first.events, first.requests), (5, 5));
    let got = consumer.got.lock().unwrap().clone();
    assert!(got.iter().all(|(_, _, body)| body.is_object()));
    assert_eq!(consumer.accepted_ids(), ids[..5]);
}
