//! The store behaviour suite, run against both backends by `store_suite!`.
//!
//! PostgreSQL: `STEWARD_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! names a server where each test creates and drops its own database. A missing server fails
//! the tests loudly; `STEWARD_TEST_SKIP_POSTGRES=1` leaves the PostgreSQL group out on purpose.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection as _;

use super::{SqlStore, Store};
use crate::facts::{Fact, FactKind, Origin, ResourceType, TimeSource};
use crate::record::{Accepted, Batch, Quarantined, RawRecord, RecordKind, Source};
use crate::time::Instant;

/// A store for one test, removed afterwards.
struct TestStore {
    store: SqlStore,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Database { admin_url: String, name: String },
}

impl TestStore {
    async fn finish(self) {
        self.store.pool().close().await;
        if let Cleanup::Database { admin_url, name } = self.cleanup {
            let mut admin = sqlx::AnyConnection::connect(&admin_url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await
            .unwrap();
        }
    }
}

async fn sqlite_store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/store.db", dir.path().display());
    TestStore {
        store: SqlStore::open(&url).await.unwrap(),
        cleanup: Cleanup::Dir(dir),
    }
}

async fn postgres_store() -> Option<TestStore> {
    if std::env::var("STEWARD_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
        return None;
    }
    sqlx::any::install_default_drivers();
    let admin_url = std::env::var("STEWARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "steward_t_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        Instant::now().micros() % 1_000_000
    );
    let mut admin = sqlx::AnyConnection::connect(&admin_url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is needed for the store suite at {admin_url}: {e}. Start it (scripts/test \
             does) or set STEWARD_TEST_SKIP_POSTGRES=1 to leave this group out."
        )
    });
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("STEWARD_TEST_POSTGRES_URL must end in /DATABASE"),
    };
    Some(TestStore {
        store: SqlStore::open(&url).await.unwrap(),
        cleanup: Cleanup::Database { admin_url, name },
    })
}

macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let t = super::sqlite_store().await;
                    super::$name(&t.store).await;
                    t.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(t) = super::postgres_store().await else { return };
                    super::$name(&t.store).await;
                    t.finish().await;
                }
            )*
        }
    };
}

store_suite!(
    replaying_a_batch_is_a_no_op,
    same_fact_under_different_ids_is_one_fact,
    the_kept_copy_does_not_depend_on_arrival,
    resources_come_with_all_their_facts,
    batches_in_one_commit_get_their_own_outcomes,
    large_batches_are_split_into_statements,
    quarantine_keeps_bad_input_once,
    gaps_open_close_and_close_stale,
    heartbeats_round_trip,
    status_counts_per_source,
    arrival_order_does_not_change_the_result,
    fields_round_trip_exactly,
    nul_in_any_text_is_quarantined_and_batch_mates_are_stored,
    overlong_identifiers_are_quarantined,
    a_database_refusal_quarantines_the_input_and_commits_the_rest,
    credentials_never_reach_the_store,
    coverage_spans_records_quarantine_and_facts,
    reconcile_runs_round_trip_newest_first,
    volume_type_names_are_replaced_on_rename,
    a_period_closes_once_and_each_correction_is_stored_once,
    outbox_rows_are_planned_once_and_move_through_their_states,
    events_are_read_in_order_after_a_cursor_that_never_moves_back,
);

fn record(key: &str, source: Source) -> RawRecord {
    RawRecord {
        dedup_key: key.to_owned(),
        source,
        kind: RecordKind::Notification,
        message_id: Some(key.trim_start_matches("msg:").to_owned()),
        exchange: Some("nova".to_owned()),
        routing_key: Some("notifications.info".to_owned()),
        envelope_version: Some("2.0".to_owned()),
        publisher_id: Some("compute.cmp-01".to_owned()),
        event_type: Some("compute.instance.create.end".to_owned()),
        priority: Some("INFO".to_owned()),
        emitted_at: Some(Instant(1_683_108_672_123_456)),
        received_at: Instant(1_683_108_673_000_000),
        body: format!("{{\"message_id\": \"{key}\"}}"),
        scrubbed: None,
    }
}

fn fact(resource: &str, kind: FactKind, secs: i64) -> Fact {
    let mut attributes = BTreeMap::new();
    attributes.insert("flavor_name".to_owned(), serde_json::json!("SCS-2V-4"));
    attributes.insert("vcpus".to_owned(), serde_json::json!(2));
    Fact {
        resource_type: ResourceType::Instance,
        resource_id: resource.to_owned(),
        project_id: Some("p-1".to_owned()),
        user_id: Some("u-1".to_owned()),
        kind,
        effective_at: Instant(secs * 1_000_000 + 250),
        time_source: TimeSource::Payload,
        origin: Origin::Notification,
        event_type: "compute.instance.create.end".to_owned(),
        attributes,
    }
}

fn accepted(key: &str, facts: Vec<Fact>) -> Accepted {
    Accepted {
        record: record(key, Source::Amqp),
        facts,
    }
}

fn batch(items: Vec<Accepted>) -> Batch {
    Batch {
        accepted: items,
        quarantined: Vec::new(),
    }
}

async fn count(store: &SqlStore, table: &str) -> i64 {
    use sqlx::Row;
    let row =
        sqlx::query::<sqlx::Any>(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(store.pool())
            .await
            .unwrap();
    row.try_get::<i64, _>(0).unwrap()
}

async fn replaying_a_batch_is_a_no_op(store: &SqlStore) {
    let b = batch(vec![
        accepted("msg:a", vec![fact("vm-1", FactKind::Created, 100)]),
        accepted("msg:b", vec![fact("vm-1", FactKind::Deleted, 200)]),
    ]);
    let first = store.commit(std::slice::from_ref(&b)).await.unwrap();
    assert_eq!(
        (first[0].records, first[0].duplicates, first[0].facts),
        (2, 0, 2)
    );
    let again = store.commit(std::slice::from_ref(&b)).await.unwrap();
    assert_eq!((again[0].records, again[0].duplicates), (0, 2));
    assert_eq!((again[0].facts, again[0].fact_duplicates), (0, 2));
    assert_eq!(count(store, "raw_records").await, 2);
    assert_eq!(count(store, "facts").await, 2);
}

async fn same_fact_under_different_ids_is_one_fact(store: &SqlStore) {
    // Legacy and versioned notifications of one create: different message ids, same transition
    // (the versioned time has no fraction: still the same second).
    let mut versioned = fact("vm-1", FactKind::Created, 100);
    versioned.effective_at = Instant(100 * 1_000_000);
    let out = store
        .commit(&[batch(vec![
            accepted("msg:legacy", vec![fact("vm-1", FactKind::Created, 100)]),
            accepted("msg:versioned", vec![versioned]),
        ])])
        .await
        .unwrap();
    assert_eq!(
        (out[0].records, out[0].facts, out[0].fact_duplicates),
        (2, 1, 1)
    );
    let facts = store.facts(10).await.unwrap();
    assert_eq!(facts.len(), 1);
    assert_eq!(
        facts[0].record_key, "msg:versioned",
        "the earliest of the payload-dated copies is kept"
    );
}

/// Four copies of one transition, committed in every order, together and one commit each:
/// the store always keeps the same one (payload-dated, with an owner, from a notification,
/// earliest), so what is stored never depends on arrival.
async fn the_kept_copy_does_not_depend_on_arrival(store: &SqlStore) {
    let legacy = fact("vm-c", FactKind::Stopped, 300);
    let mut versioned = fact("vm-c", FactKind::Stopped, 300);
    versioned.effective_at = Instant(300 * 1_000_000 + 100);
    versioned.event_type = "instance.power_off.end".to_owned();
    let mut ceilometer = fact("vm-c", FactKind::Stopped, 300);
    ceilometer.effective_at = Instant(300 * 1_000_000);
    ceilometer.origin = Origin::Ceilometer;
    let mut envelope = fact("vm-c", FactKind::Stopped, 300);
    envelope.effective_at = Instant(300 * 1_000_000 + 1);
    envelope.time_source = TimeSource::Envelope;
    let copies = [
        ("copy:legacy", legacy),
        ("copy:versioned", versioned),
        ("copy:ceilometer", ceilometer),
        ("copy:envelope", envelope),
    ];
    let orders: [[usize; 4]; 6] = [
        [0, 1, 2, 3],
        [3, 2, 1, 0],
        [2, 0, 3, 1],
        [1, 3, 0, 2],
        [3, 0, 2, 1],
        [2, 3, 1, 0],
    ];
    for (round, order) in orders.iter().enumerate() {
        let resource = format!("vm-c{round}");
        let inputs: Vec<Accepted> = order
            .iter()
            .map(|&i| {
                let (key, f) = &copies[i];
                let mut f = f.clone();
                f.resource_id = resource.clone();
                accepted(&format!("{key}:{round}"), vec![f])
            })
            .collect();
        if round % 2 == 0 {
            store.commit(&[batch(inputs)]).await.unwrap();
        } else {
            for input in inputs {
                let out = store.commit(&[batch(vec![input])]).await.unwrap();
                assert_eq!(out[0].facts + out[0].fact_duplicates, 1);
            }
        }
        let kept: Vec<_> = store
            .facts(1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|f| f.resource_id == resource)
            .collect();
        assert_eq!(kept.len(), 1, "order {order:?}");
        assert_eq!(
            kept[0].record_key,
            format!("copy:versioned:{round}"),
            "order {order:?}"
        );
        assert_eq!(kept[0].effective_at, Instant(300 * 1_000_000 + 100));
        assert_eq!(kept[0].origin, "notification");
    }
}

/// A report reads each resource alive before its end with *all* its facts: a later one may
/// name the owner or date the creation.
async fn resources_come_with_all_their_facts(store: &SqlStore) {
    use futures_lite::StreamExt;
    store
        .commit(&[batch(vec![
            accepted("msg:a1", vec![fact("vm-a", FactKind::Created, 100)]),
            accepted("msg:a2", vec![fact("vm-a", FactKind::Deleted, 500)]),
            accepted("msg:b1", vec![fact("vm-b", FactKind::Created, 600)]),
        ])])
        .await
        .unwrap();
    let mut stream = store.resources_until(Instant(300 * 1_000_000));
    let mut seen = Vec::new();
    while let Some(r) = stream.next().await {
        let r = r.unwrap();
        let mut times: Vec<i64> = r.facts.iter().map(|f| f.1).collect();
        times.sort();
        seen.push((r.resource_id, times));
    }
    assert_eq!(
        seen,
        vec![(
            "vm-a".to_owned(),
            vec![100 * 1_000_000 + 250, 500 * 1_000_000 + 250]
        )],
        "vm-b begins after the end; vm-a's delete after it still comes"
    );
}

async fn batches_in_one_commit_get_their_own_outcomes(store: &SqlStore) {
    let b1 = batch(vec![accepted("msg:a", vec![]), accepted("msg:b", vec![])]);
    let b2 = batch(vec![accepted("msg:b", vec![]), accepted("msg:c", vec![])]);
    let out = store.commit(&[b1, b2]).await.unwrap();
    assert_eq!((out[0].records, out[0].duplicates), (2, 0));
    assert_eq!(
        (out[1].records, out[1].duplicates),
        (1, 1),
        "b was committed by the first batch"
    );
    assert_eq!(count(store, "raw_records").await, 3);
}

async fn large_batches_are_split_into_statements(store: &SqlStore) {
    let items: Vec<Accepted> = (0..1234)
        .map(|i| {
            accepted(
                &format!("msg:{i}"),
                vec![fact(&format!("vm-{i}"), FactKind::Created, i)],
            )
        })
        .collect();
    let out = store.commit(&[batch(items)]).await.unwrap();
    assert_eq!((out[0].records, out[0].facts), (1234, 1234));
    assert_eq!(count(store, "raw_records").await, 1234);
    assert_eq!(count(store, "facts").await, 1234);
}

async fn quarantine_keeps_bad_input_once(store: &SqlStore) {
    let bad = Quarantined {
        source: Source::Amqp,
        reason: "body is not JSON".to_owned(),
        exchange: Some("nova".to_owned()),
        routing_key: Some("notifications.info".to_owned()),
        received_at: Instant(5),
        body: vec![0xff, 0x00, b'{'],
    };
    let b = Batch {
        accepted: vec![accepted("msg:ok", vec![])],
        quarantined: vec![bad.clone()],
    };
    let out = store.commit(&[b.clone(), b]).await.unwrap();
    assert_eq!(out[0].quarantined, 1);
    assert_eq!(out[1].quarantined, 0, "a redelivered bad body is kept once");
    let list = store.quarantine_list(10).await.unwrap();
    assert_eq!(list.len(), 1);
    let entry = store.quarantine_get(list[0].id).await.unwrap().unwrap();
    assert_eq!(
        entry.body, bad.body,
        "bytes kept exactly, even invalid UTF-8"
    );
    assert_eq!(entry.reason, bad.reason);
    assert_eq!(entry.exchange.as_deref(), Some("nova"));
    assert!(
        store
            .quarantine_get(list[0].id + 100)
            .await
            .unwrap()
            .is_none()
    );
}

async fn coverage_spans_records_quarantine_and_facts(store: &SqlStore) {
    use crate::store::Coverage;
    assert_eq!(store.coverage().await.unwrap(), Coverage::default());
    let mut early = accepted("msg:c1", vec![fact("vm-c", FactKind::Created, 50)]);
    early.record.received_at = Instant(2_000_000);
    let mut late = accepted("msg:c2", vec![]);
    late.record.received_at = Instant(9_000_000);
    let bad = Quarantined {
        source: Source::Http,
        reason: "not JSON".to_owned(),
        exchange: None,
        routing_key: None,
        received_at: Instant(1_000_000),
        body: b"{".to_vec(),
    };
    store
        .commit(&[Batch {
            accepted: vec![early, late],
            quarantined: vec![bad],
        }])
        .await
        .unwrap();
    let coverage = store.coverage().await.unwrap();
    assert_eq!(
        coverage.first_input_at,
        Some(Instant(1_000_000)),
        "quarantined inputs count"
    );
    assert_eq!(coverage.last_input_at, Some(Instant(9_000_000)));
    assert_eq!(coverage.first_fact_at, Some(Instant(50_000_250)));
    assert_eq!(coverage.known_from(), Some(Instant(1_000_000)));
}

async fn gaps_open_close_and_close_stale(store: &SqlStore) {
    let id = store
        .open_gap(Source::Amqp, Instant(10), "connection lost: reset")
        .await
        .unwrap();
    store.close_gap(id, Instant(20)).await.unwrap();
    store.close_gap(id, Instant(99)).await.unwrap(); // closing twice keeps the first end
    let stale = store
        .open_gap(Source::Amqp, Instant(30), "cannot connect")
        .await
        .unwrap();
    let other = store
        .open_gap(Source::Http, Instant(40), "down")
        .await
        .unwrap();
    assert_eq!(
        store
            .close_stale_gaps(Source::Amqp, Instant(50))
            .await
            .unwrap(),
        1
    );
    let gaps = store.gaps(10).await.unwrap();
    assert_eq!(gaps.len(), 3);
    let by_id = |id| gaps.iter().find(|g| g.id == id).unwrap();
    assert_eq!(by_id(id).ended_at, Some(Instant(20)));
    assert_eq!(by_id(stale).ended_at, Some(Instant(50)));
    assert!(by_id(stale).cause.ends_with("(closed at restart)"));
    assert_eq!(by_id(other).ended_at, None);
    assert_eq!(gaps[0].id, other, "newest first");
    let status = store.status().await.unwrap();
    assert_eq!((status.gaps_total, status.gaps_open), (3, 1));
}

async fn heartbeats_round_trip(store: &SqlStore) {
    assert_eq!(store.heartbeats(Source::Http).await.unwrap(), vec![]);
    store
        .heartbeat(Source::Http, "a", Instant(1), Instant(7))
        .await
        .unwrap();
    store
        .heartbeat(Source::Http, "a", Instant(1), Instant(9))
        .await
        .unwrap();
    store
        .heartbeat(Source::Http, "b", Instant(5), Instant(8))
        .await
        .unwrap();
    let beats = store.heartbeats(Source::Http).await.unwrap();
    let seen: Vec<_> = beats
        .iter()
        .map(|b| (b.replica.as_str(), b.started_at, b.alive_at))
        .collect();
    assert_eq!(
        seen,
        [("b", Instant(5), Instant(8)), ("a", Instant(1), Instant(9))],
        "one row per replica, the start kept"
    );
    assert_eq!(store.heartbeats(Source::Amqp).await.unwrap(), vec![]);
}

async fn status_counts_per_source(store: &SqlStore) {
    let http = Accepted {
        record: record("msg:h", Source::Http),
        facts: vec![],
    };
    store
        .commit(&[batch(vec![accepted(
            "msg:a",
            vec![fact("vm", FactKind::Created, 1)],
        )])])
        .await
        .unwrap();
    store
        .commit(&[batch(vec![accepted("msg:a", vec![])]), batch(vec![http])])
        .await
        .unwrap();
    let status = store.status().await.unwrap();
    assert_eq!(status.records_total, 2);
    assert_eq!(status.facts_total, 1);
    let amqp = status.sources.iter().find(|s| s.source == "amqp").unwrap();
    assert_eq!((amqp.records, amqp.duplicates, amqp.facts), (1, 1, 1));
    assert_eq!(amqp.last_received_at, Some(Instant(1_683_108_673_000_000)));
    let http = status.sources.iter().find(|s| s.source == "http").unwrap();
    assert_eq!((http.records, http.duplicates), (1, 0));
}

async fn arrival_order_does_not_change_the_result(store: &SqlStore) {
    // The same inputs, split into batches differently and redelivered, give the same store.
    let items: Vec<Accepted> = (0..40)
        .map(|i| {
            // A redelivery carries the same body, so the same key always has the same fact.
            let k = i % 25;
            accepted(
                &format!("msg:{k}"),
                vec![fact(&format!("vm-{}", k % 10), FactKind::Created, k)],
            )
        })
        .collect();
    let mut reversed = items.clone();
    reversed.reverse();
    for chunk in reversed.chunks(7) {
        store.commit(&[batch(chunk.to_vec())]).await.unwrap();
    }
    for chunk in items.chunks(3) {
        store.commit(&[batch(chunk.to_vec())]).await.unwrap();
    }
    assert_eq!(count(store, "raw_records").await, 25);
    let facts = store.facts(100).await.unwrap();
    let mut keys: Vec<_> = facts.iter().map(|f| f.semantic_key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), facts.len());
    assert_eq!(
        facts.len(),
        25,
        "one fact per distinct (resource, kind, second)"
    );
    let status = store.status().await.unwrap();
    assert_eq!(status.records_total, 25);
    assert_eq!(status.sources[0].duplicates, 80 - 25);
}

async fn fields_round_trip_exactly(store: &SqlStore) {
    let f = fact("vm-9", FactKind::Resized, 1_683_108_671);
    store
        .commit(&[batch(vec![accepted("msg:r", vec![f.clone()])])])
        .await
        .unwrap();
    let stored = &store.facts(1).await.unwrap()[0];
    assert_eq!(stored.semantic_key, "instance/vm-9/resized/1683108671");
    assert_eq!(stored.effective_at, f.effective_at, "microseconds kept");
    assert_eq!(stored.attributes, r#"{"flavor_name":"SCS-2V-4","vcpus":2}"#);
    assert_eq!(stored.project_id.as_deref(), Some("p-1"));
    assert_eq!(
        (stored.time_source.as_str(), stored.origin.as_str()),
        ("payload", "notification")
    );
}

/// Every way a NUL can reach a text column: `(position, poison input)`.
fn nul_poisons() -> Vec<(String, Accepted)> {
    let mut out = Vec::new();
    let base = || accepted("msg:poison", vec![fact("vm-p", FactKind::Created, 500)]);
    type Edit = fn(&mut RawRecord);
    let record_edits: [(&str, Edit); 9] = [
        ("dedup_key", |r| r.dedup_key.push('\0')),
        ("message_id", |r| r.message_id = Some("m\0".to_owned())),
        ("exchange", |r| r.exchange = Some("no\0va".to_owned())),
        ("routing_key", |r| r.routing_key = Some("\0".to_owned())),
        ("envelope_version", |r| {
            r.envelope_version = Some("2\0".to_owned())
        }),
        ("publisher_id", |r| r.publisher_id = Some("c\0".to_owned())),
        ("event_type", |r| r.event_type = Some("x\0".to_owned())),
        ("priority", |r| r.priority = Some("\0INFO".to_owned())),
        ("body", |r| r.body = "{\"a\": \"\0\"}".to_owned()),
    ];
    for (name, edit) in record_edits {
        let mut a = base();
        edit(&mut a.record);
        out.push((name.to_owned(), a));
    }
    type FactEdit = fn(&mut Fact);
    let fact_edits: [(&str, FactEdit); 6] = [
        ("resource_id", |f| f.resource_id.push('\0')),
        ("project_id", |f| f.project_id = Some("p\0".to_owned())),
        ("user_id", |f| f.user_id = Some("\0u".to_owned())),
        ("event_type", |f| f.event_type.push('\0')),
        ("attribute", |f| {
            f.attributes.insert(
                "flavor_name".to_owned(),
                serde_json::json!(["a", {"b": "\0"}]),
            );
        }),
        ("attribute", |f| {
            f.attributes.insert("k\0".to_owned(), serde_json::json!(1));
        }),
    ];
    for resource_type in ResourceType::ALL {
        for kind in FactKind::ALL {
            for (name, edit) in fact_edits {
                let mut a = base();
                a.facts[0].resource_type = resource_type;
                a.facts[0].kind = kind;
                edit(&mut a.facts[0]);
                out.push((format!("{name} of {resource_type:?}/{kind:?}"), a));
            }
        }
    }
    out
}

async fn nul_in_any_text_is_quarantined_and_batch_mates_are_stored(store: &SqlStore) {
    let poisons = nul_poisons();
    for (i, (position, poison)) in poisons.iter().enumerate() {
        let mut poison = poison.clone();
        if !poison.record.dedup_key.contains('\0') {
            poison.record.dedup_key = format!("msg:poison-{i}");
        }
        // A distinct body each, so that each poison is its own quarantine entry.
        poison.record.body.push_str(&" ".repeat(i));
        let good = |n: usize| {
            accepted(
                &format!("msg:good-{i}-{n}"),
                vec![fact(&format!("vm-{i}-{n}"), FactKind::Created, 100)],
            )
        };
        let b = batch(vec![good(0), poison.clone(), good(1)]);
        let out = store
            .commit(std::slice::from_ref(&b))
            .await
            .unwrap_or_else(|e| panic!("{position}: commit failed instead of quarantining: {e:?}"));
        assert_eq!(out[0].records, 2, "{position}: batch-mates stored");
        assert_eq!(out[0].rejected.len(), 1, "{position}");
        assert!(
            out[0].rejected[0].reason.contains("NUL"),
            "{position}: {}",
            out[0].rejected[0].reason
        );
        assert_eq!(out[0].quarantined, 1, "{position}: the poison is kept");
        // Redelivered: no loop, no second quarantine entry, nothing stored twice.
        let again = store.commit(std::slice::from_ref(&b)).await.unwrap();
        assert_eq!(
            (again[0].records, again[0].duplicates),
            (0, 2),
            "{position}"
        );
        assert_eq!(again[0].quarantined, 0, "{position}");
    }
    let n = poisons.len() as i64;
    assert_eq!(count(store, "raw_records").await, 2 * n);
    assert_eq!(count(store, "quarantine").await, n);
    let status = store.status().await.unwrap();
    assert_eq!(status.sources[0].quarantined, 2 * n, "counted per delivery");
    let entry = &store.quarantine_list(1).await.unwrap()[0];
    assert!(entry.reason.contains("fact 0"), "{}", entry.reason);
    assert!(!entry.body.is_empty());
}

async fn overlong_identifiers_are_quarantined(store: &SqlStore) {
    let long = "x".repeat(super::MAX_IDENTIFIER_BYTES + 1);
    let mut poison = accepted("msg:long", vec![fact(&long, FactKind::Created, 1)]);
    poison.facts[0].project_id = Some("p-long".to_owned());
    let out = store
        .commit(&[batch(vec![poison, accepted("msg:short", vec![])])])
        .await
        .unwrap();
    assert_eq!(out[0].records, 1);
    assert!(
        out[0].rejected[0].reason.contains("resource_id")
            && out[0].rejected[0].reason.contains("1025 bytes"),
        "{}",
        out[0].rejected[0].reason
    );
}

async fn a_database_refusal_quarantines_the_input_and_commits_the_rest(store: &SqlStore) {
    // An operator's own constraint (not a dedup key) stands for any value the database refuses.
    let constraint = match store.backend() {
        super::sql::Backend::Sqlite => {
            "CREATE TRIGGER refuse_test BEFORE INSERT ON facts WHEN NEW.resource_id = 'vm-refused' \
             BEGIN SELECT RAISE(ABORT, 'resource refused by policy'); END"
        }
        super::sql::Backend::Postgres => {
            "ALTER TABLE facts ADD CONSTRAINT refuse_test CHECK (resource_id <> 'vm-refused')"
        }
    };
    sqlx::raw_sql(constraint)
        .execute(store.pool())
        .await
        .unwrap();
    let refused = accepted(
        "msg:refused",
        vec![fact("vm-refused", FactKind::Created, 10)],
    );
    let b1 = batch(vec![
        accepted("msg:1", vec![fact("vm-1", FactKind::Created, 10)]),
        refused.clone(),
        accepted("msg:2", vec![fact("vm-2", FactKind::Created, 10)]),
    ]);
    let b2 = batch(vec![accepted(
        "msg:3",
        vec![fact("vm-3", FactKind::Created, 10)],
    )]);
    // Two batches in one group: the refusal in the first must not cost the second anything.
    let out = store.commit(&[b1.clone(), b2]).await.unwrap();
    assert_eq!((out[0].records, out[0].facts), (2, 2));
    assert_eq!((out[1].records, out[1].facts), (1, 1));
    assert_eq!(out[0].rejected.len(), 1);
    assert!(
        out[0].rejected[0]
            .reason
            .contains("the database refused it"),
        "{}",
        out[0].rejected[0].reason
    );
    assert_eq!(out[0].rejected[0].dedup_key, "msg:refused");
    let entry = &store.quarantine_list(1).await.unwrap()[0];
    assert_eq!(
        entry.body,
        refused.record.body.as_bytes(),
        "the input is kept"
    );
    assert_eq!(
        count(store, "raw_records").await,
        3,
        "the refused record is not half-stored"
    );
    assert_eq!(count(store, "facts").await, 3);
    // A second delivery of the same batch: duplicates, and the refusal is not quarantined twice.
    let again = store.commit(&[b1]).await.unwrap();
    assert_eq!(
        (again[0].records, again[0].duplicates, again[0].quarantined),
        (0, 2, 0)
    );
    assert_eq!(count(store, "quarantine").await, 1);
}

async fn credentials_never_reach_the_store(store: &SqlStore) {
    // Every real capture that carries a token anywhere in it, decoded and committed.
    let scrubber = crate::scrub::Scrubber::default();
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/real");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut b = Batch::default();
    let mut with_token = 0;
    for (i, file) in files.iter().enumerate() {
        let capture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let Some(message) = capture["envelope"]["oslo.message"].as_str() else {
            continue;
        };
        if !message.contains("_context_auth_token") {
            continue;
        }
        let mut doc = capture["envelope"].clone();
        let mut inner: serde_json::Value =
            serde_json::from_str(doc["oslo.message"].as_str().unwrap()).unwrap();
        inner["_context_auth_token"] = serde_json::json!(format!("gAAAAA-live-{i}"));
        inner["_context_auth_token_info"] = serde_json::json!({"token": {"id": format!("gAAAAA-live-{i}"), "methods": ["password"]}});
        let inner_text = inner
            .to_string()
            .replace("REDACTED-test-token", &format!("gAAAAA-live-{i}"));
        doc["oslo.message"] = serde_json::Value::String(inner_text);
        let body = doc.to_string();
        with_token += 1;
        let exchange = capture["exchange"].as_str().unwrap_or("nova");
        let routing_key = capture["routing_key"]
            .as_str()
            .unwrap_or("notifications.info");
        b.push(crate::ingest::amqp::decode_delivery(
            body.as_bytes(),
            exchange,
            routing_key,
            Instant(0),
            &scrubber,
        ));
        // The same body, broken, goes to quarantine: scrubbed there too.
        b.push(crate::ingest::amqp::decode_delivery(
            &body.as_bytes()[..body.len() - 2],
            exchange,
            routing_key,
            Instant(0),
            &scrubber,
        ));
    }
    assert!(with_token > 50, "the captures hold contexts: {with_token}");
    store.commit(&[b]).await.unwrap();
    use sqlx::Row;
    let rows = sqlx::query::<sqlx::Any>("SELECT body, scrubbed FROM raw_records")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), with_token);
    for row in &rows {
        let body: String = row.try_get(0).unwrap();
        assert!(!body.contains("gAAAAA-live"), "token stored: {body}");
        let scrubbed: Option<String> = row.try_get(1).unwrap();
        assert!(
            scrubbed
                .as_deref()
                .is_some_and(|s| s.contains("_context_auth_token")),
            "{scrubbed:?}"
        );
    }
    let quarantine = sqlx::query::<sqlx::Any>("SELECT body, reason FROM quarantine")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(quarantine.len(), with_token);
    for row in &quarantine {
        let body: Vec<u8> = row.try_get(0).unwrap();
        assert!(
            !String::from_utf8_lossy(&body).contains("gAAAAA-live"),
            "token quarantined"
        );
        let reason: String = row.try_get(1).unwrap();
        assert!(reason.contains("scrubbed"), "{reason}");
    }
}

#[test]
fn urls_are_redacted_in_userinfo_and_query() {
    assert_eq!(
        super::redact_url("postgres://steward:s3cret@db/steward"),
        "postgres://steward:***@db/steward"
    );
    let redacted =
        super::redact_url("postgres://steward@db/steward?sslmode=require&password=s3cret&x=1");
    assert!(!redacted.contains("s3cret"), "{redacted}");
    assert!(redacted.contains("sslmode=require") && redacted.contains("x=1"));
    assert_eq!(super::redact_url("sqlite://./a.db"), "sqlite://./a.db");
}

#[tokio::test]
async fn read_only_opening_creates_nothing_and_refuses_newer_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nothing/here.db", dir.path().display());
    let missing = super::open_read_only(&url, std::time::Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, super::StoreError::Missing { .. }),
        "{missing}"
    );
    assert!(missing.to_string().contains("nothing/here.db"), "{missing}");
    assert!(!dir.path().join("nothing").exists(), "no folder created");

    let url = format!("sqlite://{}/s.db", dir.path().display());
    let store = SqlStore::open(&url).await.unwrap();
    store
        .commit(&[batch(vec![accepted("msg:a", vec![])])])
        .await
        .unwrap();
    // A newer Steward migrated it: this one must neither read nor migrate it.
    sqlx::raw_sql(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from the future', TRUE, x'00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store.pool().close().await;
    let newer = super::open_read_only(&url, std::time::Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(newer, super::StoreError::SchemaTooNew { found: 99, .. }),
        "{newer}"
    );
    let newer = SqlStore::open(&url).await.unwrap_err();
    assert!(
        matches!(newer, super::StoreError::SchemaTooNew { .. }),
        "{newer}"
    );
}

#[tokio::test]
async fn a_read_only_store_reads_but_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/s.db", dir.path().display());
    let store = SqlStore::open(&url).await.unwrap();
    store
        .commit(&[batch(vec![accepted("msg:a", vec![])])])
        .await
        .unwrap();
    store.pool().close().await;
    let reader = super::open_read_only(&url, std::time::Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(reader.status().await.unwrap().records_total, 1);
    assert!(
        reader
            .commit(&[batch(vec![accepted("msg:b", vec![])])])
            .await
            .is_err(),
        "a reader never writes"
    );
}

async fn reconcile_runs_round_trip_newest_first(store: &SqlStore) {
    assert_eq!(store.reconcile_runs(5).await.unwrap(), vec![]);
    let first = super::ReconcileRun {
        started_at: Instant(1_000_000),
        finished_at: Instant(2_000_000),
        listed: vec!["instance".to_owned(), "volume".to_owned()],
        resources_seen: 7,
        facts_written: 3,
        estimated: 1,
        problems: None,
    };
    let second = super::ReconcileRun {
        started_at: Instant(5_000_000),
        finished_at: Instant(6_000_007),
        listed: vec![],
        resources_seen: 0,
        facts_written: 0,
        estimated: 0,
        problems: Some("listing servers: 503 Service Unavailable".to_owned()),
    };
    store.record_reconcile_run(&first).await.unwrap();
    store.record_reconcile_run(&second).await.unwrap();
    assert_eq!(
        store.reconcile_runs(5).await.unwrap(),
        vec![second.clone(), first]
    );
    assert_eq!(store.reconcile_runs(1).await.unwrap(), vec![second]);
}

async fn volume_type_names_are_replaced_on_rename(store: &SqlStore) {
    assert!(store.volume_type_names().await.unwrap().is_empty());
    let listed = |name: &str| {
        vec![
            ("26f2c12d".to_owned(), name.to_owned()),
            ("9a1b".to_owned(), "hdd".to_owned()),
        ]
    };
    store
        .record_volume_types(&listed("__DEFAULT__"), Instant(1))
        .await
        .unwrap();
    store
        .record_volume_types(&listed("ssd"), Instant(2))
        .await
        .unwrap();
    let names = store.volume_type_names().await.unwrap();
    assert_eq!(names.len(), 2);
    assert_eq!(names["26f2c12d"], "ssd");
    assert_eq!(names["9a1b"], "hdd");
}

async fn a_period_closes_once_and_each_correction_is_stored_once(store: &SqlStore) {
    use crate::store::{ClosedPeriod, StoredCorrection};
    let closed = ClosedPeriod {
        id: 0,
        start: Instant(1_000),
        end: Instant(2_000),
        closed_at: Instant(3_000),
        digest: "sha256:aa".to_owned(),
        catalogue: "[]".to_owned(),
        report: "{\"x\": 1}".to_owned(),
        facts_seen: 5,
    };
    assert!(store.insert_closed_period(&closed).await.unwrap());
    // A second close (another replica, later) does not replace the first.
    let mut other = closed.clone();
    other.digest = "sha256:bb".to_owned();
    other.report = "{}".to_owned();
    assert!(!store.insert_closed_period(&other).await.unwrap());
    let stored = store
        .closed_period(Instant(1_000), Instant(2_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.digest, "sha256:aa");
    assert_eq!(stored.report, closed.report);
    assert!(
        store
            .closed_period(Instant(1_000), Instant(2_001))
            .await
            .unwrap()
            .is_none()
    );
    let correction = |sequence: i64, digest: &str| StoredCorrection {
        sequence,
        created_at: Instant(4_000 + sequence),
        digest: digest.to_owned(),
        correction: format!("{{\"n\": {sequence}}}"),
        basis: "{}".to_owned(),
    };
    assert!(
        store
            .insert_correction(stored.id, &correction(1, "sha256:c1"), 7)
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_correction(stored.id, &correction(1, "sha256:zz"), 9)
            .await
            .unwrap()
    );
    assert!(
        store
            .insert_correction(stored.id, &correction(2, "sha256:c2"), 8)
            .await
            .unwrap()
    );
    let list = store.corrections(stored.id).await.unwrap();
    assert_eq!(
        list.iter().map(|c| c.digest.as_str()).collect::<Vec<_>>(),
        ["sha256:c1", "sha256:c2"]
    );
    // The mark only moves forward.
    store.mark_period_checked(stored.id, 6).await.unwrap();
    let row = store
        .closed_period(Instant(1_000), Instant(2_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.facts_seen, 8);
    store.mark_period_checked(stored.id, 11).await.unwrap();
    let summary = store.closed_periods().await.unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].corrections, 2);
    assert_eq!(summary[0].latest_correction.as_deref(), Some("sha256:c2"));
    let row = store
        .closed_period(Instant(1_000), Instant(2_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.facts_seen, 11);
    // Facts before an instant are counted.
    store
        .commit(&[batch(vec![accepted(
            "msg:p1",
            vec![
                fact("vm-1", FactKind::Created, 10),
                fact("vm-1", FactKind::Deleted, 30),
            ],
        )])])
        .await
        .unwrap();
    assert_eq!(
        store
            .fact_count_before(Instant(20 * 1_000_000))
            .await
            .unwrap(),
        1
    );
}

async fn outbox_rows_are_planned_once_and_move_through_their_states(store: &SqlStore) {
    use crate::store::{Delivery, DeliveryUpdate};
    let row = |sink: &str, project: Option<&str>, digest: &str| Delivery {
        id: 0,
        sink: sink.to_owned(),
        period_start: Instant(1_000),
        period_end: Instant(2_000),
        project_id: project.map(str::to_owned),
        kind: "report".to_owned(),
        digest: digest.to_owned(),
        state: "ignored".to_owned(),
        attempts: 9,
        last_error: None,
        remote_id: None,
        next_attempt_at: Instant(0),
        created_at: Instant(0),
        updated_at: Instant(0),
    };
    let rows = [
        row("files", Some("p-a"), "sha256:aa"),
        row("files", None, "sha256:aa"),
        row("hook", Some("p-a"), "sha256:aa"),
    ];
    assert_eq!(
        store.plan_deliveries(&rows, Instant(5_000)).await.unwrap(),
        3
    );
    assert_eq!(
        store.plan_deliveries(&rows, Instant(6_000)).await.unwrap(),
        0
    );
    let all = store
        .deliveries(None, Instant(1_000), Instant(2_000))
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|d| d.state == "planned" && d.attempts == 0));
    assert_eq!(all[1].project_id, None, "no owner round-trips as None");
    let files = store
        .deliveries(Some("files"), Instant(1_000), Instant(2_000))
        .await
        .unwrap();
    assert_eq!(files.len(), 2);
    assert!(
        store
            .due_deliveries("files", Instant(4_999), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = store
        .due_deliveries("files", Instant(5_000), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 2);
    let update = DeliveryUpdate {
        state: "confirmed".to_owned(),
        attempts: 1,
        last_error: None,
        remote_id: Some("/srv/reports/x.json".to_owned()),
        next_attempt_at: Instant(7_000),
    };
    store
        .update_delivery(due[0].id, &update, Instant(7_000))
        .await
        .unwrap();
    let due = store
        .due_deliveries("files", Instant(9_000), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "a confirmed row is not due");
    let again = store
        .deliveries(Some("files"), Instant(1_000), Instant(2_000))
        .await
        .unwrap();
    let confirmed = again.iter().find(|d| d.state == "confirmed").unwrap();
    assert_eq!(confirmed.remote_id.as_deref(), Some("/srv/reports/x.json"));
    assert_eq!(confirmed.updated_at, Instant(7_000));
}

/// `events_after`, waited for until it holds `want` events: on PostgreSQL, events become
/// readable once every older write transaction of the server has ended, and parallel tests in
/// other databases run theirs.
async fn readable_events(
    store: &SqlStore,
    after: super::ForwardPosition,
    limit: u32,
    want: usize,
) -> Vec<super::StoredEvent> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let events = store.events_after(after, limit).await.unwrap();
        if events.len() >= want || std::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn events_are_read_in_order_after_a_cursor_that_never_moves_back(store: &SqlStore) {
    use super::ForwardPosition;
    let mut observation = record("api:vm-9", Source::Reconcile);
    observation.kind = RecordKind::ApiObservation;
    store
        .commit(&[batch(vec![
            accepted("msg:e1", vec![]),
            accepted("msg:e2", vec![]),
            Accepted {
                record: observation,
                facts: vec![],
            },
        ])])
        .await
        .unwrap();
    store
        .commit(&[batch(vec![accepted("msg:e3", vec![])])])
        .await
        .unwrap();
    let start = ForwardPosition::default();
    let all = readable_events(store, start, 100, 3).await;
    let ids: Vec<&str> = all.iter().filter_map(|e| e.message_id.as_deref()).collect();
    assert_eq!(ids, ["e1", "e2", "e3"], "API observations are not events");
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(all[0].kind, "notification");
    assert_eq!(all[0].body, "{\"message_id\": \"msg:e1\"}");
    assert_eq!(all[0].emitted_at, Some(Instant(1_683_108_672_123_456)));
    let first_two = store.events_after(start, 2).await.unwrap();
    assert_eq!(first_two.len(), 2);
    let rest = store
        .events_after(first_two[1].position, 100)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].message_id.as_deref(), Some("e3"));
    assert_eq!(store.events_behind(first_two[1].position).await.unwrap(), 1);
    assert_eq!(store.events_behind(start).await.unwrap(), 3);

    assert!(store.forward_cursors().await.unwrap().is_empty());
    store
        .advance_forward_cursor("legacy", first_two[1].position, 2, Instant(10))
        .await
        .unwrap();
    store
        .advance_forward_cursor("legacy", rest[0].position, 1, Instant(20))
        .await
        .unwrap();
    // A replica behind cannot move it back.
    store
        .advance_forward_cursor("legacy", first_two[0].position, 1, Instant(30))
        .await
        .unwrap();
    let cursors = store.forward_cursors().await.unwrap();
    assert_eq!(cursors.len(), 1);
    assert_eq!(cursors[0].position, rest[0].position);
    assert_eq!(
        (cursors[0].forwarded, cursors[0].updated_at),
        (3, Instant(20))
    );
}

/// PostgreSQL: a transaction that took a smaller id but commits after a bigger one is not
/// passed over (the reason for the txid column of migration 0008).
#[tokio::test]
async fn postgres_a_late_committing_transaction_is_not_skipped() {
    use sqlx::Acquire;
    let Some(t) = postgres_store().await else {
        return;
    };
    let store = &t.store;
    let insert = |key: &str| {
        format!(
            "INSERT INTO raw_records (dedup_key, source, kind, message_id, received_at, \
             committed_at, body) VALUES ('msg:{key}', 'amqp', 'notification', '{key}', 1, 1, '{{}}')"
        )
    };
    let mut slow_conn = store.pool().acquire().await.unwrap();
    let mut slow = slow_conn.begin().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(insert("early-id")))
        .execute(&mut *slow)
        .await
        .unwrap();
    // Another writer takes a bigger id and commits first.
    sqlx::raw_sql(sqlx::AssertSqlSafe(insert("late-id")))
        .execute(store.pool())
        .await
        .unwrap();
    let start = super::ForwardPosition::default();
    let seen = store.events_after(start, 100).await.unwrap();
    assert!(
        seen.is_empty(),
        "nothing may be read while an older transaction runs: {seen:?}"
    );
    slow.commit().await.unwrap();
    let seen = readable_events(store, start, 100, 2).await;
    let ids: Vec<&str> = seen
        .iter()
        .filter_map(|e| e.message_id.as_deref())
        .collect();
    assert_eq!(ids, ["early-id", "late-id"]);
    assert!(seen[0].position < seen[1].position);
    drop(slow_conn);
    t.finish().await;
}
