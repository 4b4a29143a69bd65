//! The Odoo sink against the fake Odoo (`scripts/fake-odoo.py`) of every version 16–19, on
//! each protocol: one draft per project however often it is pushed, also after a fault that
//! came after Odoo committed; quantities kept exactly or the delivery refused; a correction of
//! a posted invoice as a credit note plus a new draft; sale orders with 19's field names; and
//! the wire format cross-checked with Python's xmlrpc.client and Debian's python3-odoorpc.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::rpc::{Client, OdooError, Protocol, Settings};
use super::{Mapping, OdooDocument, OdooSink};
use crate::facts::FactKind;
use crate::sinks::Sink;
use crate::sinks::outbox::{
    CONFIRMED, FAILED_PERMANENT, PLANNED, RetryPolicy, deliver, plan_period,
};
use crate::store::{SqlStore, Store};
use crate::test_support::{at, closed_october, correct_october, server};
use crate::usage::period::Period;

/// A fake Odoo of one version on a free port, stopped when dropped.
struct FakeOdoo {
    child: Child,
    url: String,
}

impl FakeOdoo {
    async fn start(version: u32) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
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
            .unwrap_or_else(|e| panic!("python3 {script}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
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
        Self { child, url }
    }

    fn settings(&self, protocol: Protocol) -> Settings {
        Settings {
            url: self.url.clone(),
            database: "steward".to_owned(),
            login: "admin".to_owned(),
            api_key: "steward-api-key".to_owned(),
            protocol,
            timeout: Duration::from_secs(10),
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

    /// Quantities kept to 6 decimals (Odoo's default is 2).
    async fn precise(&self) {
        for name in ["Product Unit of Measure", "Product Price"] {
            self.control("/fake/precision", json!({"name": name, "digits": 6}))
                .await;
        }
    }

    async fn records(&self, model: &str) -> Vec<Value> {
        reqwest::get(format!("{}/fake/records/{model}", self.url))
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

fn mapping() -> Mapping {
    Mapping {
        create_partners: true,
        create_products: true,
        ..Mapping::default()
    }
}

fn sink(odoo: &FakeOdoo, protocol: Protocol, mapping: Mapping) -> OdooSink {
    OdooSink::new("odoo", odoo.settings(protocol), mapping).unwrap()
}

/// Plans October for the sink `odoo` and attempts every row not confirmed.
async fn push(store: &SqlStore, sink: &OdooSink) -> Vec<(String, Option<String>, Option<String>)> {
    let october = Period::month("2026-10").unwrap();
    let now = at("2026-11-05T01:00:00Z");
    plan_period(store, &october, &["odoo"], now).await.unwrap();
    let rows = store
        .deliveries(Some("odoo"), october.start, october.end)
        .await
        .unwrap();
    deliver(store, sink, rows, now, &RetryPolicy::default())
        .await
        .unwrap()
        .into_iter()
        .map(|(_, u)| (u.state, u.remote_id, u.last_error))
        .collect()
}

/// The report's quantity per project of October's closed report, as Odoo must keep them.
async fn report_quantities(store: &SqlStore) -> Vec<(String, String)> {
    let october = Period::month("2026-10").unwrap();
    let report = crate::close::closed_view(store, &october, None)
        .await
        .unwrap()
        .unwrap();
    report
        .projects
        .iter()
        .flat_map(|p| {
            p.lines
                .iter()
                .map(|l| (p.project_id.clone().unwrap_or_default(), l.quantity.clone()))
        })
        .collect()
}

#[tokio::test]
async fn every_version_and_protocol_connects_and_reports_errors_as_odoo_does() {
    for version in [16, 17, 18, 19] {
        let odoo = FakeOdoo::start(version).await;
        let mut protocols = vec![Protocol::Auto, Protocol::Jsonrpc, Protocol::Xmlrpc];
        if version >= 19 {
            protocols.push(Protocol::Json2);
        }
        for protocol in protocols {
            let client = Client::connect(&odoo.settings(protocol)).await.unwrap();
            assert_eq!(client.version, version);
            let expected = match (protocol, version) {
                (Protocol::Auto, 19) => Protocol::Json2,
                (Protocol::Auto, _) => Protocol::Jsonrpc,
                (p, _) => p,
            };
            assert_eq!(client.protocol, expected, "{version} {protocol}");
            // A create naming a missing partner: Odoo's MissingError, permanent.
            let mut vals = Map::new();
            vals.insert(
                "vals_list".to_owned(),
                json!([{"move_type": "out_invoice", "partner_id": 999_999_999}]),
            );
            let missing = client
                .call("account.move", "create", None, vals)
                .await
                .unwrap_err();
            let said = missing.to_string();
            assert!(
                said.contains("Record does not exist") && said.contains("res.partner(999999999,)"),
                "{version} {protocol}: {said}"
            );
            assert!(!missing.is_transient());
            // A wrong key.
            let mut wrong = odoo.settings(protocol);
            wrong.api_key = "not-the-key".to_owned();
            let refused = Client::connect(&wrong).await.unwrap_err();
            assert!(
                matches!(refused, OdooError::Credentials { .. }),
                "{version} {protocol}: {refused:?}"
            );
        }
        if version < 19 {
            let refused = Client::connect(&odoo.settings(Protocol::Json2))
                .await
                .unwrap_err();
            assert!(refused.to_string().contains("needs Odoo 19"), "{refused}");
        }
    }
}

#[tokio::test]
async fn odoo_18_answers_json_2_with_a_redirect_that_is_not_followed() {
    let odoo = FakeOdoo::start(18).await;
    let answer = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/json/2/res.partner/search", odoo.url))
        .bearer_auth("steward-api-key")
        .json(&json!({"domain": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    assert!(
        answer.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/web/login")
    );
}

#[tokio::test]
async fn pushing_twice_leaves_one_draft_per_project_on_every_version() {
    for (version, protocol) in [
        (16, Protocol::Auto),
        (17, Protocol::Xmlrpc),
        (18, Protocol::Auto),
        (18, Protocol::Xmlrpc),
        (19, Protocol::Auto),
        (19, Protocol::Jsonrpc),
    ] {
        let (store, _dir) = closed_october().await;
        let odoo = FakeOdoo::start(version).await;
        odoo.precise().await;
        let sink = sink(&odoo, protocol, mapping());
        let first = push(&store, &sink).await;
        assert_eq!(first.len(), 2, "{version}: {first:?}");
        assert!(
            first.iter().all(|(state, _, _)| state == CONFIRMED),
            "{version} {protocol}: {first:?}"
        );
        assert!(push(&store, &sink).await.is_empty(), "nothing left to do");
        // Delivering the same documents again (as after a crash) finds the drafts by ref.
        let october = Period::month("2026-10").unwrap();
        for row in store
            .deliveries(Some("odoo"), october.start, october.end)
            .await
            .unwrap()
        {
            let document = crate::sinks::outbox::document(store.as_ref(), &row)
                .await
                .unwrap();
            assert_eq!(
                sink.deliver(&document).await.unwrap(),
                row.remote_id.unwrap()
            );
        }
        let moves = odoo.records("account.move").await;
        assert_eq!(moves.len(), 2, "{version} {protocol}: {moves:#?}");
        let mut refs: Vec<&str> = moves.iter().map(|m| m["ref"].as_str().unwrap()).collect();
        refs.sort_unstable();
        assert_eq!(refs, ["steward:2026-10:p-a", "steward:2026-10:p-b"]);
        for m in &moves {
            assert_eq!(
                (
                    m["state"].as_str(),
                    m["name"].as_bool(),
                    m["move_type"].as_str()
                ),
                (Some("draft"), Some(false), Some("out_invoice"))
            );
        }
        // Quantities equal the report's; no taxes were added.
        let lines = odoo.records("account.move.line").await;
        let partners = odoo.records("res.partner").await;
        for (project, quantity) in report_quantities(&store).await {
            let partner = partners
                .iter()
                .find(|p| p["ref"] == project.as_str())
                .unwrap();
            let invoice = moves
                .iter()
                .find(|m| m["partner_id"] == partner["id"])
                .unwrap();
            let line = lines
                .iter()
                .find(|l| l["move_id"] == invoice["id"])
                .unwrap();
            assert_eq!(
                format!("{:.6}", line["quantity"].as_f64().unwrap()),
                quantity,
                "{version} {protocol} {project}"
            );
            assert_eq!(line["tax_ids"], json!([]), "taxes are sent explicitly");
        }
    }
}

#[tokio::test]
async fn a_fault_after_odoo_committed_is_retried_into_the_same_draft() {
    let (store, _dir) = closed_october().await;
    let odoo = FakeOdoo::start(19).await;
    odoo.precise().await;
    odoo.control(
        "/fake/inject",
        json!({"model": "account.move", "method": "create", "mode": "fault-after-commit"}),
    )
    .await;
    let sink = sink(&odoo, Protocol::Auto, mapping());
    let first = push(&store, &sink).await;
    let states: Vec<&str> = first.iter().map(|(s, _, _)| s.as_str()).collect();
    assert!(states.contains(&PLANNED), "one is retried: {first:?}");
    assert!(
        first
            .iter()
            .any(|(_, _, e)| e.as_deref().is_some_and(|e| e.contains("after commit")))
    );
    // The retry finds the committed draft by its ref: still one per project.
    let second = push(&store, &sink).await;
    assert!(second.iter().all(|(s, _, _)| s == CONFIRMED), "{second:?}");
    assert_eq!(odoo.records("account.move").await.len(), 2);
    // An HTTP 500 before anything happened: retried too.
    let (store, _dir) = closed_october().await;
    let odoo = FakeOdoo::start(17).await;
    odoo.precise().await;
    odoo.control(
        "/fake/inject",
        json!({"model": "res.partner", "method": "search_read", "mode": "http-500"}),
    )
    .await;
    let sink = self::sink(&odoo, Protocol::Jsonrpc, mapping());
    let first = push(&store, &sink).await;
    assert!(
        first
            .iter()
            .any(|(s, _, e)| s == PLANNED && e.as_deref().is_some_and(|e| e.contains("500")))
    );
}

#[tokio::test]
async fn quantities_or_prices_odoo_would_round_are_refused_and_no_draft_is_left() {
    // A price of 0.021 rounds to 0.02 on Odoo 18 at its default "Product Price" precision.
    let (store, _dir) = closed_october().await;
    let odoo = FakeOdoo::start(18).await;
    odoo.control(
        "/fake/precision",
        json!({"name": "Product Unit of Measure", "digits": 6}),
    )
    .await;
    let mut priced = mapping();
    let product = report_products(&store).await.remove(0);
    priced.prices.insert(product.clone(), 0.021);
    let sink18 = sink(&odoo, Protocol::Auto, priced.clone());
    let refused = push(&store, &sink18).await;
    assert!(
        refused.iter().all(|(s, _, e)| s == FAILED_PERMANENT
            && e.as_deref().is_some_and(|e| e.contains("Product Price")
                && e.contains("0.021")
                && e.contains("removed the draft"))),
        "{refused:?}"
    );
    assert!(odoo.records("account.move").await.is_empty());
    // Odoo 19 keeps the price at the same precision setting (measured).
    let (store, _dir) = closed_october().await;
    let odoo = FakeOdoo::start(19).await;
    odoo.control(
        "/fake/precision",
        json!({"name": "Product Unit of Measure", "digits": 6}),
    )
    .await;
    let kept = push(&store, &sink(&odoo, Protocol::Auto, priced)).await;
    assert!(kept.iter().all(|(s, _, _)| s == CONFIRMED), "{kept:?}");
    let lines = odoo.records("account.move.line").await;
    assert!(lines.iter().all(|l| l["price_unit"] == json!(0.021)));
}

#[tokio::test]
async fn a_quantity_rounded_by_odoo_is_refused_with_the_fix() {
    // A usage of 1/3 hour: 0.333333 at 6 decimals, 0.33 at Odoo's default 2.
    let (store, _dir) = crate::test_support::store_with(&[
        server("vm-1", "p-a", FactKind::Created, "2026-10-01T10:00:00Z"),
        server("vm-1", "p-a", FactKind::Deleted, "2026-10-01T10:20:00Z"),
    ])
    .await;
    crate::close::close_period(
        store.as_ref(),
        &Period::month("2026-10").unwrap(),
        &crate::usage::catalogue::default_catalogue(),
        &crate::close::CloseOptions {
            now: at("2026-11-05T00:00:00Z"),
            grace_secs: 86_400,
            without_reconcile: true,
        },
    )
    .await
    .unwrap();
    let odoo = FakeOdoo::start(17).await;
    let refused = push(&store, &sink(&odoo, Protocol::Auto, mapping())).await;
    let error = refused[0].2.as_deref().unwrap();
    assert_eq!(refused[0].0, FAILED_PERMANENT);
    assert!(
        error.contains("stored as 0.33") && error.contains("\"Product Unit of Measure\" to 6"),
        "{error}"
    );
    assert!(odoo.records("account.move").await.is_empty());
}

async fn report_products(store: &SqlStore) -> Vec<String> {
    let october = Period::month("2026-10").unwrap();
    let report = crate::close::closed_view(store, &october, None)
        .await
        .unwrap()
        .unwrap();
    report.totals.iter().map(|t| t.product.clone()).collect()
}

#[tokio::test]
async fn a_correction_of_a_posted_invoice_is_a_credit_note_and_a_new_draft() {
    for version in [16, 19] {
        let (store, _dir) = closed_october().await;
        let odoo = FakeOdoo::start(version).await;
        odoo.precise().await;
        let sink = sink(&odoo, Protocol::Auto, mapping());
        assert!(
            push(&store, &sink)
                .await
                .iter()
                .all(|(s, _, _)| s == CONFIRMED)
        );
        // The accountant posts p-a's invoice.
        let client = Client::connect(&odoo.settings(Protocol::Auto))
            .await
            .unwrap();
        let posted = odoo
            .records("account.move")
            .await
            .into_iter()
            .find(|m| m["ref"] == "steward:2026-10:p-a")
            .unwrap();
        let posted_id = posted["id"].as_i64().unwrap();
        client
            .call(
                "account.move",
                "action_post",
                Some(&[posted_id]),
                Map::new(),
            )
            .await
            .unwrap();

        // A late fact: vm-1 of p-a was deleted on the 15th.
        p_a_loses_vm_1_mid_month(&store).await;
        let delivered = push(&store, &sink).await;
        assert_eq!(delivered.len(), 1, "{delivered:?}");
        assert_eq!(delivered[0].0, CONFIRMED, "{delivered:?}");
        assert!(delivered[0].1.as_deref().unwrap().contains("credit note"));
        assert!(push(&store, &sink).await.is_empty());
        let moves = odoo.records("account.move").await;
        assert_eq!(
            moves.len(),
            4,
            "two invoices, one credit note, one new draft"
        );
        let refund = moves
            .iter()
            .find(|m| m["move_type"] == "out_refund")
            .unwrap();
        assert_eq!(refund["reversed_entry_id"], posted_id);
        assert_eq!(refund["ref"], "steward:2026-10:p-a:c1:refund");
        assert_eq!(refund["amount_total"], posted["amount_total"]);
        let new = moves
            .iter()
            .find(|m| m["ref"] == "steward:2026-10:p-a:c1")
            .unwrap();
        assert_eq!(new["state"], "draft");
        // The new draft bills exactly the corrected usage: 14 days and 14 hours of vm-1.
        let lines = odoo.records("account.move.line").await;
        let line = lines.iter().find(|l| l["move_id"] == new["id"]).unwrap();
        let live = crate::report::build_report(
            store.as_ref(),
            &crate::report::ReportRequest {
                period: Period::month("2026-10").unwrap(),
                as_of: at("2026-11-06T02:00:00Z"),
                project: Some("p-a".to_owned()),
                detail: false,
            },
            &crate::usage::catalogue::default_catalogue(),
        )
        .await
        .unwrap();
        let vcpu = live.projects[0]
            .lines
            .iter()
            .find(|l| l.product.contains("SCS-2V-4"))
            .unwrap();
        assert_eq!(
            format!("{:.6}", line["quantity"].as_f64().unwrap()),
            vcpu.quantity,
            "{version}"
        );
        // p-b's invoice was not touched.
        let p_b = moves
            .iter()
            .find(|m| m["ref"] == "steward:2026-10:p-b")
            .unwrap();
        assert_eq!(p_b["state"], "draft");
    }
}

#[tokio::test]
async fn a_user_without_rights_is_refused_for_good() {
    let (store, _dir) = closed_october().await;
    let odoo = FakeOdoo::start(18).await;
    let mut settings = odoo.settings(Protocol::Xmlrpc);
    settings.login = "viewer".to_owned();
    settings.api_key = "viewer".to_owned();
    let sink = OdooSink::new("odoo", settings, mapping()).unwrap();
    let refused = push(&store, &sink).await;
    assert!(
        refused.iter().all(|(s, _, e)| s == FAILED_PERMANENT
            && e.as_deref()
                .is_some_and(|e| e.contains("not allowed to create"))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn sale_orders_use_each_versions_field_names() {
    for version in [18, 19] {
        let (store, _dir) = closed_october().await;
        let odoo = FakeOdoo::start(version).await;
        odoo.precise().await;
        let orders = Mapping {
            document: OdooDocument::SaleOrder,
            tax_ids: vec![2],
            ..mapping()
        };
        let delivered = push(&store, &sink(&odoo, Protocol::Auto, orders)).await;
        assert!(
            delivered.iter().all(|(s, _, _)| s == CONFIRMED),
            "{delivered:?}"
        );
        let sale_orders = odoo.records("sale.order").await;
        assert_eq!(sale_orders.len(), 2);
        assert!(
            sale_orders
                .iter()
                .all(|o| o["state"] == "draft" && o["name"].as_str().unwrap().starts_with('S'))
        );
        let tax_field = if version >= 19 { "tax_ids" } else { "tax_id" };
        let lines = odoo.records("sale.order.line").await;
        assert!(
            lines.iter().all(|l| l[tax_field] == json!([2])),
            "{lines:?}"
        );
    }
}

#[tokio::test]
async fn missing_partners_and_products_are_named_without_creating_anything() {
    let (store, _dir) = closed_october().await;
    let odoo = FakeOdoo::start(19).await;
    let refused = push(&store, &sink(&odoo, Protocol::Auto, Mapping::default())).await;
    let errors: Vec<&str> = refused
        .iter()
        .filter_map(|(_, _, e)| e.as_deref())
        .collect();
    assert!(
        errors
            .iter()
            .all(|e| e.contains("no Odoo product has default_code")),
        "{errors:?}"
    );
    let with_products = Mapping {
        create_products: true,
        ..Mapping::default()
    };
    let (store, _dir) = closed_october().await;
    let refused = push(&store, &sink(&odoo, Protocol::Auto, with_products)).await;
    assert!(
        refused.iter().all(|(_, _, e)| e
            .as_deref()
            .is_some_and(|e| e.contains("no Odoo partner has ref \"p-"))),
        "{refused:?}"
    );
    assert!(odoo.records("account.move").await.is_empty());
    assert!(odoo.records("res.partner").await.is_empty());
}

#[tokio::test]
async fn independent_clients_read_what_steward_wrote() {
    // Steward writes over XML-RPC (Odoo 17) and JSON-2 (19); Python's xmlrpc.client and
    // Debian's python3-odoorpc (JSON-RPC) read it back.
    for (version, protocol) in [(17, Protocol::Xmlrpc), (19, Protocol::Json2)] {
        let (store, _dir) = closed_october().await;
        let odoo = FakeOdoo::start(version).await;
        odoo.precise().await;
        assert!(
            push(&store, &sink(&odoo, protocol, mapping()))
                .await
                .iter()
                .all(|(s, _, _)| s == CONFIRMED)
        );
        let port = odoo.url.rsplit(':').next().unwrap().to_owned();
        let script = format!(
            r#"
import json, xmlrpc.client, odoorpc
common = xmlrpc.client.ServerProxy("http://127.0.0.1:{port}/xmlrpc/2/common")
uid = common.authenticate("steward", "admin", "steward-api-key", {{}})
models = xmlrpc.client.ServerProxy("http://127.0.0.1:{port}/xmlrpc/2/object")
by_xmlrpc = models.execute_kw("steward", uid, "steward-api-key", "account.move", "search_read",
    [[["ref", "like", "steward:"]]], {{"fields": ["ref", "state", "amount_untaxed"]}})
odoo = odoorpc.ODOO("127.0.0.1", port={port})
odoo.login("steward", "admin", "steward-api-key")
by_odoorpc = odoo.execute_kw("account.move", "search_read", [[["move_type", "=", "out_invoice"]]],
    {{"fields": ["ref", "state", "amount_untaxed"]}})
print(json.dumps({{"xmlrpc": sorted(by_xmlrpc, key=lambda r: r["id"]),
                   "odoorpc": sorted(by_odoorpc, key=lambda r: r["id"])}}))
"#
        );
        let out = Command::new("/usr/bin/python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python3-odoorpc is needed (scripts/services installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
        let by_xmlrpc = seen["xmlrpc"].as_array().unwrap();
        assert_eq!(by_xmlrpc.len(), 2, "{seen}");
        assert_eq!(seen["xmlrpc"], seen["odoorpc"]);
        let records = odoo.records("account.move").await;
        for (read, stored) in by_xmlrpc.iter().zip(&records) {
            assert_eq!(read["ref"], stored["ref"]);
            assert_eq!(read["amount_untaxed"], stored["amount_untaxed"]);
        }
    }
}

/// Transport trouble and database-layer faults are retried; refusals are not.
#[test]
fn odoo_errors_map_to_retry_or_give_up() {
    assert!(OdooError::Transport("refused".into()).is_transient());
    assert!(
        !OdooError::Server {
            model: "account.move".into(),
            method: "create".into(),
            name: "odoo.exceptions.AccessError".into(),
            message: "no".into()
        }
        .is_transient()
    );
    assert!(
        OdooError::Server {
            model: "account.move".into(),
            method: "create".into(),
            name: "psycopg2.OperationalError".into(),
            message: "server closed the connection unexpectedly (after commit)".into()
        }
        .is_transient()
    );
}

/// The late fact both correction tests use: vm-1 of p-a was deleted on October 15th.
async fn p_a_loses_vm_1_mid_month(store: &SqlStore) {
    correct_october(
        store,
        &[server(
            "vm-1",
            "p-a",
            FactKind::Deleted,
            "2026-10-15T10:00:00Z",
        )],
        at("2026-11-06T01:00:00Z"),
    )
    .await;
}

/// Per October row of the sink: what its preview says.
async fn previews(store: &SqlStore, sink: &OdooSink) -> String {
    let october = Period::month("2026-10").unwrap();
    let now = at("2026-11-05T01:00:00Z");
    let rows = crate::sinks::outbox::rows_for_period(store, &october, &["odoo"], now)
        .await
        .unwrap();
    let mut out = Vec::new();
    for row in rows {
        let document = crate::sinks::outbox::document(store, &row).await.unwrap();
        out.push(format!(
            "{} {}: {}",
            row.project_id.clone().unwrap_or_default(),
            row.kind,
            sink.preview(&document).await.unwrap()
        ));
    }
    out.join("\n")
}

#[tokio::test]
async fn the_dry_run_says_what_odoo_would_get() {
    let (store, _dir) = closed_october().await;
    let odoo = FakeOdoo::start(19).await;
    odoo.precise().await;
    let sink = sink(&odoo, Protocol::Auto, mapping());
    let before = previews(&store, &sink).await;
    push(&store, &sink).await;
    let after = previews(&store, &sink).await;
    let client = Client::connect(&odoo.settings(Protocol::Auto))
        .await
        .unwrap();
    client
        .call("account.move", "action_post", Some(&[1]), Map::new())
        .await
        .unwrap();
    // A late fact: vm-1 of p-a was deleted on the 15th.
    p_a_loses_vm_1_mid_month(&store).await;
    let corrected = previews(&store, &sink).await;
    insta::assert_snapshot!(
        "odoo_dry_run",
        format!(
            "before the first push:\n{before}\n\nafter it:\n{after}\n\nafter p-a was posted and corrected:\n{corrected}"
        )
    );
}
