//! Helpers shared by the unit tests of the report, close and correction modules: facts built
//! in one line and a real SQLite store in a temporary folder.

use std::sync::Arc;

use serde_json::Value;

use crate::facts::{Fact, FactKind, Origin, ResourceType, TimeSource};
use crate::record::{Accepted, Batch, RawRecord, RecordKind, Source};
use crate::store::{SqlStore, Store};
use crate::time::{Instant, parse_timestamp};

/// An RFC 3339 time.
pub(crate) fn at(s: &str) -> Instant {
    parse_timestamp(s).unwrap().unwrap()
}

/// A notification fact of `project`.
pub(crate) fn fact(
    rt: ResourceType,
    id: &str,
    project: &str,
    kind: FactKind,
    time: &str,
    attrs: Value,
) -> Fact {
    Fact {
        resource_type: rt,
        resource_id: id.to_owned(),
        project_id: Some(project.to_owned()),
        user_id: None,
        kind,
        effective_at: at(time),
        time_source: TimeSource::Payload,
        origin: Origin::Notification,
        event_type: "test".to_owned(),
        attributes: attrs.as_object().unwrap().clone().into_iter().collect(),
    }
}

/// A SQLite store in a temporary folder holding `facts`.
pub(crate) async fn store_with(facts: &[Fact]) -> (Arc<SqlStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open(&format!("sqlite://{}/s.db", dir.path().display()))
        .await
        .unwrap();
    add(&store, facts, Instant(0)).await;
    (Arc::new(store), dir)
}

/// Commits `facts`, each in its own record received at `received_at`.
pub(crate) async fn add(store: &SqlStore, facts: &[Fact], received_at: Instant) {
    let accepted = facts
        .iter()
        .enumerate()
        .map(|(i, f)| Accepted {
            record: RawRecord {
                dedup_key: format!("msg:{}", f.semantic_key()),
                source: Source::Amqp,
                kind: RecordKind::Notification,
                message_id: Some(i.to_string()),
                exchange: None,
                routing_key: None,
                envelope_version: None,
                publisher_id: None,
                event_type: None,
                priority: None,
                emitted_at: None,
                received_at,
                body: "{}".to_owned(),
                scrubbed: None,
            },
            facts: vec![f.clone()],
        })
        .collect();
    store
        .commit(&[Batch {
            accepted,
            quarantined: vec![],
        }])
        .await
        .unwrap();
}

/// The [`Store`](crate::store::Store) methods a test store does not exercise (reconciler runs,
/// volume types, closed periods, corrections, the outbox), each answering with `$fail()`.
macro_rules! store_methods_failing_with {
    ($fail:ident) => {
        fn record_reconcile_run<'a>(
            &'a self,
            _: &'a crate::store::ReconcileRun,
        ) -> StoreFuture<'a, ()> {
            $fail()
        }
        fn reconcile_runs(&self, _: u32) -> StoreFuture<'_, Vec<crate::store::ReconcileRun>> {
            $fail()
        }
        fn record_volume_types<'a>(
            &'a self,
            _: &'a [(String, String)],
            _: Instant,
        ) -> StoreFuture<'a, ()> {
            $fail()
        }
        fn volume_type_names(&self) -> StoreFuture<'_, std::collections::BTreeMap<String, String>> {
            $fail()
        }
        fn insert_closed_period<'a>(
            &'a self,
            _: &'a crate::store::ClosedPeriod,
        ) -> StoreFuture<'a, bool> {
            $fail()
        }
        fn closed_period(
            &self,
            _: Instant,
            _: Instant,
        ) -> StoreFuture<'_, Option<crate::store::ClosedPeriod>> {
            $fail()
        }
        fn closed_periods(&self) -> StoreFuture<'_, Vec<crate::store::PeriodSummary>> {
            $fail()
        }
        fn insert_correction<'a>(
            &'a self,
            _: i64,
            _: &'a crate::store::StoredCorrection,
            _: i64,
        ) -> StoreFuture<'a, bool> {
            $fail()
        }
        fn corrections(&self, _: i64) -> StoreFuture<'_, Vec<crate::store::StoredCorrection>> {
            $fail()
        }
        fn fact_count_before(&self, _: Instant) -> StoreFuture<'_, i64> {
            $fail()
        }
        fn plan_deliveries<'a>(
            &'a self,
            _: &'a [crate::store::Delivery],
            _: Instant,
        ) -> StoreFuture<'a, u64> {
            $fail()
        }
        fn deliveries<'a>(
            &'a self,
            _: Option<&'a str>,
            _: Instant,
            _: Instant,
        ) -> StoreFuture<'a, Vec<crate::store::Delivery>> {
            $fail()
        }
        fn due_deliveries<'a>(
            &'a self,
            _: &'a str,
            _: Instant,
            _: u32,
        ) -> StoreFuture<'a, Vec<crate::store::Delivery>> {
            $fail()
        }
        fn outbox_summary(&self) -> StoreFuture<'_, Vec<(String, String, i64)>> {
            $fail()
        }
        fn update_delivery<'a>(
            &'a self,
            _: i64,
            _: &'a crate::store::DeliveryUpdate,
            _: Instant,
        ) -> StoreFuture<'a, ()> {
            $fail()
        }
        fn mark_period_checked(&self, _: i64, _: i64) -> StoreFuture<'_, ()> {
            $fail()
        }
        fn events_after(
            &self,
            _: crate::store::ForwardPosition,
            _: u32,
        ) -> StoreFuture<'_, Vec<crate::store::StoredEvent>> {
            $fail()
        }
        fn events_behind(&self, _: crate::store::ForwardPosition) -> StoreFuture<'_, i64> {
            $fail()
        }
        fn forward_cursors(&self) -> StoreFuture<'_, Vec<crate::store::ForwardCursor>> {
            $fail()
        }
        fn advance_forward_cursor<'a>(
            &'a self,
            _: &'a str,
            _: crate::store::ForwardPosition,
            _: u64,
            _: Instant,
        ) -> StoreFuture<'a, ()> {
            $fail()
        }
    };
}
pub(crate) use store_methods_failing_with;

/// A server fact (flavor SCS-2V-4) of `project`.
pub(crate) fn server(id: &str, project: &str, kind: FactKind, time: &str) -> Fact {
    fact(
        ResourceType::Instance,
        id,
        project,
        kind,
        time,
        serde_json::json!({"flavor_name": "SCS-2V-4", "vcpus": 2}),
    )
}

/// A store with October 2026 closed: server vm-1 of project p-a from the 1st, vm-2 of p-b from
/// the 20th (the sinks' tests deliver it).
pub(crate) async fn closed_october() -> (Arc<SqlStore>, tempfile::TempDir) {
    let (store, dir) = store_with(&[
        server("vm-1", "p-a", FactKind::Created, "2026-10-01T10:00:00Z"),
        server("vm-2", "p-b", FactKind::Created, "2026-10-20T00:00:00Z"),
    ])
    .await;
    crate::close::close_period(
        store.as_ref(),
        &crate::usage::period::Period::month("2026-10").unwrap(),
        &crate::usage::catalogue::default_catalogue(),
        &crate::close::CloseOptions {
            now: at("2026-11-05T00:00:00Z"),
            grace_secs: 86_400,
            without_reconcile: true,
        },
    )
    .await
    .unwrap();
    (store, dir)
}

/// Adds `late` facts to October (received at `now`) and checks the closed month, so that a
/// correction is stored when its usage changed.
pub(crate) async fn correct_october(store: &SqlStore, late: &[Fact], now: Instant) {
    add(store, late, now).await;
    let october = crate::usage::period::Period::month("2026-10").unwrap();
    let closed = store
        .closed_period(october.start, october.end)
        .await
        .unwrap()
        .unwrap();
    crate::close::correction::check_period(store, &closed, now)
        .await
        .unwrap();
}
