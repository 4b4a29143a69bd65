//! End to end: notifications of three projects through RabbitMQ → `serve` → `close`, then
//! `steward meter push` to a webhook receiver that is down (connection refused), then failing
//! (503), then well: every project's report arrives once, signed; a push SIGKILLed after the
//! receiver got a correction but before the outbox recorded it resends it under the same id,
//! so the receiver keeps one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Steward, closed_may_with, free_port, server_of};
use serde_json::Value;

const SECRET: &str = "whsec_c3Rld2FyZC1lMmUtd2ViaG9vay1zZWNyZXQta2V5";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    timestamp: i64,
    signature: String,
    body: Vec<u8>,
    status: u16,
}

/// A receiver that answers with a status the test sets (after an optional delay) and keeps, as
/// a real one would, the ids it accepted.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    answer: Arc<Mutex<(u16, u64)>>,
}

impl Receiver {
    async fn start(addr: SocketAddr) -> Self {
        let receiver = Receiver::default();
        receiver.answer(200, 0);
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/billing",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let state = state.clone();
                    async move {
                        let (status, delay_ms) = *state.answer.lock().unwrap();
                        let header = |name: &str| {
                            headers
                                .get(name)
                                .map(|v| v.to_str().unwrap().to_owned())
                                .unwrap_or_default()
                        };
                        assert_eq!(header("idempotency-key"), header("webhook-id"));
                        state.got.lock().unwrap().push(Got {
                            id: header("webhook-id"),
                            timestamp: header("webhook-timestamp").parse().unwrap(),
                            signature: header("webhook-signature"),
                            body: body.to_vec(),
                            status,
                        });
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                        axum::http::StatusCode::from_u16(status).unwrap()
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        receiver
    }

    fn answer(&self, status: u16, delay_ms: u64) {
        *self.answer.lock().unwrap() = (status, delay_ms);
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

/// `steward meter push --period 2023-05 …` with the secret in its environment.
fn push(steward: &Steward) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
    command
        .arg("--config")
        .arg(&steward.config)
        .args(["meter", "push", "--period", "2023-05"])
        .env("STEWARD_TEST_WEBHOOK_SECRET", SECRET);
    command
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_then_failing_gets_every_report_once_and_a_crash_replays_by_id() {
    let port = free_port();
    let mut steward = Steward::new(
        "hook",
        &format!(
            "  sinks:\n    - name: billing\n      type: webhook\n      \
             url: http://127.0.0.1:{port}/billing\n      \
             secret: ${{STEWARD_TEST_WEBHOOK_SECRET:-{SECRET}}}\n      timeout_secs: 60\n"
        ),
    );
    let projects = ["p-alpha", "p-beta", "p-gamma"];
    let run = closed_may_with(&mut steward, &projects).await;

    // Nothing listens yet: refused, three rows waiting, exit 1.
    let refused = push(&steward).output().unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", said(&refused));
    let text = said(&refused);
    assert_eq!(text.matches("billing p-").count(), 3, "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
    // Up but failing: 503 for every report, still waiting.
    let receiver = Receiver::start(SocketAddr::from(([127, 0, 0, 1], port))).await;
    receiver.answer(503, 0);
    let failing = push(&steward).output().unwrap();
    assert_eq!(failing.status.code(), Some(1));
    assert_eq!(said(&failing).matches("answered 503").count(), 3);
    let status = steward.cli(&["meter", "status", "-o", "json"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        status["outbox"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["sink"] == "billing" && o["state"] == "planned" && o["rows"] == 3),
        "{status:#}"
    );
    // Well: each report delivered, once; pushing again sends nothing.
    receiver.answer(200, 0);
    let delivered = push(&steward).output().unwrap();
    assert!(delivered.status.success(), "{}", said(&delivered));
    assert_eq!(said(&delivered).matches(": confirmed (msg_").count(), 3);
    let again = push(&steward).output().unwrap();
    assert!(again.status.success());
    let got = receiver.got();
    assert_eq!(got.len(), 6, "three 503s and three 200s");

    let key = steward_meter::sinks::webhook::signing_key(SECRET).unwrap();
    let mut by_project = BTreeMap::new();
    for request in &got {
        assert_eq!(
            request.signature,
            steward_meter::sinks::webhook::signature(
                &key,
                &request.id,
                request.timestamp,
                &request.body
            ),
            "signature of {}",
            request.id
        );
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["type"], "steward.report.closed");
        let project = body["data"]["project"].as_str().unwrap().to_owned();
        by_project
            .entry(project)
            .or_insert_with(Vec::new)
            .push(request.clone());
    }
    assert_eq!(by_project.keys().collect::<Vec<_>>(), projects);
    for (project, requests) in &by_project {
        // A 503 then a 200, under one id with the same bytes: the replay is recognisable.
        let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [503, 200], "{project}");
        assert_eq!(requests[0].id, requests[1].id, "{project}");
        assert_eq!(requests[0].body, requests[1].body, "{project}");
    }
    let ids: std::collections::BTreeSet<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "one id per project");

    // A late server of p-beta inside May: one correction for p-beta.
    steward.start().await;
    steward
        .publish_and_wait(
            vec![server_of(&run, 3, "p-beta")],
            4,
            Duration::from_secs(60),
        )
        .await;
    steward.terminate();
    let corrected = steward.cli(&["meter", "corrections", "--update"]);
    assert!(corrected.status.success(), "{}", said(&corrected));
    // The receiver takes the correction but answers only after 60 s; the push is killed
    // while it waits, before it could record anything.
    receiver.answer(200, 60_000);
    let mut slow = push(&steward)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while receiver.got().len() < 7 {
        assert!(std::time::Instant::now() < deadline, "no correction sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    slow.kill().unwrap(); // SIGKILL
    slow.wait().unwrap();
    receiver.answer(200, 0);
    let resent = push(&steward).output().unwrap();
    assert!(resent.status.success(), "{}", said(&resent));
    assert!(said(&resent).contains("p-beta correction: confirmed"));
    let got = receiver.got();
    assert_eq!(got.len(), 8, "the correction twice, nothing else");
    let (first, second) = (&got[6], &got[7]);
    assert_eq!(first.id, second.id, "the resent correction carries its id");
    assert_eq!(first.body, second.body);
    assert!(!ids.contains(first.id.as_str()));
    let body: Value = serde_json::from_slice(&second.body).unwrap();
    assert_eq!(body["type"], "steward.report.corrected");
    // What a receiver that keeps its ids holds: four documents.
    let kept: std::collections::BTreeSet<&str> = got
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(kept.len(), 4);
    steward.cleanup_broker().await;
}
