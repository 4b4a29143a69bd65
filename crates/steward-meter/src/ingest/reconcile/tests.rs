//! The pure parts of the reconciler: facts from real nova records, bounds, idempotence.

use std::path::PathBuf;

use serde_json::Value;
use steward_cloud::inventory::{InstanceAction, Server, parse_items, parse_list};

use super::known::Known;
use super::listed::narrow_to_gaps;
use super::servers::{server_facts, why_look};
use super::{estimate_attributes, is_new};
use crate::facts::{FactKind, Origin};
use crate::time::{Instant, parse_timestamp};
use crate::usage::timeline::{Presence, Status};

fn api(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/real/api")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn t(text: &str) -> Instant {
    parse_timestamp(text).unwrap().unwrap()
}

fn deleted_servers() -> Vec<Server> {
    parse_list(&api("nova_detail_changes_since.json"), "servers").unwrap()
}

fn actions_of(id: &str) -> Vec<InstanceAction> {
    let all = api("nova_instance_actions_deleted.json");
    let items: Vec<Value> = all[id]["detail"]
        .as_object()
        .unwrap()
        .values()
        .map(|a| a["instanceAction"].clone())
        .collect();
    parse_items(&items, "instanceAction").unwrap()
}

fn server(name: &str) -> Server {
    deleted_servers()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
}

fn kinds_and_times(server: &Server) -> Vec<(FactKind, String, Origin)> {
    server_facts(server, &actions_of(&server.id))
        .into_iter()
        .map(|p| (p.fact.kind, p.fact.effective_at.to_rfc3339(), p.fact.origin))
        .collect()
}

#[test]
fn a_resized_stopped_and_started_server_is_dated_by_its_actions() {
    let alpha = server("alpha-1");
    use FactKind as K;
    use Origin::Reconciled as R;
    assert_eq!(
        kinds_and_times(&alpha),
        vec![
            // launched_at was reset by the resize: the creation is the build's finish.
            (K::Created, "2026-12-02T03:29:23.000000Z".to_owned(), R),
            (K::Resized, "2026-12-02T03:29:37.000000Z".to_owned(), R),
            (K::Stopped, "2026-12-02T03:29:41.000000Z".to_owned(), R),
            (K::Started, "2026-12-02T03:29:42.000000Z".to_owned(), R),
            (K::Deleted, "2026-12-02T03:29:47.000000Z".to_owned(), R),
        ]
    );
    let facts = server_facts(&alpha, &actions_of(&alpha.id));
    // Created before a flavor change carries no flavor; the last change carries the current one.
    assert!(!facts[0].fact.attributes.contains_key("flavor_name"));
    assert_eq!(facts[1].fact.attributes["flavor_name"], "rs.medium");
    assert_eq!(facts[1].fact.attributes["vcpus"], 2);
    assert_eq!(
        facts[0].fact.project_id.as_deref(),
        Some("12ed93a2fb2b4e4aa40415b3b0140d03")
    );
}

#[test]
fn a_server_never_resized_is_created_at_launched_at_with_its_flavor() {
    let beta = server("beta-1");
    let facts = server_facts(&beta, &actions_of(&beta.id));
    assert_eq!(facts.len(), 2);
    assert_eq!(facts[0].fact.effective_at, t("2026-12-02T03:29:24Z"));
    assert_eq!(facts[0].fact.attributes["flavor_name"], "rs.small");
    assert_eq!(facts[1].fact.kind, FactKind::Deleted);
    assert_eq!(facts[1].fact.effective_at, t("2026-12-02T03:29:50Z"));
}

#[test]
fn an_offload_no_action_dates_is_estimated_between_the_shelve_and_the_delete() {
    let alpha2 = server("alpha-2");
    let facts = server_facts(&alpha2, &actions_of(&alpha2.id));
    let offload = facts
        .iter()
        .find(|p| p.fact.kind == FactKind::ShelvedOffloaded)
        .expect("an offload");
    assert_eq!(offload.fact.origin, Origin::Estimated);
    assert_eq!(offload.fact.effective_at, t("2026-12-02T03:29:45Z"));
    assert_eq!(
        offload.fact.attributes["estimate_not_after"],
        "2026-12-02T03:29:46.000000Z"
    );
    assert_eq!(
        facts.last().unwrap().fact.effective_at,
        t("2026-12-02T03:29:49Z")
    );
}

#[test]
fn failed_and_unfinished_actions_state_nothing() {
    let mut alpha = server("alpha-1");
    let mut actions = actions_of(&alpha.id);
    for a in &mut actions {
        if a.action == "stop" {
            a.events[0].result = Some("Error".to_owned());
        }
        if a.action == "start" {
            a.events[0].finish_time = None;
        }
    }
    let kinds: Vec<FactKind> = server_facts(&alpha, &actions)
        .into_iter()
        .map(|p| p.fact.kind)
        .collect();
    assert!(!kinds.contains(&FactKind::Stopped) && !kinds.contains(&FactKind::Started));
    // A server that never launched (a failed build) states nothing at all.
    alpha.launched_at = None;
    assert!(server_facts(&alpha, &actions).is_empty());
}

fn known(presence: Presence, status: Status, flavor: &str) -> Known {
    Known {
        presence,
        status,
        flavor_name: Some(flavor.into()),
        size_gb: None,
        volume_type: None,
        last_fact_at: None,
        facts: vec![(FactKind::Created, 0)],
    }
}

#[test]
fn actions_are_read_only_where_the_store_disagrees_or_nova_changed_the_server() {
    let mut live = server("beta-1");
    live.status = "ACTIVE".to_owned();
    live.vm_state = Some("active".to_owned());
    let agreeing = known(Presence::Present, Status::Running, "rs.small");
    assert_eq!(why_look(&live, Some(&agreeing), None), None);
    assert!(
        why_look(&live, None, None)
            .unwrap()
            .contains("not in the store")
    );
    let stopped = known(Presence::Present, Status::Stopped, "rs.small");
    assert!(
        why_look(&live, Some(&stopped), None)
            .unwrap()
            .contains("stopped")
    );
    let other_flavor = known(Presence::Present, Status::Running, "rs.medium");
    assert!(
        why_look(&live, Some(&other_flavor), None)
            .unwrap()
            .contains("flavor")
    );
    // Agreeing, but nova changed it since the last listing; not before it.
    let last_listing = super::instant(live.updated);
    assert!(
        why_look(&live, Some(&agreeing), Some(last_listing))
            .unwrap()
            .contains("changed")
    );
    let later = crate::time::Instant(last_listing.micros() + 1);
    assert_eq!(why_look(&live, Some(&agreeing), Some(later)), None);
    // A store that lacks the creation reads the actions.
    let mut uncreated = agreeing.clone();
    uncreated.facts.clear();
    assert!(
        why_look(&live, Some(&uncreated), None)
            .unwrap()
            .contains("creation")
    );
    // Deleted in nova, absent in the store: nothing to read.
    let gone = server("beta-1");
    let absent = known(Presence::Absent, Status::Running, "rs.small");
    assert_eq!(why_look(&gone, Some(&absent), None), None);
    assert!(
        why_look(&gone, Some(&agreeing), None)
            .unwrap()
            .contains("deleted")
    );
}

#[test]
fn gaps_narrow_the_window_of_an_estimate() {
    let (lo, hi) = (Instant(100), Instant(1_000));
    assert_eq!(narrow_to_gaps(lo, hi, &[]), (lo, hi));
    assert_eq!(
        narrow_to_gaps(lo, hi, &[(Instant(0), Instant(50))]),
        (lo, hi),
        "a gap outside the window says nothing"
    );
    assert_eq!(
        narrow_to_gaps(
            lo,
            hi,
            &[(Instant(300), Instant(400)), (Instant(900), Instant(5_000))]
        ),
        (Instant(300), Instant(1_000))
    );
}

#[test]
fn a_fact_the_store_holds_within_seconds_is_not_new() {
    let alpha = server("alpha-1");
    let facts = server_facts(&alpha, &actions_of(&alpha.id));
    let stop = &facts[2].fact;
    let mut store = known(Presence::Absent, Status::Running, "rs.medium");
    assert!(is_new(stop, Some(&store)));
    store
        .facts
        .push((FactKind::Stopped, stop.effective_at.micros() + 1_500_000));
    assert!(
        !is_new(stop, Some(&store)),
        "the notification's envelope time"
    );
    // A creation is new only where the store has none at all.
    let created = &facts[0].fact;
    store
        .facts
        .push((FactKind::Created, created.effective_at.micros() + 9_000_000));
    assert!(!is_new(created, Some(&store)));
    // An estimate is not new where a fact of its kind lies within its bounds.
    let mut estimate = stop.clone();
    estimate.origin = Origin::Estimated;
    estimate.attributes = estimate_attributes(
        Instant(stop.effective_at.micros() - 60_000_000),
        Instant(stop.effective_at.micros() + 60_000_000),
    );
    estimate.effective_at = Instant(stop.effective_at.micros() - 60_000_000);
    assert!(!is_new(&estimate, Some(&store)));
}

#[test]
fn a_gap_is_resolved_by_the_first_clean_run_after_it_ended() {
    use crate::record::{Gap, Source};
    use crate::store::ReconcileRun;
    let run = |started: i64, problems: Option<&str>| ReconcileRun {
        started_at: Instant(started),
        finished_at: Instant(started + 5),
        listed: vec!["instance".to_owned()],
        resources_seen: 1,
        facts_written: 0,
        estimated: 0,
        problems: problems.map(str::to_owned),
    };
    let mut gap = Gap {
        id: 1,
        source: Source::Amqp,
        started_at: Instant(100),
        ended_at: Some(Instant(200)),
        cause: "broker restart".to_owned(),
    };
    let runs = [
        run(400, None),
        run(300, Some("listing volumes: 503")),
        run(150, None),
    ];
    assert_eq!(super::gap_resolved_at(&gap, &runs), Some(Instant(400)));
    assert_eq!(super::gap_resolved_at(&gap, &runs[1..]), None);
    gap.ended_at = None;
    assert_eq!(super::gap_resolved_at(&gap, &runs), None, "still open");
}
