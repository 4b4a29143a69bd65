//! `steward check entropy` against real nova (scripts/openstack-services): a flavor with
//! `hw_rng:allowed=True` passes, one without is named with its id; the in-guest tests say why
//! they did not run.
//!
//! Without the services these tests fail loudly, unless `STEWARD_TEST_SKIP_OPENSTACK_SERVICES=1`
//! leaves them out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::process::Command;

use serde_json::{Value, json};

const KEYSTONE: &str = "http://127.0.0.1:5000/v3";
const NOVA: &str = "http://127.0.0.1:8774/v2.1";

async fn admin_token(http: &reqwest::Client) -> String {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": "admin-secret"}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}});
    let response = http
        .post(format!("{KEYSTONE}/auth/tokens"))
        .json(&body)
        .send()
        .await
        .expect("Keystone on 127.0.0.1:5000 (scripts/openstack-services start)");
    response.headers()["x-subject-token"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn nova(
    http: &reqwest::Client,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut request = http
        .request(method, format!("{NOVA}{path}"))
        .header("X-Auth-Token", token)
        .header("OpenStack-API-Version", "compute 2.61");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flavors_without_a_virtio_rng_are_named() {
    if std::env::var("STEWARD_TEST_SKIP_OPENSTACK_SERVICES").is_ok_and(|v| v == "1") {
        return;
    }
    let http = reqwest::Client::new();
    let token = admin_token(&http).await;
    let run = std::process::id();
    let mut ids = Vec::new();
    for (name, rng) in [
        (format!("chk-rng-{run}"), true),
        (format!("chk-norng-{run}"), false),
    ] {
        let created = nova(
            &http,
            &token,
            reqwest::Method::POST,
            "/flavors",
            Some(json!({"flavor": {"name": name, "ram": 512, "vcpus": 1, "disk": 1}})),
        )
        .await;
        let id = created["flavor"]["id"].as_str().unwrap().to_owned();
        if rng {
            nova(
                &http,
                &token,
                reqwest::Method::POST,
                &format!("/flavors/{id}/os-extra_specs"),
                Some(json!({"extra_specs": {"hw_rng:allowed": "True"}})),
            )
            .await;
        }
        ids.push(id);
    }
    let os_cloud = std::env::var("OS_CLOUD").unwrap_or_else(|_| "steward-test".to_owned());
    let out = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["check", "entropy", "--os-cloud", &os_cloud, "-o", "json"])
        .output()
        .unwrap();
    let said: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let results = said["results"].as_array().unwrap();
    let about = |id: &str| {
        results
            .iter()
            .filter(|r| r["evidence"]["flavor_id"] == id)
            .map(|r| r["status"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(about(&ids[0]), Vec::<String>::new(), "{said:#}");
    assert_eq!(about(&ids[1]), ["WARN"], "{said:#}");
    assert_eq!(out.status.code(), Some(1));
    let skipped: Vec<&Value> = results.iter().filter(|r| r["status"] == "SKIP").collect();
    assert_eq!(skipped.len(), 2);
    for id in ids {
        nova(
            &http,
            &token,
            reqwest::Method::DELETE,
            &format!("/flavors/{id}"),
            None,
        )
        .await;
    }
}
