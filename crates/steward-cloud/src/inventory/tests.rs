//! The records read from the real API answers of nova 34, cinder 29, neutron 29 and octavia 19
//! (`../shared/fixtures/real/api/`).

use serde_json::{Value, json};

use super::*;

fn api(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/real/api")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn the_three_time_forms_are_utc_to_the_microsecond() {
    let want = utc("2026-12-02T03:29:24.123456Z");
    for text in [
        "2026-12-02T03:29:24.123456",
        "2026-12-02T03:29:24.123456Z",
        "2026-12-02T03:29:24.123456+00:00",
        "2026-12-02 03:29:24.123456",
    ] {
        assert_eq!(parse_api_time(text), Some(want), "{text}");
    }
    assert_eq!(
        parse_api_time("2026-12-02T03:30:29"),
        Some(utc("2026-12-02T03:30:29Z"))
    );
    assert_eq!(parse_api_time("yesterday"), None);
}

#[test]
fn deleted_servers_carry_launch_termination_and_the_final_flavor() {
    let servers: Vec<Server> =
        parse_list(&api("nova_detail_changes_since_deleted.json"), "servers").unwrap();
    assert_eq!(servers.len(), 3);
    let alpha = servers.iter().find(|s| s.name == "alpha-1").unwrap();
    assert_eq!(alpha.status, "DELETED");
    assert_eq!(alpha.vm_state.as_deref(), Some("deleted"));
    assert_eq!(alpha.tenant_id, "12ed93a2fb2b4e4aa40415b3b0140d03");
    assert_eq!(
        (
            alpha.flavor.original_name.as_str(),
            alpha.flavor.vcpus,
            alpha.flavor.ram
        ),
        ("rs.medium", 2, 1024)
    );
    // The resize reset launched_at.
    assert_eq!(alpha.launched_at, Some(utc("2026-12-02T03:29:37Z")));
    assert_eq!(alpha.terminated_at, Some(utc("2026-12-02T03:29:47Z")));
    assert_eq!(alpha.created, utc("2026-12-02T03:29:18Z"));
}

#[test]
fn live_servers_have_no_termination() {
    let servers: Vec<Server> =
        parse_list(&api("nova_detail_changes_since.json"), "servers").unwrap();
    assert!(!servers.is_empty());
    let active = api("nova_server_active.json");
    let one = Server::deserialize(&active).unwrap();
    assert_eq!(one.status, "ACTIVE");
    assert_eq!(one.terminated_at, None, "an empty terminated_at is none");
    assert_eq!(one.launched_at, Some(utc("2026-12-02T03:29:22Z")));
}

#[test]
fn instance_actions_date_each_step() {
    let all = api("nova_instance_actions_deleted.json");
    let server = "366177c4-39b7-4aea-8108-2a86a67f5983";
    let mut actions = Vec::new();
    for detail in all[server]["detail"].as_object().unwrap().values() {
        actions.extend(parse_instance_actions(detail).unwrap());
    }
    let names: std::collections::BTreeSet<&str> =
        actions.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        names,
        [
            "confirmResize",
            "create",
            "delete",
            "resize",
            "start",
            "stop"
        ]
        .into()
    );
    let stop = actions.iter().find(|a| a.action == "stop").unwrap();
    assert_eq!(stop.start_time, utc("2026-12-02T03:29:40Z"));
    assert_eq!(stop.finished_at(), Some(utc("2026-12-02T03:29:41Z")));
    let list = parse_instance_actions(&api("nova_instance_actions_changes_since.json")).unwrap();
    assert!(
        list.iter().all(|a| a.events.is_empty()),
        "the list has no events"
    );
}

#[test]
fn volumes_name_their_type_and_its_id() {
    let volumes: Vec<Volume> =
        parse_list(&api("cinder_volumes_detail_all_tenants.json"), "volumes").unwrap();
    assert_eq!(volumes.len(), 2);
    let v = &volumes[0];
    assert_eq!(v.volume_type.as_deref(), Some("__DEFAULT__"));
    assert_eq!(
        v.volume_type_id.as_deref(),
        Some("26f2c12d-3ffd-45c3-9cba-c7f26d684c56"),
        "the id the notifications carry"
    );
    assert_eq!(v.project_id.len(), 32);
    let deleted: Vec<Volume> =
        parse_list(&api("cinder_volumes_deleted_filter.json"), "volumes").unwrap();
    assert!(deleted.is_empty(), "cinder does not list deleted volumes");
    let snapshots: Vec<Snapshot> = parse_list(
        &api("cinder_snapshots_detail_all_tenants.json"),
        "snapshots",
    )
    .unwrap();
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0].size, 1);
}

#[test]
fn floating_ips_routers_and_load_balancers_read_from_admin_listings() {
    let fips: Vec<FloatingIp> =
        parse_list(&api("neutron_floatingips_admin_all.json"), "floatingips").unwrap();
    assert_eq!(fips.len(), 2);
    assert!(
        fips.iter().any(|f| f.port_id.is_some()),
        "one is associated"
    );
    let routers: Vec<Router> =
        parse_list(&api("neutron_routers_admin_all.json"), "routers").unwrap();
    assert_eq!(routers.len(), 1);
    let lbs: Vec<LoadBalancer> = parse_list(
        &api("octavia_loadbalancers_admin_all.json"),
        "loadbalancers",
    )
    .unwrap();
    assert_eq!(lbs.len(), 3);
    let alpha = lbs
        .iter()
        .find(|l| l.name.as_deref() == Some("alpha-lb"))
        .unwrap();
    assert_eq!(alpha.created_at, utc("2026-12-02T03:30:29Z"));
    assert_eq!(alpha.provider.as_deref(), Some("amphora"));
}

#[test]
fn a_broken_item_is_an_error_naming_listing_index_id_and_field() {
    let body = json!({"volumes": [
        {"id": "v-1", "os-vol-tenant-attr:tenant_id": "p", "size": 1, "status": "available",
         "created_at": "2026-12-02T03:31:21.000000"},
        {"id": "v-2", "os-vol-tenant-attr:tenant_id": "p", "size": 1, "status": "available",
         "created_at": "soon"},
        {"id": "v-3", "size": 1, "status": "available", "created_at": "2026-12-02T03:31:21"},
    ]});
    let error = parse_list::<Volume>(&body, "volumes").unwrap_err();
    assert_eq!(error.listing, "volumes[1] (id v-2)");
    assert!(error.detail.contains("unreadable time \"soon\""), "{error}");
    let missing =
        parse_list::<Volume>(&json!({"volumes": [body["volumes"][2]]}), "volumes").unwrap_err();
    assert!(
        missing.detail.contains("os-vol-tenant-attr:tenant_id"),
        "{missing}"
    );
    let no_list = parse_list::<Volume>(&json!({"error": "nope"}), "volumes").unwrap_err();
    assert!(
        no_list.to_string().contains("no list \"volumes\""),
        "{no_list}"
    );
}
