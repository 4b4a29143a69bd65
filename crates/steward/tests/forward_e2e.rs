//! End to end: notifications through RabbitMQ → `steward meter serve`, which forwards them in
//! Ceilometer's format to a slow consumer that fails every fifth request; serve is SIGKILLed
//! mid-stream and started again. The consumer ends with every notification (at least once),
//! each resource's events in their order, and `status` shows the forwarder caught up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    Publisher, Steward, count, drop_postgres_database, free_port, mixed_notification, pg_wait_for,
    postgres_database, unique,
};
use serde_json::Value;

/// A consumer that takes `delay` per request and answers 503 to every fifth.
#[derive(Clone, Default)]
struct Consumer {
    delay: Duration,
    requests: Arc<Mutex<u64>>,
    /// The events of every accepted request, in arrival order.
    accepted: Arc<Mutex<Vec<Value>>>,
}

impl Consumer {
    async fn start(addr: SocketAddr, delay: Duration) -> Self {
        let consumer = Consumer {
            delay,
            ..Consumer::default()
        };
        let state = consumer.clone();
        let app = axum::Router::new().route(
            "/post_json",
            axum::routing::post(move |body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    tokio::time::sleep(state.delay).await;
                    let n = {
                        let mut n = state.requests.lock().unwrap();
                        *n += 1;
                        *n
                    };
                    if n % 5 == 0 {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let events: Vec<Value> = serde_json::from_slice(&body).unwrap();
                    state.accepted.lock().unwrap().extend(events);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        consumer
    }

    fn accepted(&self) -> Vec<Value> {
        self.accepted.lock().unwrap().clone()
    }

    fn distinct(&self) -> usize {
        self.accepted()
            .iter()
            .map(|e| e["message_id"].as_str().unwrap().to_owned())
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// The resource an event is about (its `resource_id` trait, else `instance_id`), if any.
fn resource_of(event: &Value) -> Option<String> {
    let traits = event["traits"].as_array()?;
    ["resource_id", "instance_id"].iter().find_map(|name| {
        traits
            .iter()
            .find(|t| t[0] == *name)
            .and_then(|t| t[2].as_str().map(str::to_owned))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_gets_every_event_in_order_across_a_sigkill_and_its_own_failures() {
    let port = free_port();
    let consumer = Consumer::start(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(50),
    )
    .await;
    let mut steward = Steward::new(
        "fwd",
        &format!(
            "  sinks:\n    - name: legacy\n      type: ceilometer\n      \
             url: http://127.0.0.1:{port}/post_json\n      batch_max_events: 10\n"
        ),
    );
    steward.start().await;
    let run = unique("fwd");
    let published = 400;
    let db = steward
        .publish_and_wait(
            (0..published)
                .map(|i| mixed_notification(&run, i))
                .collect(),
            published as i64,
            Duration::from_secs(60),
        )
        .await;
    // Mid-stream: the consumer has some, not all.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while consumer.distinct() < 60 {
        assert!(std::time::Instant::now() < deadline, "{}", steward.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    steward.kill();
    let at_kill = consumer.distinct();
    assert!(at_kill < published, "the kill came too late: {at_kill}");
    steward.start().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while consumer.distinct() < published {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {published} forwarded:\n{}",
            consumer.distinct(),
            steward.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    steward.terminate();

    // Every stored notification arrived; duplicates only from requests cut by the kill.
    let accepted = consumer.accepted();
    let ids: BTreeSet<String> = accepted
        .iter()
        .map(|e| e["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), published);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM raw_records").await,
        published as i64
    );
    assert!(
        accepted.len() - published <= 10,
        "at most one batch resent: {} extra",
        accepted.len() - published
    );
    // Per resource, the first arrivals are in emission order.
    let mut seen = BTreeSet::new();
    let mut per_resource: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for event in &accepted {
        if !seen.insert(event["message_id"].as_str().unwrap().to_owned()) {
            continue;
        }
        if let Some(resource) = resource_of(event) {
            per_resource
                .entry(resource)
                .or_default()
                .push(event["generated"].as_str().unwrap().to_owned());
        }
    }
    assert!(per_resource.len() > 10);
    for (resource, times) in &per_resource {
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "{resource}: {times:?}"
        );
    }
    let status: Value =
        serde_json::from_slice(&steward.cli(&["meter", "status", "-o", "json"]).stdout).unwrap();
    let forwarder = &status["forwarders"][0];
    assert_eq!(forwarder["sink"], "legacy", "{status:#}");
    assert_eq!(forwarder["behind"], 0);
    assert!(forwarder["forwarded"].as_u64().unwrap() >= published as u64);
    // The CLI agrees: nothing left to forward.
    let forward = steward.cli(&["meter", "forward"]);
    let said = String::from_utf8_lossy(&forward.stdout);
    assert!(forward.status.success(), "{said}");
    assert!(said.contains("legacy: forwarded 0 event(s)"), "{said}");
    steward.cleanup_broker().await;
}

/// PostgreSQL, two replicas ingesting at once (their transactions commit out of id order), the
/// forwarding one SIGKILLed mid-stream: the consumer still gets every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_on_postgres_no_event_is_passed_over() {
    let Some(url) = postgres_database("forward").await else {
        return;
    };
    const N: usize = 4_000;
    let port = free_port();
    let consumer = Consumer::start(SocketAddr::from(([127, 0, 0, 1], port)), Duration::ZERO).await;
    let first = Steward::new("fwdpg", "");
    let mut forwarding = Steward::configure(
        Some(&url),
        &first.queue,
        &first.exchange,
        &format!(
            "  sinks:\n    - name: legacy\n      type: ceilometer\n      \
             url: http://127.0.0.1:{port}/post_json\n      batch_max_events: 50\n"
        ),
    );
    let mut other = Steward::replica(&first, &url);
    forwarding.start().await;
    other.start().await;
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let run = unique("fwdpg");
    let exchange = first.exchange.clone();
    let publisher = tokio::spawn(async move {
        let p = Publisher::connect().await;
        for chunk in (0..N).collect::<Vec<_>>().chunks(200) {
            let bodies = chunk.iter().map(|&i| mixed_notification(&run, i)).collect();
            p.publish(&exchange, "notifications.info", bodies).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p.close().await;
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while consumer.distinct() < 500 {
        assert!(std::time::Instant::now() < deadline, "{}", forwarding.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    forwarding.kill();
    forwarding.start().await;
    publisher.await.unwrap();
    let records = "SELECT COUNT(*) FROM raw_records";
    assert_eq!(
        pg_wait_for(&db, records, N as i64, Duration::from_secs(60)).await,
        N as i64
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while consumer.distinct() < N {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {N} forwarded:\n{}",
            consumer.distinct(),
            forwarding.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(forwarding.terminate(), Some(0));
    assert_eq!(other.terminate(), Some(0));
    for s in [&forwarding, &other] {
        assert!(s.log().contains("consuming notifications"));
    }
    db.close().await;
    first.cleanup_broker().await;
    drop_postgres_database(&url).await;
}
