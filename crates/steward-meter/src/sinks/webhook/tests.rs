//! The webhook sink against a real HTTP receiver on loopback: signatures (the Standard Webhooks
//! test vector and the documented recipes), answers classified, and a receiver that is down, then
//! failing, then well delivered to once per document, replays recognisable by their id.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};

use super::{WebhookSink, message_id, parse_url, signature, signing_key};
use crate::sinks::outbox::{
    CONFIRMED, FAILED_PERMANENT, PLANNED, RetryPolicy, deliver, deliver_due, document, plan_period,
};
use crate::store::Store;
use crate::test_support::{at, closed_october};
use crate::time::Instant;
use crate::usage::period::Period;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    /// What the receiver answered.
    status: u16,
}

/// A receiver on loopback whose answer (status, delay) the test sets.
#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    answer: Arc<Mutex<(u16, Duration)>>,
}

impl Receiver {
    /// Serves on `addr` (a free port when `None`); returns the receiver and its address.
    async fn start(addr: Option<SocketAddr>) -> (Self, SocketAddr) {
        let receiver = Self {
            got: Arc::default(),
            answer: Arc::new(Mutex::new((200, Duration::ZERO))),
        };
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let (status, delay) = *state.answer.lock().unwrap();
                    state.got.lock().unwrap().push(Received {
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                            .collect(),
                        body: body.to_vec(),
                        status,
                    });
                    tokio::time::sleep(delay).await;
                    let mut response = axum::response::Response::new(axum::body::Body::from(
                        format!("answer {status}\nsecond line"),
                    ));
                    *response.status_mut() = StatusCode::from_u16(status).unwrap();
                    if status == 301 {
                        response.headers_mut().insert(
                            "location",
                            "https://user:pw@elsewhere.example/hook".parse().unwrap(),
                        );
                    }
                    response
                }
            }),
        );
        let listener =
            tokio::net::TcpListener::bind(addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))))
                .await
                .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, addr)
    }

    fn answer(&self, status: u16, delay: Duration) {
        *self.answer.lock().unwrap() = (status, delay);
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

fn sink(addr: SocketAddr, timeout: Duration) -> WebhookSink {
    WebhookSink::new("hook", &format!("http://{addr}/hook"), SECRET, timeout).unwrap()
}

/// Whether `r` carries a valid signature (recomputed here) and an Idempotency-Key equal to its id.
fn verifies(r: &Received) -> bool {
    let key = signing_key(SECRET).unwrap();
    let id = &r.headers["webhook-id"];
    let timestamp: i64 = r.headers["webhook-timestamp"].parse().unwrap();
    r.headers["webhook-signature"] == signature(&key, id, timestamp, &r.body)
        && r.headers["idempotency-key"] == *id
        && r.headers["content-type"] == "application/json"
}

#[test]
fn signatures_match_the_standard_webhooks_test_vector() {
    // The vector of the Standard Webhooks reference libraries.
    let key = signing_key(SECRET).unwrap();
    assert_eq!(
        signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    // The prefix is optional; the key is the same.
    assert_eq!(
        signing_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
        key
    );
}

#[test]
fn secrets_and_urls_are_checked_and_credentials_never_shown() {
    let not_base64 = signing_key("whsec_not base64!").unwrap_err();
    assert!(not_base64.contains("not base64"), "{not_base64}");
    assert!(not_base64.contains("openssl rand"), "{not_base64}");
    let short = signing_key("whsec_c2hvcnQ=").unwrap_err();
    assert!(short.contains("5 bytes"), "{short}");
    let scheme = parse_url("ftp://user:hunter2@host/x").unwrap_err();
    assert!(scheme.contains("http://"), "{scheme}");
    assert!(!scheme.contains("hunter2"), "{scheme}");
    assert!(parse_url("not a url").is_err());
    let sink = WebhookSink::new(
        "hook",
        "https://user:hunter2@host/x",
        SECRET,
        Duration::from_secs(1),
    )
    .unwrap();
    let shown = format!("{sink:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("MfKQ9r8"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_receiver_down_then_failing_then_well_gets_every_report_once_by_id() {
    let (store, _dir) = closed_october().await;
    let october = Period::month("2026-10").unwrap();
    let now = at("2026-11-05T01:00:00Z");
    plan_period(store.as_ref(), &october, &["hook"], now)
        .await
        .unwrap();
    // A port nothing listens on: connection refused, retried later.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let hook = sink(free, Duration::from_secs(5));
    let policy = RetryPolicy::default();
    let refused = deliver_due(store.as_ref(), &hook, now, 100, &policy)
        .await
        .unwrap();
    assert_eq!(refused.len(), 2);
    for (_, update) in &refused {
        assert_eq!(update.state, PLANNED);
        let error = update.last_error.as_deref().unwrap();
        assert!(
            error.contains(&format!("POST http://{free}/hook")),
            "{error}"
        );
        assert!(error.to_lowercase().contains("refused"), "{error}");
    }
    // Nothing is due before the backoff.
    assert!(
        deliver_due(store.as_ref(), &hook, now, 100, &policy)
            .await
            .unwrap()
            .is_empty()
    );

    // Up, but answering 503: retried again.
    let (receiver, _) = Receiver::start(Some(free)).await;
    receiver.answer(503, Duration::ZERO);
    let later = Instant(now.micros() + 3_600_000_000);
    let failing = deliver_due(store.as_ref(), &hook, later, 100, &policy)
        .await
        .unwrap();
    assert!(failing.iter().all(|(_, u)| {
        u.state == PLANNED
            && u.last_error.as_deref().unwrap().contains("answered 503")
            && u.last_error
                .as_deref()
                .unwrap()
                .contains("answer 503 second line")
    }));

    // Well again: each report delivered, once.
    receiver.answer(200, Duration::ZERO);
    let much_later = Instant(later.micros() + 3_600_000_000);
    let done = deliver_due(store.as_ref(), &hook, much_later, 100, &policy)
        .await
        .unwrap();
    assert!(done.iter().all(|(_, u)| u.state == CONFIRMED));
    assert!(
        deliver_due(
            store.as_ref(),
            &hook,
            Instant(much_later.micros() * 2),
            100,
            &policy
        )
        .await
        .unwrap()
        .is_empty()
    );
    let got = receiver.got();
    assert_eq!(got.len(), 4, "two 503s, two 200s");
    assert!(got.iter().all(verifies));
    let accepted: Vec<&Received> = got.iter().filter(|r| r.status == 200).collect();
    let ids: std::collections::BTreeSet<&str> = accepted
        .iter()
        .map(|r| r.headers["webhook-id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "one id per project");
    // The replays after the 503s carry the ids and the bytes of the first attempts.
    for failed in got.iter().filter(|r| r.status == 503) {
        let replay = accepted
            .iter()
            .find(|r| r.headers["webhook-id"] == failed.headers["webhook-id"])
            .unwrap();
        assert_eq!(replay.body, failed.body);
    }
    // The confirmed rows name the id; the bodies are the projects' slices of the closed report.
    let rows = store
        .deliveries(Some("hook"), october.start, october.end)
        .await
        .unwrap();
    let mut projects = Vec::new();
    for row in &rows {
        let document = document(store.as_ref(), row).await.unwrap();
        assert_eq!(
            row.remote_id.as_deref(),
            Some(message_id(&document).as_str())
        );
        let delivered = accepted
            .iter()
            .find(|r| Some(&r.headers["webhook-id"]) == row.remote_id.as_ref())
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&delivered.body).unwrap();
        assert_eq!(body["type"], "steward.report.closed");
        assert_eq!(body["data"]["period_state"], "closed");
        assert_eq!(body["data"]["project"], serde_json::json!(row.project_id));
        assert_eq!(body["data"]["projects"].as_array().unwrap().len(), 1);
        projects.push(body["data"]["project"].as_str().unwrap().to_owned());
    }
    projects.sort();
    assert_eq!(projects, ["p-a", "p-b"]);
}

#[tokio::test]
async fn answers_are_classified_retry_or_permanent() {
    let (store, _dir) = closed_october().await;
    let october = Period::month("2026-10").unwrap();
    let now = at("2026-11-05T01:00:00Z");
    let (receiver, addr) = Receiver::start(None).await;
    let policy = RetryPolicy::default();
    let cases: [(u16, Duration, &str, &str); 6] = [
        (408, Duration::ZERO, PLANNED, "answered 408"),
        (429, Duration::ZERO, PLANNED, "answered 429"),
        (500, Duration::ZERO, PLANNED, "answered 500"),
        (200, Duration::from_secs(3), PLANNED, "no answer within 1s"),
        (
            301,
            Duration::ZERO,
            FAILED_PERMANENT,
            "a redirect to https://user:***@elsewhere.example/hook",
        ),
        (422, Duration::ZERO, FAILED_PERMANENT, "answered 422"),
    ];
    for (i, (status, delay, state, says)) in cases.into_iter().enumerate() {
        // A sink of its own per case: fresh rows.
        let name = format!("hook-{i}");
        let hook = WebhookSink::new(
            &name,
            &format!("http://{addr}/hook"),
            SECRET,
            Duration::from_secs(1),
        )
        .unwrap();
        plan_period(store.as_ref(), &october, &[name.as_str()], now)
            .await
            .unwrap();
        receiver.answer(status, delay);
        let rows = store
            .deliveries(Some(&name), october.start, october.end)
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        let done = deliver(store.as_ref(), &hook, rows, now, &policy)
            .await
            .unwrap();
        for (_, update) in &done {
            assert_eq!(update.state, state, "case {i} ({status}): {update:?}");
            let error = update.last_error.as_deref().unwrap();
            assert!(error.contains(says), "case {i}: {error}");
            assert!(!error.contains("pw@"), "{error}");
        }
    }
}

/// The fenced block after `<!-- tested: NAME -->` in docs/sinks.md.
fn recipe(name: &str) -> String {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/sinks.md"))
        .unwrap();
    let after = docs
        .split_once(&format!("<!-- tested: {name} -->"))
        .unwrap_or_else(|| panic!("docs/sinks.md has no recipe {name}"))
        .1;
    let block = after.split_once("```").unwrap().1;
    let code = block.split_once('\n').unwrap().1;
    code.split_once("```").unwrap().0.to_owned()
}

#[tokio::test]
async fn the_documented_recipes_verify_what_the_sink_sends() {
    let (store, _dir) = closed_october().await;
    let october = Period::month("2026-10").unwrap();
    let now = at("2026-11-05T01:00:00Z");
    plan_period(store.as_ref(), &october, &["hook"], now)
        .await
        .unwrap();
    let (receiver, addr) = Receiver::start(None).await;
    deliver_due(
        store.as_ref(),
        &sink(addr, Duration::from_secs(5)),
        now,
        1,
        &RetryPolicy::default(),
    )
    .await
    .unwrap();
    let request = receiver.got().remove(0);
    let dir = tempfile::tempdir().unwrap();
    let shell = dir.path().join("verify-webhook.sh");
    std::fs::write(&shell, recipe("webhook-verify.sh")).unwrap();
    let python = dir.path().join("verify.py");
    std::fs::write(
        &python,
        format!(
            "{}\nimport json, sys\nheaders = json.load(open(sys.argv[2]))\n\
             try:\n    print('valid:', verify_webhook(sys.argv[1], headers, open(sys.argv[3], 'rb').read()))\n\
             except ValueError as e:\n    print(e, file=sys.stderr)\n    sys.exit(1)\n",
            recipe("webhook-verify.py")
        ),
    )
    .unwrap();
    let headers = dir.path().join("headers.json");
    std::fs::write(&headers, serde_json::to_vec(&request.headers).unwrap()).unwrap();
    let body = dir.path().join("body.json");
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&body, &request.body).unwrap();
    let mut changed = request.body.clone();
    changed.extend_from_slice(b" ");
    std::fs::write(&tampered, changed).unwrap();

    let run_shell = |secret: &str, body: &std::path::Path| {
        std::process::Command::new("sh")
            .arg(&shell)
            .args([
                secret,
                &request.headers["webhook-id"],
                &request.headers["webhook-timestamp"],
                &request.headers["webhook-signature"],
            ])
            .arg(body)
            .output()
            .unwrap()
    };
    let run_python = |secret: &str, body: &std::path::Path| {
        std::process::Command::new("python3")
            .arg(&python)
            .arg(secret)
            .arg(&headers)
            .arg(body)
            .output()
            .unwrap()
    };
    let other = "whsec_ZGlmZmVyZW50LXNlY3JldC1rZXktYnl0ZXM=";
    for (what, run) in [
        (
            "shell",
            &run_shell as &dyn Fn(&str, &std::path::Path) -> std::process::Output,
        ),
        ("python", &run_python),
    ] {
        let good = run(SECRET, &body);
        assert!(
            good.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&good.stderr)
        );
        assert!(
            String::from_utf8_lossy(&good.stdout)
                .contains(&format!("valid: {}", request.headers["webhook-id"])),
            "{what}"
        );
        assert!(!run(SECRET, &tampered).status.success(), "{what}: tampered");
        assert!(!run(other, &body).status.success(), "{what}: wrong secret");
    }
}
