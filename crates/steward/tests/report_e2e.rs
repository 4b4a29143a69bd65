//! End to end: notifications through RabbitMQ → `steward meter serve` → `steward meter report`
//! and `GET /v1/reports`, checked against quantities computed by hand from the workload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Duration;

use common::{Steward, mixed_notification, unique};
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
    let n = (GROUPS * 10) as usize;
    steward
        .publish_and_wait(
            (0..n).map(|i| mixed_notification(&run, i)).collect(),
            n as i64,
            Duration::from_secs(60),
        )
        .await;

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

/// The 242 notifications captured from real nova, neutron, cinder and octavia, through
/// RabbitMQ and `serve` into `report --detail`: the real servers' lives are billed as nova's API
/// states them (`OS-SRV-USG:launched_at`/`terminated_at`, reset by the resize), to the
/// microsecond, and shelving is billed until the offload only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_captures_through_serve_bill_what_nova_states() {
    let real =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/real");
    let bodies: Vec<Vec<u8>> = std::fs::read_to_string(real.join("notifications.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["body"]
                .to_string()
                .into_bytes()
        })
        .collect();
    assert_eq!(bodies.len(), 242);
    let mut steward = Steward::new("real", "");
    steward.start().await;
    steward
        .publish_and_wait(bodies, 242, Duration::from_secs(60))
        .await;
    let out = steward.cli(&[
        "meter",
        "report",
        "--from",
        "2026-12-02T03:00:00Z",
        "--to",
        "2026-12-02T04:00:00Z",
        "--as-of",
        "2026-12-03T00:00:00Z",
        "--detail",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let servers: Value = serde_json::from_str(
        &std::fs::read_to_string(real.join("api/nova_detail_changes_since_deleted.json")).unwrap(),
    )
    .unwrap();
    let resources: Vec<&Value> = report["projects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["resources"].as_array().unwrap())
        .collect();
    let micros = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(&format!("{}Z", s.trim_end_matches('Z')))
            .unwrap()
            .timestamp_micros()
    };
    for server in servers["servers"].as_array().unwrap() {
        let id = server["id"].as_str().unwrap();
        let r = resources
            .iter()
            .find(|r| r["resource_id"] == id)
            .unwrap_or_else(|| panic!("{id} not in the report: {report:#}"));
        let intervals = r["intervals"].as_array().unwrap();
        let last = intervals.last().unwrap();
        assert_eq!(
            micros(last["end"].as_str().unwrap()),
            micros(server["OS-SRV-USG:terminated_at"].as_str().unwrap()),
            "{}: terminated",
            server["name"]
        );
        // The API's launched_at is the last (re)launch: the start of the interval with the
        // server's final flavor.
        let final_flavor = server["flavor"]["original_name"].as_str().unwrap();
        let first_with_final = intervals
            .iter()
            .find(|i| i["attributes"]["flavor_name"] == final_flavor)
            .unwrap();
        assert_eq!(
            micros(first_with_final["start"].as_str().unwrap()),
            micros(server["OS-SRV-USG:launched_at"].as_str().unwrap()),
            "{}: launched",
            server["name"]
        );
        if server["name"] == "alpha-2" {
            let statuses: Vec<&str> = intervals
                .iter()
                .map(|i| i["status"].as_str().unwrap())
                .collect();
            assert_eq!(statuses, ["running", "shelved", "shelved_offloaded"]);
            let billed = r["products"][0]["quantity_exact"].as_str().unwrap();
            let (n, d) = billed.split_once('/').unwrap();
            let hours = n.parse::<f64>().unwrap() / d.parse::<f64>().unwrap();
            let until_offload = (micros(intervals[2]["start"].as_str().unwrap())
                - micros(intervals[0]["start"].as_str().unwrap()))
                as f64
                / 3.6e9;
            assert!(
                (hours - until_offload).abs() < 1e-9,
                "{hours} vs {until_offload}"
            );
        }
    }
    assert_eq!(steward.terminate(), Some(0));
    steward.cleanup_broker().await;
}
