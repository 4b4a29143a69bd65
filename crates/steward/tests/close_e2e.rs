//! End to end: notifications through RabbitMQ → `steward meter serve` → `steward meter close`,
//! then a late notification → `steward meter corrections --update`: the closed report stays
//! byte for byte, closing twice is a no-op, one late change is one correction.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Duration;

use common::{Steward, mixed_notification, unique};
use serde_json::Value;

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_month_never_changes_and_late_facts_become_one_correction() {
    let reports = tempfile::tempdir().unwrap();
    let mut steward = Steward::new(
        "close",
        &format!(
            "  sinks:\n    - name: files\n      type: file\n      dir: {}\n",
            reports.path().display()
        ),
    );
    steward.start().await;
    let run = unique("cls");
    // 20 groups of the mixed workload on 2023-05-03 (servers, volumes, floating IPs, …).
    steward
        .publish_and_wait(
            (0..200).map(|i| mixed_notification(&run, i)).collect(),
            200,
            Duration::from_secs(60),
        )
        .await;
    steward.terminate();

    // No reconciler configured: the close says what it awaits, and exits 1.
    let refused = steward.cli_without_cloud(&["meter", "close", "--period", "2023-05"]);
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("awaits a reconciliation"), "{said}");
    assert!(said.contains("--without-reconcile"), "{said}");
    // A month not over (plus grace) cannot close either.
    let early = steward.cli(&["meter", "close", "--period", "2099-01"]);
    assert_eq!(early.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&early.stderr).contains("cannot close before"));

    let closed = steward.cli(&[
        "meter",
        "close",
        "--period",
        "2023-05",
        "--without-reconcile",
        "-o",
        "json",
    ]);
    let report = json_of(&closed);
    assert_eq!(report["period_state"], "closed");
    let statement = &report["completeness"];
    assert_eq!(statement["complete"], false, "{statement:#}");
    assert!(statement["reconciliation"].is_null());
    assert!(
        statement["facts_by_origin"]["notification"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(!report["totals"].as_array().unwrap().is_empty());
    let digest = report["content_digest"].as_str().unwrap().to_owned();

    // Closing again: nothing changes, the same bytes come back.
    let again = steward.cli(&["meter", "close", "--period", "2023-05", "-o", "json"]);
    assert!(again.status.success());
    assert_eq!(again.stdout, closed.stdout);
    let text = steward.cli(&["meter", "close", "--period", "2023-05"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("already closed"));
    // `report` shows the closed report; detail needs --live.
    let shown = steward.cli(&["meter", "report", "--period", "2023-05", "-o", "json"]);
    assert_eq!(shown.stdout, closed.stdout);
    let detail = steward.cli(&["meter", "report", "--period", "2023-05", "--detail"]);
    assert!(!detail.status.success());
    assert!(String::from_utf8_lossy(&detail.stderr).contains("--live"));
    let live = json_of(&steward.cli(&[
        "meter", "report", "--period", "2023-05", "--live", "-o", "json",
    ]));
    assert_eq!(live["period_state"], "complete-as-of");
    assert_eq!(live["totals"], report["totals"]);

    // Delivered once: the dry run says what would happen, the push writes one slice per
    // project, pushing again plans and writes nothing.
    let dry = steward.cli(&["meter", "push", "--period", "2023-05", "--dry-run"]);
    let said = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        said.lines().count() >= 1
            && said
                .lines()
                .all(|l| l.contains(": create: not delivered yet")),
        "{said}"
    );
    assert_eq!(
        std::fs::read_dir(reports.path()).unwrap().count(),
        0,
        "a dry run writes nothing"
    );
    let pushed = steward.cli(&["meter", "push", "--period", "2023-05"]);
    let said = String::from_utf8_lossy(&pushed.stdout).into_owned();
    assert!(
        pushed.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let projects = report["projects"].as_array().unwrap().len();
    assert_eq!(said.matches(": confirmed").count(), projects, "{said}");
    let month = reports.path().join("2023-05");
    let written: Vec<_> = std::fs::read_dir(&month).unwrap().collect();
    assert_eq!(written.len(), projects);
    let status = steward.status();
    assert_eq!(
        status["outbox"],
        serde_json::json!([{"sink": "files", "state": "confirmed", "rows": projects}]),
        "{status:#}"
    );
    let again = steward.cli(&["meter", "push", "--period", "2023-05"]);
    let said = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(
        said.contains("0 new row(s) planned") && !said.contains("confirmed"),
        "{said}"
    );
    let dry = steward.cli(&["meter", "push", "--period", "2023-05", "--dry-run"]);
    let said = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(
        said.lines().all(|l| l.contains("no-op: confirmed as")),
        "{said}"
    );
    let unknown = steward.cli(&["meter", "push", "--period", "2023-05", "--sink", "odoo"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("no sink \"odoo\" in meter.sinks (configured: files)")
    );

    // `serve` answers GET /v1/reports with the closed report too.
    steward.start().await;
    let pulled: Value = reqwest::get(format!("{}/v1/reports?period=2023-05", steward.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pulled["period_state"], "closed");
    assert_eq!(pulled["content_digest"], digest.as_str());
    // A late notification: another server's life inside May 2023.
    let late = unique("late");
    steward
        .publish_and_wait(
            (0..10).map(|i| mixed_notification(&late, i)).collect(),
            210,
            Duration::from_secs(60),
        )
        .await;
    steward.terminate();
    let corrections = json_of(&steward.cli(&["meter", "corrections", "--update", "-o", "json"]));
    let list = corrections.as_array().unwrap();
    assert_eq!(list.len(), 1, "{corrections:#}");
    assert_eq!(list[0]["corrects"], digest);
    assert_eq!(list[0]["sequence"], 1);
    assert!(!list[0]["projects"].as_array().unwrap().is_empty());
    // Checking again adds nothing; the closed report is untouched.
    let again = json_of(&steward.cli(&["meter", "corrections", "--update", "-o", "json"]));
    assert_eq!(again.as_array().unwrap().len(), 1);
    let shown = steward.cli(&["meter", "report", "--period", "2023-05", "-o", "json"]);
    assert_eq!(shown.stdout, closed.stdout);
    // The correction is delivered as one more file, for the project it changed.
    let pushed = steward.cli(&["meter", "push", "--period", "2023-05"]);
    let said = String::from_utf8_lossy(&pushed.stdout).into_owned();
    assert!(pushed.status.success(), "{said}");
    assert!(said.contains("correction: confirmed"), "{said}");
    // The correction's totals are exactly the live change.
    let live_after = json_of(&steward.cli(&[
        "meter", "report", "--period", "2023-05", "--live", "-o", "json",
    ]));
    for delta in list[0]["totals"].as_array().unwrap() {
        let product = &delta["product"];
        let after = live_after["totals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["product"] == *product && t["unit"] == delta["unit"])
            .unwrap();
        assert_eq!(after["quantity_exact"], delta["after_exact"], "{product}");
    }
    steward.cleanup_broker().await;
}
