//! The file sink and the outbox on a real SQLite store: planned once, delivered once, a rerun
//! writes nothing, a failure is retried with backoff.

use super::FileSink;
use crate::close::correction::check_period;
use crate::facts::FactKind;
use crate::sinks::outbox::{
    CONFIRMED, FAILED_PERMANENT, PLANNED, RetryPolicy, after_attempt, deliver_due, plan_period,
};
use crate::sinks::{AttemptError, Sink};
use crate::store::Store;
use crate::test_support::{add, at, closed_october, server};
use crate::time::Instant;
use crate::usage::period::Period;

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_closed_period_is_planned_once_and_written_once_per_project() {
    let (store, _dir) = closed_october().await;
    let october = Period::month("2026-10").unwrap();
    let now = at("2026-11-05T01:00:00Z");
    assert_eq!(
        plan_period(store.as_ref(), &october, &["files"], now)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        plan_period(store.as_ref(), &october, &["files"], now)
            .await
            .unwrap(),
        0
    );
    let out = tempfile::tempdir().unwrap();
    let sink = FileSink::new("files", out.path());
    let done = deliver_due(store.as_ref(), &sink, now, 100, &RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|(_, u)| u.state == CONFIRMED));
    let files = files_under(out.path());
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("2026-10/p-a/report-") && f.ends_with(".json"))
    );
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("2026-10/p-b/report-") && f.ends_with(".csv"))
    );
    // Each file is the project's slice: its entry and totals over it.
    let a = files
        .iter()
        .find(|f| f.starts_with("2026-10/p-a/") && f.ends_with(".json"))
        .unwrap();
    let slice: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join(a)).unwrap()).unwrap();
    assert_eq!(slice["project"], "p-a");
    assert_eq!(slice["projects"].as_array().unwrap().len(), 1);
    assert_eq!(slice["period_state"], "closed");
    // Nothing is due any more; delivering the same document again leaves the same files.
    assert!(
        deliver_due(store.as_ref(), &sink, now, 100, &RetryPolicy::default())
            .await
            .unwrap()
            .is_empty()
    );
    let before: Vec<_> = files
        .iter()
        .map(|f| {
            std::fs::metadata(out.path().join(f))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    let rows = store
        .deliveries(None, october.start, october.end)
        .await
        .unwrap();
    let document = crate::sinks::outbox::document(store.as_ref(), &rows[0])
        .await
        .unwrap();
    sink.deliver(&document).await.unwrap();
    let after: Vec<_> = files
        .iter()
        .map(|f| {
            std::fs::metadata(out.path().join(f))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    assert_eq!(before, after, "a rerun rewrites nothing");
    assert_eq!(files_under(out.path()).len(), 4);

    // A late fact: one correction, planned for the one project it changed.
    add(
        &store,
        &[server(
            "vm-2",
            "p-b",
            FactKind::Deleted,
            "2026-10-30T00:00:00Z",
        )],
        now,
    )
    .await;
    let closed = store
        .closed_period(october.start, october.end)
        .await
        .unwrap()
        .unwrap();
    check_period(store.as_ref(), &closed, now).await.unwrap();
    assert_eq!(
        plan_period(store.as_ref(), &october, &["files"], now)
            .await
            .unwrap(),
        1
    );
    deliver_due(store.as_ref(), &sink, now, 100, &RetryPolicy::default())
        .await
        .unwrap();
    let files = files_under(out.path());
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("2026-10/p-b/correction-1-")),
        "{files:?}"
    );
}

#[tokio::test]
async fn a_failed_write_is_retried_with_backoff_and_a_permanent_failure_stops() {
    let (store, _dir) = closed_october().await;
    let october = Period::month("2026-10").unwrap();
    let now = at("2026-11-05T01:00:00Z");
    plan_period(store.as_ref(), &october, &["files"], now)
        .await
        .unwrap();
    // The target is a file, not a folder: every write fails.
    let out = tempfile::tempdir().unwrap();
    let blocked = out.path().join("not-a-folder");
    std::fs::write(&blocked, b"x").unwrap();
    let sink = FileSink::new("files", &blocked);
    let policy = RetryPolicy::default();
    let done = deliver_due(store.as_ref(), &sink, now, 100, &policy)
        .await
        .unwrap();
    assert_eq!(done.len(), 2);
    for (row, update) in &done {
        assert_eq!(update.state, PLANNED);
        assert_eq!(update.attempts, 1);
        assert!(
            update.last_error.as_deref().unwrap().contains("writing"),
            "{update:?}"
        );
        let delay = update.next_attempt_at.micros() - now.micros();
        assert!(
            (24_000_000..=36_000_000).contains(&delay),
            "30 s ± 20 %: {delay}"
        );
        assert_eq!(delay, policy.delay_micros(row.id, 0));
    }
    // Not due before the backoff ends.
    assert!(
        deliver_due(store.as_ref(), &sink, now, 100, &policy)
            .await
            .unwrap()
            .is_empty()
    );
    // The delays grow, and stop growing at the maximum.
    assert!(policy.delay_micros(1, 3) > policy.delay_micros(1, 1));
    assert!(policy.delay_micros(1, 30) <= (3_600.0 * 1.2 * 1e6) as i64);
    // A permanent failure ends the row.
    let row = &done[0].0;
    let update = after_attempt(
        row,
        &Err(AttemptError::Permanent("refused".to_owned())),
        now,
        &policy,
    );
    assert_eq!(update.state, FAILED_PERMANENT);
    store.update_delivery(row.id, &update, now).await.unwrap();
    let later = Instant(now.micros() + 3_600_000_000);
    let due = store.due_deliveries("files", later, 100).await.unwrap();
    assert_eq!(
        due.len(),
        1,
        "the permanent failure is not retried: {due:?}"
    );
}

#[test]
fn project_ids_cannot_escape_the_folder() {
    assert_eq!(super::safe_name("../etc"), ".._etc");
    assert_eq!(super::safe_name(".."), "_..");
    assert_eq!(super::safe_name("a/b"), "a_b");
    assert_eq!(super::safe_name("p-1"), "p-1");
}

#[tokio::test]
async fn the_push_plan_says_per_sink_and_project_what_would_happen() {
    use crate::sinks::outbox::{describe_plan, rows_for_period};
    let (store, _dir) = closed_october().await;
    let october = Period::month("2026-10").unwrap();
    let now = at("2026-11-05T01:00:00Z");
    let wanted = rows_for_period(store.as_ref(), &october, &["files", "hook"], now)
        .await
        .unwrap();
    let fresh = describe_plan(&wanted, &[]).join("\n");
    insta::assert_snapshot!("push_plan_before_any_delivery", fresh);
    // One delivered, one failing transiently, one refused for good, one planned only.
    store.plan_deliveries(&wanted, now).await.unwrap();
    let rows = store
        .deliveries(None, october.start, october.end)
        .await
        .unwrap();
    let policy = RetryPolicy::default();
    let outcomes = [
        Ok("2026-10/p-a/report-0123456789abcdef.json".to_owned()),
        Err(AttemptError::Transient(
            "writing /srv/reports: disk full".to_owned(),
        )),
        Err(AttemptError::Permanent(
            "HTTP 422: unknown project".to_owned(),
        )),
    ];
    for (row, outcome) in rows.iter().zip(outcomes.iter()) {
        let update = after_attempt(row, outcome, now, &policy);
        store.update_delivery(row.id, &update, now).await.unwrap();
    }
    let existing = store
        .deliveries(None, october.start, october.end)
        .await
        .unwrap();
    let later = describe_plan(&wanted, &existing).join("\n");
    insta::assert_snapshot!("push_plan_after_attempts", later);
}

#[tokio::test]
async fn the_pusher_plans_every_closed_month_and_delivers_it_once() {
    use crate::sinks::task::push_once;
    let (store, _dir) = closed_october().await;
    let out = tempfile::tempdir().unwrap();
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(FileSink::new("files", out.path()))];
    let now = at("2026-11-05T02:00:00Z");
    let policy = RetryPolicy::default();
    let mut planned = crate::sinks::task::Planned::new();
    assert_eq!(
        push_once(store.as_ref(), &sinks, &mut planned, now, &policy)
            .await
            .unwrap(),
        2
    );
    assert_eq!(files_under(out.path()).len(), 4);
    assert_eq!(
        push_once(store.as_ref(), &sinks, &mut planned, now, &policy)
            .await
            .unwrap(),
        0
    );
    // A pusher that starts afresh plans again, and the outbox's key adds nothing.
    let mut fresh = crate::sinks::task::Planned::new();
    assert_eq!(
        push_once(store.as_ref(), &sinks, &mut fresh, now, &policy)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.outbox_summary().await.unwrap(),
        vec![("files".to_owned(), CONFIRMED.to_owned(), 2)]
    );
    // A new correction makes the month planned again: one more delivery.
    add(
        &store,
        &[server(
            "vm-2",
            "p-b",
            FactKind::Deleted,
            "2026-10-30T00:00:00Z",
        )],
        now,
    )
    .await;
    let october = Period::month("2026-10").unwrap();
    let closed = store
        .closed_period(october.start, october.end)
        .await
        .unwrap()
        .unwrap();
    check_period(store.as_ref(), &closed, now).await.unwrap();
    assert_eq!(
        push_once(store.as_ref(), &sinks, &mut planned, now, &policy)
            .await
            .unwrap(),
        1
    );
}
