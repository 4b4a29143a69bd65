//! `steward check loadbalancer --provider P`: can this cloud's Octavia, with provider P, run a
//! load balancer with an HTTP health monitor?
//!
//! Creates, each under the `steward-check-lb-<run>-` prefix and registered for removal
//! ([`crate::runner`]): a network and subnet, a load balancer on it, a TCP listener, a pool
//! (`ROUND_ROBIN`; `SOURCE_IP_PORT` on `ovn`, the only algorithm OVN has), a member and an
//! HTTP health monitor, waiting for the load balancer to be ACTIVE after each step. Where the
//! provider refuses HTTP monitors (OVN answers 501: "OVN provider does not support HTTP health
//! monitor type"), a TCP monitor is created instead and the result says so (WARN). At the end
//! everything is deleted (the load balancer with `cascade`), and the deletion verified: the
//! load balancer must answer 404.
//!
//! Before anything, leftovers of an earlier run that was killed (anything with the
//! `steward-check-lb-` prefix) are removed, and the result says how many.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use steward_cloud::{Cloud, Method, ServiceType};

use crate::model::{CheckResult, Status};
use crate::runner::{Cleanup, prefix, resource_name};

/// The check's id and standard.
pub const CHECK: &str = "lb";
const STANDARD: (&str, &str) = ("octavia-health-monitor", "v1");

/// How long the load balancer may take to become ACTIVE after a step.
const ACTIVE_WITHIN: Duration = Duration::from_secs(120);

fn result(id: &str, status: Status, message: impl Into<String>) -> CheckResult {
    CheckResult::new(id, STANDARD, status, message)
}

/// A failed API step as a result: what was asked and what Octavia or neutron answered.
fn refused(id: &str, what: &str, status: u16, body: &Value) -> CheckResult {
    let said = body["faultstring"]
        .as_str()
        .or(body["NeutronError"]["message"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_string());
    result(id, Status::Fail, format!("{what}: HTTP {status}: {said}"))
        .with("status", status)
        .with("answer", body.clone())
}

async fn call(
    cloud: &Cloud,
    service: ServiceType,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), CheckResult> {
    cloud
        .call(service, method.clone(), path, body.as_ref())
        .await
        .map_err(|e| result(CHECK, Status::Abort, format!("{method} {path}: {e}")))
}

/// Waits until load balancer `id` is ACTIVE (or ERROR, or gone).
async fn active(cloud: &Cloud, id: &str, step: &str) -> Result<(), CheckResult> {
    let deadline = tokio::time::Instant::now() + ACTIVE_WITHIN;
    loop {
        let (status, body) = call(
            cloud,
            ServiceType::LoadBalancer,
            Method::GET,
            &format!("lbaas/loadbalancers/{id}"),
            None,
        )
        .await?;
        let state = body["loadbalancer"]["provisioning_status"]
            .as_str()
            .unwrap_or("");
        match (status, state) {
            (200, "ACTIVE") => return Ok(()),
            (200, "ERROR") => {
                return Err(result(
                    step,
                    Status::Fail,
                    format!("load balancer {id} went to ERROR after {step}"),
                )
                .with("loadbalancer", body["loadbalancer"].clone()));
            }
            (200, _) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            (200, _) => {
                return Err(result(
                    step,
                    Status::Abort,
                    format!(
                        "load balancer {id} still {state} {}s after {step}",
                        ACTIVE_WITHIN.as_secs()
                    ),
                ));
            }
            (other, _) => return Err(refused(step, "reading the load balancer", other, &body)),
        }
    }
}

/// Removes what earlier runs left: load balancers (cascade) and networks with the prefix.
pub async fn remove_leftovers(cloud: &Cloud) -> Result<Vec<String>, CheckResult> {
    let mine = prefix(CHECK);
    let mut removed = Vec::new();
    let (_, lbs) = call(
        cloud,
        ServiceType::LoadBalancer,
        Method::GET,
        "lbaas/loadbalancers",
        None,
    )
    .await?;
    let (_, networks) = call(cloud, ServiceType::Network, Method::GET, "networks", None).await?;
    // Load balancers first: they hold ports on the networks.
    let kinds = [
        ("load balancer", &lbs["loadbalancers"]),
        ("network", &networks["networks"]),
    ];
    for (kind, listed) in kinds {
        for item in listed.as_array().into_iter().flatten() {
            let (Some(id), Some(name)) = (item["id"].as_str(), item["name"].as_str()) else {
                continue;
            };
            if !name.starts_with(&mine) {
                continue;
            }
            let deleted = if kind == "network" {
                delete_network(cloud, id).await
            } else {
                delete_load_balancer(cloud, id).await
            };
            deleted.map_err(|e| {
                result(
                    "lb-leftovers",
                    Status::Abort,
                    format!("removing {kind} {name}: {e}"),
                )
            })?;
            removed.push(format!("{kind} {name}"));
        }
    }
    Ok(removed)
}

/// Deletes load balancer `id` with everything on it and waits until it is gone.
async fn delete_load_balancer(cloud: &Cloud, id: &str) -> Result<(), String> {
    let path = format!("lbaas/loadbalancers/{id}");
    let deadline = tokio::time::Instant::now() + ACTIVE_WITHIN;
    loop {
        let (status, body) = cloud
            .call(
                ServiceType::LoadBalancer,
                Method::DELETE,
                &format!("{path}?cascade=true"),
                None,
            )
            .await
            .map_err(|e| e.to_string())?;
        match status {
            204 | 404 => break,
            // Immutable while a change is pending: try again.
            409 if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return Err(format!("DELETE answered {other}: {body}")),
        }
    }
    while tokio::time::Instant::now() < deadline {
        let (status, body) = cloud
            .call(ServiceType::LoadBalancer, Method::GET, &path, None)
            .await
            .map_err(|e| e.to_string())?;
        if status == 404 || body["loadbalancer"]["provisioning_status"] == "DELETED" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!(
        "load balancer {id} still there {}s after its deletion",
        ACTIVE_WITHIN.as_secs()
    ))
}

async fn delete_network(cloud: &Cloud, id: &str) -> Result<(), String> {
    let (status, body) = cloud
        .call(
            ServiceType::Network,
            Method::DELETE,
            &format!("networks/{id}"),
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
    match status {
        204 | 404 => Ok(()),
        other => Err(format!("DELETE network answered {other}: {body}")),
    }
}

/// POSTs `body` to `path`; the created object under `key`, or the failure.
async fn create(
    cloud: &Cloud,
    service: ServiceType,
    path: &str,
    key: &str,
    body: Value,
    step: &str,
) -> Result<Value, CheckResult> {
    let (status, answer) = call(cloud, service, Method::POST, path, Some(body)).await?;
    if !(200..300).contains(&status) {
        return Err(refused(
            step,
            &format!("creating the {key}"),
            status,
            &answer,
        ));
    }
    Ok(answer[key].clone())
}

/// The check's body: run under [`crate::runner::run`] with its clean-up.
pub async fn check(
    cloud: Arc<Cloud>,
    provider: String,
    run: String,
    cleanup: Arc<Cleanup>,
) -> Vec<CheckResult> {
    let mut results = Vec::new();
    if let Err(stopped) = steps(&cloud, &provider, &run, &cleanup, &mut results).await {
        results.push(stopped);
    }
    results
}

async fn steps(
    cloud: &Arc<Cloud>,
    provider: &str,
    run: &str,
    cleanup: &Cleanup,
    results: &mut Vec<CheckResult>,
) -> Result<(), CheckResult> {
    let removed = remove_leftovers(cloud).await?;
    if !removed.is_empty() {
        results.push(
            result(
                "lb-leftovers",
                Status::Pass,
                format!("removed {} leftover(s) of an earlier run", removed.len()),
            )
            .with("removed", removed),
        );
    }
    let name = |what: &str| resource_name(CHECK, run, what);
    // A network of its own for the VIP and the member.
    let network = create(
        cloud,
        ServiceType::Network,
        "networks",
        "network",
        json!({"network": {"name": name("net")}}),
        "lb-network",
    )
    .await?;
    let network_id = network["id"].as_str().unwrap_or_default().to_owned();
    {
        let cloud = cloud.clone();
        let id = network_id.clone();
        cleanup.register(format!("network {id}"), move || async move {
            delete_network(&cloud, &id).await
        });
    }
    let subnet = create(
        cloud,
        ServiceType::Network,
        "subnets",
        "subnet",
        json!({"subnet": {"name": name("subnet"), "network_id": network_id,
            "ip_version": 4, "cidr": "10.250.0.0/24"}}),
        "lb-network",
    )
    .await?;
    let subnet_id = subnet["id"].as_str().unwrap_or_default().to_owned();

    let lb = create(
        cloud,
        ServiceType::LoadBalancer,
        "lbaas/loadbalancers",
        "loadbalancer",
        json!({"loadbalancer": {"name": name("lb"), "vip_subnet_id": subnet_id,
            "provider": provider}}),
        "lb-create",
    )
    .await?;
    let lb_id = lb["id"].as_str().unwrap_or_default().to_owned();
    {
        let cloud = cloud.clone();
        let id = lb_id.clone();
        cleanup.register(format!("load balancer {id}"), move || async move {
            delete_load_balancer(&cloud, &id).await
        });
    }
    active(cloud, &lb_id, "lb-create").await?;
    results.push(
        result(
            "lb-create",
            Status::Pass,
            format!("load balancer ACTIVE on provider {provider}"),
        )
        .with("loadbalancer_id", lb_id.as_str()),
    );
    let listener = create(
        cloud,
        ServiceType::LoadBalancer,
        "lbaas/listeners",
        "listener",
        json!({"listener": {"name": name("listener"), "loadbalancer_id": lb_id,
            "protocol": "TCP", "protocol_port": 80}}),
        "lb-listener",
    )
    .await?;
    active(cloud, &lb_id, "lb-listener").await?;
    let algorithm = if provider == "ovn" {
        "SOURCE_IP_PORT"
    } else {
        "ROUND_ROBIN"
    };
    let pool = create(
        cloud,
        ServiceType::LoadBalancer,
        "lbaas/pools",
        "pool",
        json!({"pool": {"name": name("pool"), "listener_id": listener["id"],
            "protocol": "TCP", "lb_algorithm": algorithm}}),
        "lb-pool",
    )
    .await?;
    let pool_id = pool["id"].as_str().unwrap_or_default().to_owned();
    active(cloud, &lb_id, "lb-pool").await?;
    create(
        cloud,
        ServiceType::LoadBalancer,
        &format!("lbaas/pools/{pool_id}/members"),
        "member",
        json!({"member": {"name": name("member"), "address": "10.250.0.10",
            "protocol_port": 80, "subnet_id": subnet_id}}),
        "lb-member",
    )
    .await?;
    active(cloud, &lb_id, "lb-member").await?;
    results.push(result(
        "lb-pool",
        Status::Pass,
        format!("TCP listener, {algorithm} pool and a member ACTIVE"),
    ));

    // The HTTP health monitor, or the TCP fallback where the provider has none.
    let monitor = |kind: &str| {
        let mut m = json!({"healthmonitor": {"name": name(&format!("hm-{}", kind.to_lowercase())),
            "pool_id": pool_id, "type": kind, "delay": 5, "timeout": 3, "max_retries": 3}});
        if kind == "HTTP" {
            m["healthmonitor"]["url_path"] = json!("/");
            m["healthmonitor"]["http_method"] = json!("GET");
            m["healthmonitor"]["expected_codes"] = json!("200");
        }
        m
    };
    let (status, answer) = call(
        cloud,
        ServiceType::LoadBalancer,
        Method::POST,
        "lbaas/healthmonitors",
        Some(monitor("HTTP")),
    )
    .await?;
    if (200..300).contains(&status) {
        active(cloud, &lb_id, "lb-health-monitor").await?;
        results.push(
            result(
                "lb-health-monitor",
                Status::Pass,
                "HTTP health monitor ACTIVE",
            )
            .with("healthmonitor_id", answer["healthmonitor"]["id"].clone()),
        );
    } else if status == 501 {
        let refusal = answer["faultstring"].as_str().unwrap_or("").to_owned();
        create(
            cloud,
            ServiceType::LoadBalancer,
            "lbaas/healthmonitors",
            "healthmonitor",
            monitor("TCP"),
            "lb-health-monitor",
        )
        .await?;
        active(cloud, &lb_id, "lb-health-monitor").await?;
        results.push(
            result(
                "lb-health-monitor",
                Status::Warn,
                format!("HTTP health monitors unsupported by provider {provider}; TCP used"),
            )
            .with("http_refusal", refusal)
            .with("status", 501),
        );
    } else {
        results.push(refused(
            "lb-health-monitor",
            "creating the HTTP health monitor",
            status,
            &answer,
        ));
    }
    Ok(())
}
