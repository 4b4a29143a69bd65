//! `steward check loadbalancer` against real Octavia (amphora provider on noop drivers, from
//! scripts/openstack-services): the load balancer and its HTTP health monitor go ACTIVE, and
//! nothing the check created is left; a run SIGKILLed while its load balancer exists leaves it,
//! and the next run removes it first.
//!
//! Without the services these tests fail loudly, unless `STEWARD_TEST_SKIP_OPENSTACK_SERVICES=1`
//! leaves them out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use steward_cloud::{Cloud, Method, ServiceType};

const PREFIX: &str = "steward-check-lb-";

/// Names of load balancers and networks carrying the check's prefix.
async fn leftovers(cloud: &Cloud) -> Vec<String> {
    let mut out = Vec::new();
    for (service, path, key) in [
        (
            ServiceType::LoadBalancer,
            "lbaas/loadbalancers",
            "loadbalancers",
        ),
        (ServiceType::Network, "networks", "networks"),
    ] {
        let (status, body) = cloud.call(service, Method::GET, path, None).await.unwrap();
        assert_eq!(status, 200, "{body}");
        out.extend(
            body[key]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| {
                    i["name"].as_str().is_some_and(|n| n.starts_with(PREFIX))
                        && i["provisioning_status"] != "DELETED"
                })
                .map(|i| i["name"].as_str().unwrap().to_owned()),
        );
    }
    out
}

fn check(os_cloud: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
    command.args([
        "check",
        "loadbalancer",
        "--provider",
        "amphora",
        "--os-cloud",
        os_cloud,
        "-o",
        "json",
    ]);
    command
}

fn verdicts(out: &std::process::Output) -> Vec<(String, String)> {
    let said: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    said["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_monitor_goes_active_and_a_killed_run_is_cleaned_up_by_the_next() {
    if std::env::var("STEWARD_TEST_SKIP_OPENSTACK_SERVICES").is_ok_and(|v| v == "1") {
        return;
    }
    let os_cloud = std::env::var("OS_CLOUD").unwrap_or_else(|_| "steward-test".to_owned());
    let cloud = Cloud::connect(&os_cloud, None)
        .await
        .unwrap_or_else(|e| panic!("real Octavia is needed (scripts/openstack-services): {e}"));

    let first = check(&os_cloud).output().unwrap();
    let said = verdicts(&first);
    let pass = |id: &str| said.contains(&(id.to_owned(), "PASS".to_owned()));
    for id in ["lb-create", "lb-pool", "lb-health-monitor", "lb-cleanup"] {
        assert!(pass(id), "{id}: {said:?}");
    }
    assert_eq!(first.status.code(), Some(0), "{said:?}");
    assert_eq!(leftovers(&cloud).await, Vec::<String>::new());

    // Killed while its load balancer exists: it stays behind.
    let mut killed = check(&os_cloud)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !leftovers(&cloud).await.iter().any(|n| n.ends_with("-lb")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no load balancer created"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    killed.kill().unwrap(); // SIGKILL: no clean-up ran
    killed.wait().unwrap();
    assert!(!leftovers(&cloud).await.is_empty());

    // The next run removes the leftovers first, then passes and leaves nothing.
    let next = check(&os_cloud).output().unwrap();
    let said = verdicts(&next);
    assert!(
        said.contains(&("lb-leftovers".to_owned(), "PASS".to_owned())),
        "{said:?}"
    );
    assert_eq!(next.status.code(), Some(0), "{said:?}");
    assert_eq!(leftovers(&cloud).await, Vec::<String>::new());
}
