//! Running a check that creates things (buckets, load balancers, servers) so that nothing is
//! left behind: whatever the check registers in its [`Cleanup`] is deleted when the check
//! ends — passed, failed, timed out or interrupted (Ctrl-C) — newest first, and a clean-up that
//! fails is itself a result. Everything a check creates carries its name prefix
//! ([`resource_name`]), so the next run finds and removes what a killed run (SIGKILL, a lost
//! machine) could not.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use crate::model::{CheckResult, Status};

/// A deletion to run at the end.
type Undo = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send>;

/// What a check created, to delete whatever happens.
#[derive(Default)]
pub struct Cleanup {
    undo: Mutex<Vec<(String, Undo)>>,
}

impl std::fmt::Debug for Cleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .undo
            .lock()
            .map(|u| u.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        f.debug_struct("Cleanup")
            .field("registered", &names)
            .finish()
    }
}

impl Cleanup {
    /// Registers `what` (e.g. `load balancer 5f0c…`) to be deleted by `undo` at the end.
    pub fn register<F, Fut>(&self, what: impl Into<String>, undo: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        if let Ok(mut list) = self.undo.lock() {
            list.push((what.into(), Box::new(move || Box::pin(undo()))));
        }
    }

    /// Runs every registered deletion, newest first; returns the ones that failed.
    async fn run(&self) -> Vec<(String, String)> {
        let undo: Vec<(String, Undo)> = self
            .undo
            .lock()
            .map(|mut list| std::mem::take(&mut *list))
            .unwrap_or_default();
        let mut failed = Vec::new();
        for (what, action) in undo.into_iter().rev() {
            if let Err(e) = action().await {
                failed.push((what, e));
            }
        }
        failed
    }
}

/// The name prefix of everything check `check` creates: `steward-check-<check>-`.
pub fn prefix(check: &str) -> String {
    format!("steward-check-{check}-")
}

/// A name for something check `check` creates in run `run` (`steward-check-rgw-<run>-bucket`).
pub fn resource_name(check: &str, run: &str, what: &str) -> String {
    format!("{}{run}-{what}", prefix(check))
}

/// Runs `body` for check `id` (of `standard`) with its [`Cleanup`], at most `timeout`, until
/// `interrupt` resolves (Ctrl-C); then deletes what it registered. Returns the check's
/// results, an ABORT when it timed out or was interrupted, and one ABORT per failed clean-up.
pub async fn run<B, Fut, I>(
    id: &str,
    standard: (&str, &str),
    timeout: Duration,
    interrupt: I,
    body: B,
) -> Vec<CheckResult>
where
    B: FnOnce(std::sync::Arc<Cleanup>) -> Fut,
    Fut: Future<Output = Vec<CheckResult>>,
    I: Future<Output = ()>,
{
    let cleanup = std::sync::Arc::new(Cleanup::default());
    let work = body(cleanup.clone());
    let mut results = tokio::select! {
        done = tokio::time::timeout(timeout, work) => match done {
            Ok(results) => results,
            Err(_) => vec![CheckResult::new(
                id,
                standard,
                Status::Abort,
                format!("did not finish within {}s; what it created is removed", timeout.as_secs()),
            )],
        },
        () = interrupt => vec![CheckResult::new(
            id,
            standard,
            Status::Abort,
            "interrupted; what it created is removed",
        )],
    };
    for (what, error) in cleanup.run().await {
        results.push(
            CheckResult::new(
                format!("{id}-cleanup"),
                standard,
                Status::Abort,
                format!(
                    "could not remove {what}: {error}; the next run removes it (name prefix {})",
                    prefix(id)
                ),
            )
            .with("resource", what),
        );
    }
    results
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn counter() -> Arc<AtomicUsize> {
        Arc::new(AtomicUsize::new(0))
    }

    #[tokio::test]
    async fn what_a_check_created_is_removed_newest_first_when_it_passes() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let o = order.clone();
        let results = run(
            "lb",
            ("steward-lb", "v1"),
            Duration::from_secs(5),
            std::future::pending(),
            |cleanup| async move {
                for name in ["load balancer", "listener", "pool"] {
                    let o = o.clone();
                    cleanup.register(name, move || async move {
                        o.lock().unwrap().push(name);
                        Ok(())
                    });
                }
                vec![CheckResult::new(
                    "lb",
                    ("steward-lb", "v1"),
                    Status::Pass,
                    "ok",
                )]
            },
        )
        .await;
        assert_eq!(results.len(), 1);
        assert_eq!(
            *order.lock().unwrap(),
            ["pool", "listener", "load balancer"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_hangs_is_aborted_and_cleaned_up() {
        let removed = counter();
        let r = removed.clone();
        let results = run(
            "rgw",
            ("steward-rgw", "v1"),
            Duration::from_secs(30),
            std::future::pending(),
            |cleanup| async move {
                cleanup.register("bucket b", move || async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                });
                std::future::pending::<()>().await;
                Vec::new()
            },
        )
        .await;
        assert_eq!(results[0].status, Status::Abort);
        assert!(results[0].message.contains("within 30s"));
        assert_eq!(removed.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_interrupted_check_is_cleaned_up_and_a_failed_cleanup_is_reported() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let results = run(
            "lb",
            ("steward-lb", "v1"),
            Duration::from_secs(30),
            async move {
                let _ = rx.await;
            },
            |cleanup| async move {
                cleanup.register("load balancer x", || async {
                    Err("octavia answered 409".to_owned())
                });
                let _ = tx.send(());
                std::future::pending::<()>().await;
                Vec::new()
            },
        )
        .await;
        assert_eq!(results.len(), 2);
        assert!(results[0].message.contains("interrupted"));
        assert_eq!(results[1].id, "lb-cleanup");
        assert!(results[1].message.contains("octavia answered 409"));
        assert!(results[1].message.contains("steward-check-lb-"));
        assert_eq!(
            resource_name("lb", "r1", "pool"),
            "steward-check-lb-r1-pool"
        );
    }
}
