//! What an operator sees when things are wrong from the start: metrics that exist before the
//! first success, timeouts that are honoured, logs without terminal colour codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// `steward --config CONFIG [EXTRA…] meter serve`, its stderr in `DIR/serve.log`.
fn serve(dir: &tempfile::TempDir, config: &std::path::Path, extra: &[&str]) -> std::process::Child {
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["--config", config.to_str().unwrap()])
        .args(extra)
        .args(["meter", "serve"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[test]
fn with_the_broker_unreachable_from_the_start_the_alert_metric_is_there_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (http, dead_broker) = (free_port(), free_port());
    let config = dir.path().join("steward.yaml");
    std::fs::write(
        &config,
        format!(
            "meter:\n  store:\n    url: sqlite://{}/s.db\n  amqp:\n    url: amqp://guest:guest@127.0.0.1:{dead_broker}/%2f\n  http:\n    listen: 127.0.0.1:{http}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = serve(&dir, &config, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        if let Some(text) = get(http, "/metrics").filter(|t| t.starts_with("HTTP/1.1 200")) {
            break text;
        }
        assert!(Instant::now() < deadline, "serve did not come up");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    for series in [
        "steward_amqp_connected 0",
        "steward_store_commit_failures_total 0",
        "steward_ingest_quarantined_total{source=\"amqp\"} 0",
        "steward_http_ingest_requests_total{status=\"413\"} 0",
        "steward_gaps_open{source=\"http\"} 0",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("rabbitmq unreachable"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "terminal colour codes in a log file:\n{log}"
    );
}

/// The test broker's URL with the password replaced.
fn broker_url_with_password(password: &str) -> String {
    let url = std::env::var("STEWARD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, host) = rest.split_once('@').unwrap();
    let user = userinfo.split(':').next().unwrap();
    format!("{scheme}://{user}:{password}@{host}")
}

#[test]
fn a_wrong_amqp_password_is_reported_as_such_not_as_an_unreachable_broker() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let config = dir.path().join("steward.yaml");
    std::fs::write(
        &config,
        format!(
            "meter:\n  store:\n    url: sqlite://{}/s.db\n  amqp:\n    url: {}\n    reconnect_initial_ms: 200\n  http:\n    listen: 127.0.0.1:{http}\n",
            dir.path().display(),
            broker_url_with_password("not-the-password")
        ),
    )
    .unwrap();
    let mut child = serve(&dir, &config, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = get(http, "/metrics").unwrap_or_default();
        if metrics
            .contains("steward_amqp_connect_failures_total{reason=\"authentication_refused\"} 1")
            || metrics.contains(
                "steward_amqp_connect_failures_total{reason=\"authentication_refused\"} 2",
            )
        {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "no authentication failure counted:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // After a counted failure, readiness says why.
    let ready = get(http, "/readyz").unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        metrics.contains("steward_amqp_connect_failures_total{reason=\"unreachable\"} 0"),
        "{metrics}"
    );
    assert!(ready.contains("503"), "{ready}");
    assert!(ready.contains("authentication refused"), "{ready}");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("authentication refused"), "{log}");
    assert!(log.contains("check the user and password"), "{log}");
    assert!(!log.contains("unreachable"), "{log}");
    assert!(
        !log.contains("not-the-password"),
        "the password is in the log:\n{log}"
    );
}

#[test]
fn connect_timeout_secs_is_honoured() {
    // A server that accepts connections and never answers: the PostgreSQL handshake hangs.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("steward.yaml");
    std::fs::write(
        &config,
        format!(
            "meter:\n  store:\n    url: postgres://steward@127.0.0.1:{port}/steward\n    connect_timeout_secs: 1\n"
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["--config", config.to_str().unwrap(), "meter", "status"])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(!out.status.success());
    assert!(
        took < Duration::from_secs(5),
        "gave up after {took:?}, not after 1 s"
    );
    assert!(took >= Duration::from_millis(900), "{took:?}");
    drop(silent);
}

#[test]
fn log_format_json_gives_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let (http, dead_broker) = (free_port(), free_port());
    let config = dir.path().join("steward.yaml");
    std::fs::write(
        &config,
        format!(
            "meter:\n  store:\n    url: sqlite://{}/s.db\n  amqp:\n    url: amqp://guest:guest@127.0.0.1:{dead_broker}/%2f\n  http:\n    listen: 127.0.0.1:{http}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = serve(&dir, &config, &["--log-format", "json"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
        if text.contains("rabbitmq unreachable") {
            break;
        }
        assert!(Instant::now() < deadline, "no log line:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let mut lines = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        assert!(value["level"].is_string(), "{line}");
        lines += 1;
    }
    assert!(lines >= 2, "{text}");
    // A bad value is refused with the choices.
    let out = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["--log-format", "xml", "meter", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("text, json"));
}
