//! The reconciler's listings against real nova, cinder and neutron (`scripts/openstack-services
//! start`): a server created, stopped and deleted is listed by `changes-since` with nova's exact
//! launch and termination times and its flavor, its instance actions carry their steps, and a
//! volume is listed with its type's name and id.
//!
//! `scripts/test` starts the services; by hand: `eval "$(scripts/openstack-services start)"`.
//! Without them these tests fail loudly, unless `STEWARD_TEST_SKIP_OPENSTACK_SERVICES=1` leaves
//! them out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::Duration;

use serde_json::{Value, json};
use steward_cloud::Cloud;

const KEYSTONE: &str = "http://127.0.0.1:5000/v3";
const NOVA: &str = "http://127.0.0.1:8774/v2.1";
const GLANCE: &str = "http://127.0.0.1:9292/v2";

fn skipped() -> bool {
    std::env::var("STEWARD_TEST_SKIP_OPENSTACK_SERVICES").is_ok_and(|v| v == "1")
}

struct Admin {
    http: reqwest::Client,
    token: String,
    project: String,
}

impl Admin {
    async fn login() -> Self {
        let http = reqwest::Client::new();
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
        let token = response.headers()["x-subject-token"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.unwrap();
        let project = body["token"]["project"]["id"].as_str().unwrap().to_owned();
        Self {
            http,
            token,
            project,
        }
    }

    async fn call(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), url)
            .header("X-Auth-Token", &self.token);
        if url.starts_with(NOVA) {
            request = request.header("OpenStack-API-Version", "compute 2.79");
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {url}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn wait_for(&self, url: &str, key: &str, field: &str, want: &str) -> Value {
        for _ in 0..120 {
            let value = self.call(reqwest::Method::GET, url, None).await;
            if value[key][field] == want {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("{url} never reached {field} = {want}");
    }
}

async fn flavor_and_image(admin: &Admin) -> (String, String) {
    use reqwest::Method;
    let flavors = admin
        .call(Method::GET, &format!("{NOVA}/flavors"), None)
        .await;
    let flavor = match flavors["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "steward.tiny")
    {
        Some(f) => f["id"].as_str().unwrap().to_owned(),
        None => {
            let body =
                json!({"flavor": {"name": "steward.tiny", "ram": 256, "vcpus": 1, "disk": 1}});
            let f = admin
                .call(Method::POST, &format!("{NOVA}/flavors"), Some(body))
                .await;
            f["flavor"]["id"].as_str().unwrap().to_owned()
        }
    };
    let image = admin
        .call(
            Method::POST,
            &format!("{GLANCE}/images"),
            Some(json!({
            "name": "steward-listing-test", "disk_format": "raw", "container_format": "bare"})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let uploaded = admin
        .http
        .put(format!("{GLANCE}/images/{image}/file"))
        .header("X-Auth-Token", &admin.token)
        .header("Content-Type", "application/octet-stream")
        .body(vec![0u8; 4096])
        .send()
        .await
        .unwrap();
    assert!(uploaded.status().is_success());
    (flavor, image)
}

#[tokio::test]
async fn a_deleted_server_is_listed_with_its_exact_life_and_actions() {
    use reqwest::Method;
    if skipped() {
        return;
    }
    let admin = Admin::login().await;
    let cloud = Cloud::connect("steward-test", None).await.unwrap();
    let (flavor, image) = flavor_and_image(&admin).await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(2);
    let body = json!({"server": {"name": "steward-listing", "flavorRef": flavor,
        "imageRef": image, "networks": "none"}});
    let server = admin
        .call(Method::POST, &format!("{NOVA}/servers"), Some(body))
        .await;
    let id = server["server"]["id"].as_str().unwrap().to_owned();
    let url = format!("{NOVA}/servers/{id}");
    let active = admin.wait_for(&url, "server", "status", "ACTIVE").await;
    admin
        .call(
            Method::POST,
            &format!("{url}/action"),
            Some(json!({"os-stop": null})),
        )
        .await;
    admin.wait_for(&url, "server", "status", "SHUTOFF").await;
    admin.call(Method::DELETE, &url, None).await;
    for _ in 0..120 {
        let r = admin
            .http
            .get(&url)
            .header("X-Auth-Token", &admin.token)
            .send()
            .await
            .unwrap();
        if r.status() == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let servers = cloud.servers(Some(since)).await.unwrap();
    let listed = servers
        .iter()
        .find(|s| s.id == id)
        .expect("the deleted server");
    assert_eq!(listed.status, "DELETED");
    assert_eq!(listed.flavor.original_name, "steward.tiny");
    assert_eq!(listed.tenant_id, admin.project);
    let launched = active["server"]["OS-SRV-USG:launched_at"].as_str().unwrap();
    assert_eq!(
        listed.launched_at,
        steward_cloud::inventory::parse_api_time(launched),
        "the launch the API stated while it was ACTIVE"
    );
    assert!(listed.terminated_at.unwrap() > listed.launched_at.unwrap());

    let actions = cloud.instance_actions(&id).await.unwrap();
    let names: Vec<&str> = actions.iter().map(|a| a.action.as_str()).collect();
    for want in ["create", "stop", "delete"] {
        assert!(names.contains(&want), "{names:?}");
    }
    let stop = actions.iter().find(|a| a.action == "stop").unwrap();
    assert!(stop.finished_at().is_some(), "{stop:?}");
    admin
        .call(Method::DELETE, &format!("{GLANCE}/images/{image}"), None)
        .await;
}

#[tokio::test]
async fn volumes_are_listed_with_their_type_name_and_id() {
    use reqwest::Method;
    if skipped() {
        return;
    }
    let admin = Admin::login().await;
    let cloud = Cloud::connect("steward-test", None).await.unwrap();
    let cinder = format!("http://127.0.0.1:8776/v3/{}", admin.project);
    let created = admin
        .call(
            Method::POST,
            &format!("{cinder}/volumes"),
            Some(json!({"volume": {"size": 1, "name": "steward-listing"}})),
        )
        .await;
    let id = created["volume"]["id"].as_str().unwrap().to_owned();
    admin
        .wait_for(
            &format!("{cinder}/volumes/{id}"),
            "volume",
            "status",
            "available",
        )
        .await;
    let volumes = cloud.volumes().await.unwrap();
    let listed = volumes.iter().find(|v| v.id == id).expect("the new volume");
    assert_eq!(listed.size, 1);
    assert_eq!(listed.project_id, admin.project);
    let types = cloud.volume_types().await.unwrap();
    let named = types
        .iter()
        .find(|t| Some(&t.id) == listed.volume_type_id.as_ref())
        .expect("its type is listed");
    assert_eq!(Some(&named.name), listed.volume_type.as_ref());
    cloud.snapshots().await.unwrap();
    cloud.floating_ips().await.unwrap();
    cloud.routers().await.unwrap();
    admin
        .call(Method::DELETE, &format!("{cinder}/volumes/{id}"), None)
        .await;
}

/// `Cloud::call` against real Octavia: any method, the status as it came (a 400 is an answer,
/// not an error), the body as JSON.
#[tokio::test]
async fn any_call_answers_with_its_status_and_body() {
    if skipped() {
        return;
    }
    use openstack_sdk::types::ServiceType;
    let cloud = Cloud::connect("steward-test", None).await.unwrap();
    let (status, body) = cloud
        .call(
            ServiceType::LoadBalancer,
            http::Method::GET,
            "lbaas/providers",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(names.contains(&"amphora"), "{names:?} in {body}");
    let (status, body) = cloud
        .call(
            ServiceType::LoadBalancer,
            http::Method::POST,
            "lbaas/loadbalancers",
            Some(&json!({"loadbalancer": {"name": "steward-check-call"}})),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "no VIP given: {body}");
    assert!(
        body["faultstring"].as_str().is_some_and(|f| !f.is_empty()),
        "{body}"
    );
}
