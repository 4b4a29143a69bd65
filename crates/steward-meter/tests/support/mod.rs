//! What the tests against the real OpenStack services share: a capture queue on the real
//! exchanges (the truth a bill is held to), an admin client for the APIs, stores built from
//! captured notifications, and per-resource billing.

#![allow(dead_code)] // each test binary uses its own part

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use reqwest::Method;
use serde_json::{Value, json};
use steward_meter::close::{CloseOptions, CloseOutcome, close_period};
use steward_meter::ingest::amqp::decode_delivery;
use steward_meter::record::{Batch, Decoded};
use steward_meter::report::{ReportRequest, build_report};
use steward_meter::scrub::Scrubber;
use steward_meter::store::{self, Store};
use steward_meter::time::Instant;
use steward_meter::usage::catalogue::default_catalogue;
use steward_meter::usage::period::Period;

pub const KEYSTONE: &str = "http://127.0.0.1:5000/v3";
pub const NOVA: &str = "http://127.0.0.1:8774/v2.1";
pub const GLANCE: &str = "http://127.0.0.1:9292/v2";
pub const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/openstack";
pub const OCTAVIA: &str = "http://127.0.0.1:9876/v2/lbaas";

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn skipped() -> bool {
    std::env::var("STEWARD_TEST_SKIP_OPENSTACK_SERVICES").is_ok_and(|v| v == "1")
}

/// One captured delivery.
#[derive(Debug, Clone)]
pub struct Captured {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub event_type: String,
    pub text: String,
}

/// Binds a private queue to the exchanges nova, cinder (`openstack`), octavia and neutron
/// publish on and keeps every delivery.
pub async fn capture() -> (Connection, Arc<Mutex<Vec<Captured>>>) {
    let connection = Connection::connect(BROKER, ConnectionProperties::default())
        .await
        .expect("RabbitMQ vhost `openstack` on 127.0.0.1:5672 (scripts/openstack-services start)");
    let channel = connection.create_channel().await.unwrap();
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for exchange in ["nova", "openstack", "octavia", "neutron"] {
        let probe = connection.create_channel().await.unwrap();
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        if probe
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                passive,
                FieldTable::default(),
            )
            .await
            .is_err()
        {
            // Not published to yet: declare it as the services do (transient topic).
            let declare = connection.create_channel().await.unwrap();
            declare
                .exchange_declare(
                    exchange.into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
        }
        for key in ["notifications.info", "notifications.error"] {
            channel
                .queue_bind(
                    queue.name().as_str().into(),
                    exchange.into(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
        }
    }
    let mut consumer = channel
        .basic_consume(
            queue.name().as_str().into(),
            "reconcile-test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let captured = Arc::new(Mutex::new(Vec::new()));
    let sink = captured.clone();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let text = String::from_utf8_lossy(&delivery.data).into_owned();
            let outer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let message: Value = outer["oslo.message"]
                .as_str()
                .and_then(|m| serde_json::from_str(m).ok())
                .unwrap_or(outer);
            sink.lock().unwrap().push(Captured {
                exchange: delivery.exchange.as_str().to_owned(),
                routing_key: delivery.routing_key.as_str().to_owned(),
                body: delivery.data.clone(),
                event_type: message["event_type"].as_str().unwrap_or("").to_owned(),
                text,
            });
        }
    });
    (connection, captured)
}

pub struct Admin {
    pub http: reqwest::Client,
    pub token: String,
    pub project: String,
    pub user: String,
}

impl Admin {
    /// The admin user, scoped to the `admin` project.
    pub async fn login() -> Self {
        Self::login_to("admin").await
    }

    /// The admin user, scoped to `project` (a name in the default domain).
    pub async fn login_to(project: &str) -> Self {
        let http = reqwest::Client::new();
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"}, "password": "admin-secret"}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
        let response = http
            .post(format!("{KEYSTONE}/auth/tokens"))
            .json(&body)
            .send()
            .await
            .expect("Keystone on 127.0.0.1:5000 (scripts/openstack-services start)");
        assert!(
            response.status().is_success(),
            "token for {project}: {}",
            response.status()
        );
        let token = response.headers()["x-subject-token"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.unwrap();
        let project = body["token"]["project"]["id"].as_str().unwrap().to_owned();
        let user = body["token"]["user"]["id"].as_str().unwrap().to_owned();
        Self {
            http,
            token,
            project,
            user,
        }
    }

    /// Creates project `name` (unless it exists), gives the admin user the admin role on it, and
    /// returns a client scoped to it.
    pub async fn project(&self, name: &str) -> Admin {
        let found = self
            .call(
                Method::GET,
                &format!("{KEYSTONE}/projects?name={name}"),
                None,
            )
            .await;
        let id = match found["projects"].as_array().and_then(|p| p.first()) {
            Some(p) => p["id"].as_str().unwrap().to_owned(),
            None => self
                .call(
                    Method::POST,
                    &format!("{KEYSTONE}/projects"),
                    Some(json!({"project": {"name": name, "domain_id": "default"}})),
                )
                .await["project"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        };
        let roles = self
            .call(Method::GET, &format!("{KEYSTONE}/roles?name=admin"), None)
            .await;
        let role = roles["roles"][0]["id"].as_str().unwrap().to_owned();
        self.send(
            Method::PUT,
            &format!("{KEYSTONE}/projects/{id}/users/{}/roles/{role}", self.user),
            None,
        )
        .await;
        Self::login_to(name).await
    }

    /// Creates a volume of `size` GiB in this client's project and waits until it is
    /// available; returns its id and URL.
    pub async fn volume(&self, name: &str, size: u32) -> (String, String) {
        let cinder = format!("http://127.0.0.1:8776/v3/{}", self.project);
        let id = self
            .call(
                Method::POST,
                &format!("{cinder}/volumes"),
                Some(json!({"volume": {"size": size, "name": name}})),
            )
            .await["volume"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let url = format!("{cinder}/volumes/{id}");
        self.wait(&url, "volume", "status", Some("available")).await;
        (id, url)
    }

    /// Extends the volume at `url` to `size` GiB and waits until it is available again.
    pub async fn extend(&self, url: &str, size: u32) {
        self.call(
            Method::POST,
            &format!("{url}/action"),
            Some(json!({"os-extend": {"new_size": size}})),
        )
        .await;
        for _ in 0..240 {
            let v = self.call(Method::GET, url, None).await;
            if v["volume"]["size"] == size && v["volume"]["status"] == "available" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("{url} never reached {size} GiB");
    }

    /// Creates a load balancer (amphora provider on noop drivers: ACTIVE in seconds) and waits
    /// until it is ACTIVE; returns its id and URL.
    pub async fn load_balancer(&self, name: &str) -> (String, String) {
        let noop_net = "00000000-0000-4000-8000-000000001234";
        let id = self
            .call(
                Method::POST,
                &format!("{OCTAVIA}/loadbalancers"),
                Some(json!({"loadbalancer": {"name": name,
                    "vip_network_id": noop_net, "vip_subnet_id": noop_net}})),
            )
            .await["loadbalancer"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let url = format!("{OCTAVIA}/loadbalancers/{id}");
        self.wait(&url, "loadbalancer", "provisioning_status", Some("ACTIVE"))
            .await;
        (id, url)
    }

    /// A request; `None` for 404.
    pub async fn send(&self, method: Method, url: &str, body: Option<Value>) -> Option<Value> {
        let mut request = self
            .http
            .request(method.clone(), url)
            .header("X-Auth-Token", &self.token);
        if url.starts_with(NOVA) {
            request = request.header("OpenStack-API-Version", "compute 2.79");
        }
        if url.contains(":8776/") {
            request = request.header("OpenStack-API-Version", "volume 3.63");
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        if status == 404 {
            return None;
        }
        assert!(status.is_success(), "{method} {url}: {status} {text}");
        Some(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn call(&self, method: Method, url: &str, body: Option<Value>) -> Value {
        self.send(method.clone(), url, body)
            .await
            .unwrap_or_else(|| panic!("{method} {url}: 404"))
    }

    /// Waits until `url`'s `key.field` is `want` (`None`: until it is gone).
    pub async fn wait(&self, url: &str, key: &str, field: &str, want: Option<&str>) {
        for _ in 0..240 {
            let value = self.send(Method::GET, url, None).await;
            match (&value, want) {
                (None, None) => return,
                (Some(v), Some(w)) if v[key][field] == w => return,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("{url} never reached {field} = {want:?}");
    }
}

pub async fn tiny_flavor_and_image(admin: &Admin) -> (String, String) {
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
        None => admin
            .call(
                Method::POST,
                &format!("{NOVA}/flavors"),
                Some(
                    json!({"flavor": {"name": "steward.tiny", "ram": 256, "vcpus": 1, "disk": 1}}),
                ),
            )
            .await["flavor"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    };
    let image = admin
        .call(
            Method::POST,
            &format!("{GLANCE}/images"),
            Some(
                json!({"name": "steward-reconcile-test", "disk_format": "raw",
                        "container_format": "bare"}),
            ),
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

pub async fn store_of(captured: &[Captured]) -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = store::open(&url).await.unwrap();
    let mut batch = Batch {
        accepted: Vec::new(),
        quarantined: Vec::new(),
    };
    for c in captured {
        match decode_delivery(
            &c.body,
            &c.exchange,
            &c.routing_key,
            Instant::now(),
            &Scrubber::default(),
        ) {
            Decoded::Accepted(a) => batch.accepted.push(a),
            Decoded::Quarantined(q) => panic!("quarantined {}: {}", c.event_type, q.reason),
        }
    }
    store.commit(&[batch]).await.unwrap();
    (dir, store)
}

/// Billed seconds per product of `id` over `period`.
pub async fn billed(store: &dyn Store, id: &str, period: &Period) -> BTreeMap<String, f64> {
    let request = ReportRequest {
        period: *period,
        as_of: period.end,
        project: None,
        detail: true,
    };
    let report = build_report(store, &request, &default_catalogue())
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for p in &report.projects {
        for r in p.resources.as_deref().unwrap_or_default() {
            if r.resource_id != id {
                continue;
            }
            for product in &r.products {
                let q: f64 = product.quantity.parse().unwrap();
                out.insert(product.product.clone(), q * 3600.0);
            }
        }
    }
    out
}

pub fn assert_close(
    got: &BTreeMap<String, f64>,
    want: &BTreeMap<String, f64>,
    slack: f64,
    what: &str,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: products"
    );
    for (product, seconds) in want {
        assert!(
            (got[product] - seconds).abs() <= slack,
            "{what} {product}: {} s, truth {seconds} s",
            got[product]
        );
    }
}

/// Closes `period` now, with no grace (the test's reconciliation ran after its end).
pub async fn close_now(store: &dyn Store, period: &Period) -> CloseOutcome {
    close_period(
        store,
        period,
        &default_catalogue(),
        &CloseOptions {
            now: Instant::now(),
            grace_secs: 0,
            without_reconcile: false,
        },
    )
    .await
    .unwrap()
}
