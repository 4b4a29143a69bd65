//! End to end: notifications through RabbitMQ → `steward meter serve` → `steward meter report`
//! and `GET /v1/reports`, checked against quantities computed by hand from the workload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Duration;

use common::{Publisher, Steward, mixed_notification, unique, wait_for_count};
use serde_json::Value;

const GROUPS: i128 = 100; // 10 notifications each
const HOUR: i128 = 3_600_000_000;
/// 2023-05-03T10:00:00Z, where the workload's first group starts (one minute per group).
const BASE_S: i128 = 1_683_108_000;
/// The report period: 2023-05-03T00:00:00Z .. 2023-05-04T00:00:00Z.
const START_S: i128 = 1_683_072_000;
const END_S: i128 = START_S + 86_400;

fn exact(numerator: i128, denominator: i128) -> String {
    let (mut a, mut b) = (numerator, denominator);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    format!("{}/{}", numerator / a, denominator / a)
}

/// Sum over groups of `(END - (BASE + 60 g + offset))` seconds, in microseconds.
fn until_end_micros(offset: i128) -> i128 {
    (0..GROUPS)
        .map(|g| (END_S - (BASE_S + 60 * g + offset)) * 1_000_000)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_to_report_with_hand_computed_quantities() {
    let mut steward = Steward::new("report", "    bearer_token: s3cret\n");
    steward.start().await;
    let run = unique("rep");
    let p = Publisher::connect().await;
    let n = (GROUPS * 10) as usize;
    p.publish(
        &steward.exchange,
        "notifications.info",
        (0..n).map(|i| mixed_notification(&run, i)).collect(),
    )
    .await;
    p.close().await;
    let db = steward.db().await;
    assert_eq!(
        wait_for_count(
            &db,
            "SELECT COUNT(*) FROM raw_records",
            n as i64,
            Duration::from_secs(60)
        )
        .await,
        n as i64
    );

    let (from, to) = ("2023-05-03T00:00:00Z", "2023-05-04T00:00:00Z");
    let as_of = "2023-05-05T00:00:00Z";
    let out = steward.cli(&[
        "meter", "report", "--from", from, "--to", to, "--as-of", as_of, "-o", "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["period_state"], "complete-as-of", "{report:#}");
    assert_eq!(report["billed_until"], "2023-05-04T00:00:00.000000Z");
    assert!(
        report["coverage"]["first_input_at"].is_string(),
        "{report:#}"
    );
    let projects = report["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 1, "{report:#}");
    assert_eq!(
        projects[0]["project_id"],
        "a3f2c6b0e1d94b6f8c1f1d7e2a9b0c11"
    );
    let line = |product: &str| {
        projects[0]["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["product"] == product)
            .cloned()
            .unwrap_or_else(|| panic!("no line {product}: {report:#}"))
    };
    // Instances: launched +1 s, deleted +30 s; stopped time bills under the default catalogue.
    let instance = line("instance:SCS-2V-4");
    assert_eq!(
        instance["quantity_exact"],
        exact(GROUPS * 29 * 1_000_000, HOUR)
    );
    assert_eq!(instance["resources"], GROUPS as i64);
    // Volumes: 10 GiB from +3 s, 20 GiB from +40 s to the end of the period.
    let volume = until_end_micros(40) * 20 + GROUPS * 37 * 1_000_000 * 10;
    assert_eq!(line("volume:t-1")["quantity_exact"], exact(volume, HOUR));
    // Images: 1,024 bytes from +5 s.
    assert_eq!(
        line("image")["quantity_exact"],
        exact(until_end_micros(5) * 1024, HOUR << 30)
    );
    // Floating IPs: from +7 s.
    assert_eq!(
        line("floating_ip")["quantity_exact"],
        exact(until_end_micros(7), HOUR)
    );
    assert_eq!(
        line("floating_ip")["provenance"],
        serde_json::json!(["notification"])
    );
    assert_eq!(projects[0]["unknown"], serde_json::json!([]));

    // The pull API serves the same bytes, behind the token.
    let url = format!(
        "{}/v1/reports?from={from}&to={to}&as_of={as_of}",
        steward.base_url()
    );
    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    let pulled = client.get(&url).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(pulled.status(), 200);
    assert_eq!(
        pulled.bytes().await.unwrap(),
        out.stdout,
        "same report both ways"
    );
    let bad = client
        .get(format!("{}/v1/reports?period=2023-13", steward.base_url()))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad_as_of = client
        .get(format!(
            "{}/v1/reports?period=2023-05&as_of=soon",
            steward.base_url()
        ))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_as_of.status(), 400);
    assert!(bad_as_of.text().await.unwrap().contains("as_of"));

    // The table is for people.
    let table = steward.cli(&["meter", "report", "--from", from, "--to", to]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("instance:SCS-2V-4"), "{table}");
    assert!(table.contains("complete as of"), "{table}");
    // Instance hours and floating-IP hours share a unit but are never added up.
    assert!(!table.contains("total:"), "{table}");
    assert_eq!(steward.terminate(), Some(0));
    steward.cleanup_broker().await;
}
