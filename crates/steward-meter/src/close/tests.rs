//! Period close and corrections on a real SQLite store: when a period may close, what the
//! statement says, immutability, and one correction per late change.

use proptest::prelude::*;
use serde_json::json;

use super::correction::{CheckOutcome, check_period};
use super::task::{PeriodStanding, close_due, standings};
use super::{CloseError, CloseOptions, CloseOutcome, close_period, closed_view};
use crate::config::CloseConfig;
use crate::facts::{Fact, FactKind, Origin, ResourceType};
use crate::record::Source;
use crate::report::{PeriodState, Report, ReportRequest, Resolution, build_report};
use crate::store::{ReconcileRun, SqlStore, Store};
use crate::test_support::{add, at, fact, store_with};
use crate::time::Instant;
use crate::usage::catalogue::default_catalogue;
use crate::usage::period::Period;

const DAY: u64 = 86_400;

fn october() -> Period {
    Period::month("2026-10").unwrap()
}

fn server(id: &str, project: &str, kind: FactKind, time: &str) -> Fact {
    fact(
        ResourceType::Instance,
        id,
        project,
        kind,
        time,
        json!({"flavor_name": "SCS-2V-4", "vcpus": 2}),
    )
}

fn october_facts() -> Vec<Fact> {
    vec![
        server("vm-1", "p-a", FactKind::Created, "2026-10-01T10:00:00Z"),
        server("vm-1", "p-a", FactKind::Deleted, "2026-10-03T10:00:00Z"),
        server("vm-2", "p-b", FactKind::Created, "2026-10-20T00:00:00Z"),
    ]
}

fn clean_run(started: &str) -> ReconcileRun {
    ReconcileRun {
        started_at: at(started),
        finished_at: Instant(at(started).micros() + 2_000_000),
        listed: vec!["instance".to_owned(), "volume".to_owned()],
        resources_seen: 3,
        facts_written: 0,
        estimated: 0,
        problems: None,
    }
}

fn options(now: &str) -> CloseOptions {
    CloseOptions {
        now: at(now),
        grace_secs: DAY,
        without_reconcile: false,
    }
}

async fn close(store: &SqlStore, now: &str) -> Result<CloseOutcome, CloseError> {
    close_period(store, &october(), &default_catalogue(), &options(now)).await
}

fn totals(report: &Report) -> Vec<(String, String)> {
    report
        .totals
        .iter()
        .map(|t| (t.product.clone(), t.quantity_exact.clone()))
        .collect()
}

async fn live(store: &SqlStore, now: &str) -> Report {
    let request = ReportRequest {
        period: october(),
        as_of: at(now),
        project: None,
        detail: false,
    };
    build_report(store, &request, &default_catalogue())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_period_closes_only_after_its_grace_and_a_clean_reconciliation_after_it() {
    let (store, _dir) = store_with(&october_facts()).await;
    // Inside the grace.
    let early = close(&store, "2026-11-01T12:00:00Z").await;
    assert!(
        matches!(&early, Err(CloseError::TooEarly { from, .. }) if *from == at("2026-11-02T00:00:00Z")),
        "{early:?}"
    );
    // Past the grace, but the only runs started before it ended, or had problems.
    store
        .record_reconcile_run(&clean_run("2026-11-01T23:00:00Z"))
        .await
        .unwrap();
    let mut failed = clean_run("2026-11-02T01:00:00Z");
    failed.problems = Some("listing volumes: 503".to_owned());
    store.record_reconcile_run(&failed).await.unwrap();
    let waiting = close(&store, "2026-11-02T02:00:00Z").await;
    assert!(
        matches!(&waiting, Err(CloseError::AwaitingReconcile { .. })),
        "{waiting:?}"
    );
    assert!(store.closed_periods().await.unwrap().is_empty());
    // A clean run after the grace: it closes, as `closed`, over the whole month.
    store
        .record_reconcile_run(&clean_run("2026-11-02T03:00:00Z"))
        .await
        .unwrap();
    let closed = close(&store, "2026-11-02T04:00:00Z").await.unwrap();
    let CloseOutcome::Closed(report) = &closed else {
        panic!("{closed:?}")
    };
    assert_eq!(report.period_state, PeriodState::Closed);
    assert_eq!(report.billed_until, october().end);
    let statement = report.completeness.as_ref().unwrap();
    assert!(statement.complete, "{}", statement.summary);
    assert_eq!(
        statement.reconciliation.as_ref().unwrap().started_at,
        at("2026-11-02T03:00:00Z")
    );
    assert_eq!(statement.facts_by_origin["notification"], 3);
    assert_eq!(statement.sources[0].source, "amqp");
    // The closed report bills what a live report bills.
    assert_eq!(
        totals(report),
        totals(&live(&store, "2026-11-02T04:00:00Z").await)
    );
    // Without a reconciliation, only when asked, and then it says so.
    let (other, _dir2) = store_with(&october_facts()).await;
    let mut opts = options("2026-11-05T00:00:00Z");
    opts.without_reconcile = true;
    let closed = close_period(other.as_ref(), &october(), &default_catalogue(), &opts)
        .await
        .unwrap();
    let statement = closed.report().completeness.clone().unwrap();
    assert!(!statement.complete);
    assert!(statement.reconciliation.is_none());
    assert!(
        statement.summary.contains("without a reconciliation"),
        "{}",
        statement.summary
    );
}

#[tokio::test]
async fn closing_twice_changes_nothing_and_returns_the_stored_report_byte_for_byte() {
    let (store, _dir) = store_with(&october_facts()).await;
    store
        .record_reconcile_run(&clean_run("2026-11-03T00:00:00Z"))
        .await
        .unwrap();
    let first = close(&store, "2026-11-03T01:00:00Z").await.unwrap();
    assert!(matches!(first, CloseOutcome::Closed(_)));
    // Later, with more facts in the store: still the same closed report.
    add(
        &store,
        &[server(
            "vm-3",
            "p-a",
            FactKind::Created,
            "2026-10-30T00:00:00Z",
        )],
        at("2026-11-04T00:00:00Z"),
    )
    .await;
    let second = close(&store, "2026-11-05T00:00:00Z").await.unwrap();
    let CloseOutcome::AlreadyClosed(again) = &second else {
        panic!("{second:?}")
    };
    assert_eq!(again.json(), first.report().json());
    let periods = store.closed_periods().await.unwrap();
    assert_eq!(periods.len(), 1);
    assert_eq!(periods[0].digest, first.report().content_digest);
    // The stored digest is the digest of the stored content.
    let mut resealed = (**again).clone();
    resealed.seal();
    assert_eq!(resealed.content_digest, again.content_digest);
    // `report` shows the closed one, also per project.
    let view = closed_view(store.as_ref(), &october(), Some("p-b"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.projects.len(), 1);
    assert_eq!(
        view.totals[0].quantity_exact,
        view.projects[0].lines[0].quantity_exact
    );
}

#[tokio::test]
async fn a_late_fact_makes_exactly_one_correction_with_only_the_delta() {
    let (store, _dir) = store_with(&october_facts()).await;
    store
        .record_reconcile_run(&clean_run("2026-11-03T00:00:00Z"))
        .await
        .unwrap();
    let closed_report = close(&store, "2026-11-03T01:00:00Z")
        .await
        .unwrap()
        .report()
        .clone();
    let closed = store
        .closed_period(october().start, october().end)
        .await
        .unwrap()
        .unwrap();
    // Nothing new: nothing recomputed, nothing stored.
    let now = at("2026-11-10T00:00:00Z");
    assert_eq!(
        check_period(store.as_ref(), &closed, now).await.unwrap(),
        CheckOutcome::NothingNew
    );
    // A fact after the period's end cannot change it.
    add(
        &store,
        &[server(
            "vm-9",
            "p-a",
            FactKind::Created,
            "2026-11-05T00:00:00Z",
        )],
        now,
    )
    .await;
    assert_eq!(
        check_period(store.as_ref(), &closed, now).await.unwrap(),
        CheckOutcome::NothingNew
    );
    // The deletion of vm-2 arrives late: 2026-10-31T00:00Z instead of running to the end.
    add(
        &store,
        &[server(
            "vm-2",
            "p-b",
            FactKind::Deleted,
            "2026-10-31T00:00:00Z",
        )],
        now,
    )
    .await;
    let CheckOutcome::Corrected(first) = check_period(store.as_ref(), &closed, now).await.unwrap()
    else {
        panic!("no correction")
    };
    assert_eq!(first.sequence, 1);
    assert_eq!(first.corrects, closed_report.content_digest);
    assert_eq!(first.previous, None);
    assert_eq!(first.projects.len(), 1, "only p-b changed: {first:?}");
    let line = &first.projects[0].lines[0];
    assert_eq!(first.projects[0].project_id.as_deref(), Some("p-b"));
    // One day less of the flavor, exactly: 12 days became 11.
    assert_eq!(line.product, "instance:SCS-2V-4");
    assert_eq!(line.quantity, "-24.000000");
    assert_eq!(line.quantity_exact, "-24/1");
    assert_eq!(line.before_exact, "288/1");
    assert_eq!(line.after_exact, "264/1");
    assert_eq!(
        first.totals.len(),
        first.projects[0].lines.len(),
        "{first:?}"
    );
    // Checking again stores nothing: the fact is corrected once.
    let closed = store
        .closed_period(october().start, october().end)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        check_period(store.as_ref(), &closed, now).await.unwrap(),
        CheckOutcome::NothingNew
    );
    assert_eq!(store.corrections(closed.id).await.unwrap().len(), 1);
    // A second late fact: correction 2, chained to the first, carrying only its own delta.
    add(
        &store,
        &[server(
            "vm-4",
            "p-a",
            FactKind::Created,
            "2026-10-31T12:00:00Z",
        )],
        now,
    )
    .await;
    let CheckOutcome::Corrected(second) = check_period(store.as_ref(), &closed, now).await.unwrap()
    else {
        panic!("no second correction")
    };
    assert_eq!(second.sequence, 2);
    assert_eq!(
        second.previous.as_deref(),
        Some(first.content_digest.as_str())
    );
    assert_eq!(second.projects.len(), 1);
    assert_eq!(second.projects[0].project_id.as_deref(), Some("p-a"));
    // The closed report is untouched.
    let view = closed_view(store.as_ref(), &october(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.json(), closed_report.json());
}

#[tokio::test]
async fn the_statement_says_how_each_gap_was_resolved() {
    let mut facts = october_facts();
    // vm-1's deletion was lost in the first gap; the reconciler could only bound it.
    facts.retain(|f| !(f.resource_id == "vm-1" && f.kind == FactKind::Deleted));
    let mut estimate = server("vm-1", "p-a", FactKind::Deleted, "2026-10-03T09:00:00Z");
    estimate.origin = Origin::Estimated;
    estimate.attributes.insert(
        "estimate_not_before".to_owned(),
        json!("2026-10-03T09:00:00.000000Z"),
    );
    estimate.attributes.insert(
        "estimate_not_after".to_owned(),
        json!("2026-10-03T11:00:00.000000Z"),
    );
    facts.push(estimate);
    let (store, _dir) = store_with(&facts).await;
    let gap = |s: &str, e: &str| (at(s), at(e));
    for (start, end) in [
        gap("2026-10-03T09:30:00Z", "2026-10-03T10:30:00Z"),
        gap("2026-10-10T00:00:00Z", "2026-10-10T00:05:00Z"),
    ] {
        store
            .record_gap(Source::Amqp, start, end, "broker restarted")
            .await
            .unwrap();
    }
    store
        .record_reconcile_run(&clean_run("2026-10-10T01:00:00Z"))
        .await
        .unwrap();
    // A third gap after the last reconciliation that runs into the grace … and a run after
    // the grace that has problems: the third gap stays unresolved.
    store
        .record_gap(
            Source::Http,
            at("2026-10-31T23:00:00Z"),
            at("2026-11-01T01:00:00Z"),
            "no replica listening",
        )
        .await
        .unwrap();
    let mut opts = options("2026-11-03T00:00:00Z");
    opts.without_reconcile = true;
    let closed = close_period(store.as_ref(), &october(), &default_catalogue(), &opts)
        .await
        .unwrap();
    let statement = closed.report().completeness.clone().unwrap();
    let resolutions: Vec<Resolution> = statement.gaps.iter().map(|g| g.resolution).collect();
    assert_eq!(
        resolutions,
        vec![
            Resolution::Estimated,
            Resolution::Reconciled,
            Resolution::Unresolved
        ]
    );
    assert_eq!(statement.gaps[0].estimates.len(), 1);
    assert_eq!(
        statement.gaps[0].estimates[0].not_after,
        at("2026-10-03T11:00:00Z")
    );
    assert_eq!(
        statement.gaps[1].resolved_by_reconcile_at,
        Some(at("2026-10-10T01:00:00Z"))
    );
    assert_eq!(statement.estimates.len(), 1);
    assert_eq!(statement.facts_by_origin["estimated"], 1);
    assert!(!statement.complete);
    assert!(
        statement.summary.contains("1 unresolved"),
        "{}",
        statement.summary
    );
    // The closed report, statement included, is what the published schema describes.
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/report-schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&closed.report().value())
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[tokio::test]
async fn serve_closes_every_due_month_once_and_states_the_others() {
    let mut facts = october_facts();
    facts.push(server(
        "vm-0",
        "p-a",
        FactKind::Created,
        "2026-09-20T00:00:00Z",
    ));
    // Heard from since September 20 (facts replayed from before would not make older months
    // close by themselves).
    let (store, _dir) = store_with(&[]).await;
    add(&store, &facts, at("2026-09-20T00:00:00Z")).await;
    let config = CloseConfig::default();
    let now = at("2026-11-01T12:00:00Z");
    // September is due but awaits a reconciliation; October is in its grace.
    let pass = close_due(store.as_ref(), &config, &default_catalogue(), now)
        .await
        .unwrap();
    assert_eq!(pass.closed, Vec::<String>::new());
    assert_eq!(pass.awaiting, vec!["2026-09".to_owned()]);
    let states = standings(store.as_ref(), &config, now, 10).await.unwrap();
    assert_eq!(states[0].0, "2026-11");
    assert_eq!(states[0].1, PeriodStanding::Open);
    assert!(matches!(states[1].1, PeriodStanding::InGrace { .. }));
    assert!(matches!(
        states[2].1,
        PeriodStanding::AwaitingReconcile { .. }
    ));
    assert_eq!(states.len(), 3, "nothing before the store's first fact");
    store
        .record_reconcile_run(&clean_run("2026-11-02T06:00:00Z"))
        .await
        .unwrap();
    let later = at("2026-11-02T07:00:00Z");
    let pass = close_due(store.as_ref(), &config, &default_catalogue(), later)
        .await
        .unwrap();
    assert_eq!(
        pass.closed,
        vec!["2026-09".to_owned(), "2026-10".to_owned()]
    );
    let again = close_due(store.as_ref(), &config, &default_catalogue(), later)
        .await
        .unwrap();
    assert!(again.closed.is_empty() && again.awaiting.is_empty());
    assert_eq!(pass.newest_closed_end, Some(at("2026-11-01T00:00:00Z")));
    assert_eq!(again.newest_closed_end, pass.newest_closed_end);
    assert_eq!(store.closed_periods().await.unwrap().len(), 2);
}

fn late_fact() -> impl Strategy<Value = (u8, u8, i64)> {
    // (server, kind: 0 created / 1 deleted / 2 stopped, hour of October)
    (0u8..4, 0u8..3, 0i64..(31 * 24))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Whatever arrives after the close, in whatever batches and however often the check
    /// runs: the closed report plus its corrections equals the period recomputed now, and
    /// a check that finds nothing new writes nothing.
    #[test]
    fn closed_plus_corrections_equals_the_recomputed_period(
        batches in proptest::collection::vec(proptest::collection::vec(late_fact(), 0..4), 1..4),
        checks_per_batch in 1usize..3,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (store, _dir) = store_with(&october_facts()).await;
            store.record_reconcile_run(&clean_run("2026-11-03T00:00:00Z")).await.unwrap();
            let closed = close(&store, "2026-11-03T01:00:00Z").await.unwrap().report().clone();
            let mut sums: std::collections::BTreeMap<String, crate::usage::engine::Quantity> =
                closed.totals.iter().map(|t| (t.product.clone(),
                    crate::usage::engine::Quantity::parse_exact(&t.quantity_exact).unwrap())).collect();
            let mut corrections = 0;
            for (b, batch) in batches.iter().enumerate() {
                let facts: Vec<Fact> = batch.iter().map(|(s, k, hour)| {
                    let kind = [FactKind::Created, FactKind::Deleted, FactKind::Stopped][*k as usize];
                    let mut f = server(&format!("vm-{s}"), "p-a", kind, "2026-10-01T00:00:00Z");
                    f.effective_at = Instant(october().start.micros() + hour * 3_600_000_000);
                    f
                }).collect();
                add(&store, &facts, Instant(at("2026-11-04T00:00:00Z").micros() + b as i64)).await;
                for _ in 0..checks_per_batch {
                    let row = store.closed_period(october().start, october().end).await.unwrap().unwrap();
                    if let CheckOutcome::Corrected(c) = check_period(store.as_ref(), &row, at("2026-11-05T00:00:00Z")).await.unwrap() {
                        corrections += 1;
                        for t in &c.totals {
                            sums.entry(t.product.clone()).or_default()
                                .add(crate::usage::engine::Quantity::parse_exact(&t.quantity_exact).unwrap());
                        }
                    }
                }
            }
            let now = live(&store, "2026-11-05T00:00:00Z").await;
            let expected: std::collections::BTreeMap<String, String> =
                now.totals.iter().map(|t| (t.product.clone(), t.quantity_exact.clone())).collect();
            let got: std::collections::BTreeMap<String, String> = sums.iter()
                .filter(|(_, q)| !q.is_zero())
                .map(|(p, q)| (p.clone(), q.exact())).collect();
            prop_assert_eq!(got, expected);
            let stored = store.corrections(1).await.unwrap().len();
            prop_assert_eq!(stored, corrections);
            prop_assert!(corrections <= batches.len());
            Ok(())
        })?;
    }
}
