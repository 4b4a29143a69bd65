//! End to end: three projects' notifications through RabbitMQ → `serve` → `close`, then
//! `steward meter push` to a (fake) Odoo 18. The first push is SIGKILLed after Odoo committed
//! the first invoice but before it answered; the next push finds that invoice by its ref
//! instead of creating a second. Pushing again changes nothing: one draft per project.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Steward, closed_may_with, free_port};
use serde_json::{Value, json};

/// The fake Odoo of `scripts/fake-odoo.py`, stopped when dropped.
struct FakeOdoo {
    child: Child,
    url: String,
}

impl FakeOdoo {
    async fn start(version: u32) -> Self {
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/fake-odoo.py");
        let child = Command::new("python3")
            .arg(script)
            .args([
                "--version",
                &version.to_string(),
                "--port",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "fake Odoo did not start"
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn control(&self, path: &str, body: Value) {
        let answer = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
    }

    async fn invoices(&self) -> Vec<Value> {
        reqwest::get(format!("{}/fake/records/account.move", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for FakeOdoo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn push(steward: &Steward) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
    command
        .arg("--config")
        .arg(&steward.config)
        .args(["meter", "push", "--period", "2023-05"])
        .env("STEWARD_TEST_ODOO_KEY", "steward-api-key");
    command
}

fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_killed_after_odoo_committed_leaves_one_invoice_per_project() {
    let odoo = FakeOdoo::start(18).await;
    for name in ["Product Unit of Measure", "Product Price"] {
        odoo.control("/fake/precision", json!({"name": name, "digits": 6}))
            .await;
    }
    let mut steward = Steward::new(
        "odoo",
        &format!(
            "  sinks:\n    - name: erp\n      type: odoo\n      url: {}\n      \
             database: steward\n      login: admin\n      \
             api_key: ${{STEWARD_TEST_ODOO_KEY:-steward-api-key}}\n      \
             create_partners: true\n      create_products: true\n",
            odoo.url
        ),
    );
    let projects = ["p-alpha", "p-beta", "p-gamma"];
    closed_may_with(&mut steward, &projects).await;

    // Odoo commits the first invoice and answers only after a minute; the push is killed.
    odoo.control(
        "/fake/inject",
        json!({"model": "account.move", "method": "create", "mode": "sleep-after-commit",
            "seconds": 60}),
    )
    .await;
    let mut slow = push(&steward)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while odoo.invoices().await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no invoice created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    slow.kill().unwrap(); // SIGKILL: the outbox never heard of it
    slow.wait().unwrap();
    assert_eq!(odoo.invoices().await.len(), 1);

    let pushed = push(&steward).output().unwrap();
    let text = said(&pushed);
    assert!(pushed.status.success(), "{text}");
    assert_eq!(
        text.matches(": confirmed (account.move/").count(),
        3,
        "{text}"
    );
    let again = push(&steward).output().unwrap();
    assert!(again.status.success(), "{}", said(&again));
    let invoices = odoo.invoices().await;
    assert_eq!(invoices.len(), 3, "one per project: {invoices:#?}");
    let mut refs: Vec<&str> = invoices
        .iter()
        .map(|m| m["ref"].as_str().unwrap())
        .collect();
    refs.sort_unstable();
    assert_eq!(
        refs,
        [
            "steward:2023-05:p-alpha",
            "steward:2023-05:p-beta",
            "steward:2023-05:p-gamma"
        ]
    );
    assert!(invoices.iter().all(|m| m["state"] == "draft"));
    // The dry run says every row is done.
    let dry = steward.cli(&["meter", "push", "--period", "2023-05", "--dry-run"]);
    let text = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(
        text.matches("no-op: confirmed as account.move/").count(),
        3,
        "{text}"
    );
    steward.cleanup_broker().await;
}
