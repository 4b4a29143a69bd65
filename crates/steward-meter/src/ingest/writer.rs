//! The writer: one task that commits what all sources submit, in submission order.
//!
//! Group commit: the writer takes the first waiting submission, then whatever else is already
//! queued (up to [`WriterConfig::max_records_per_commit`]), and commits them all in one
//! transaction, so one fsync serves many batches under load while a lone batch is committed at
//! once. Each submitter gets its own [`CommitOutcome`] (or the failure) back through a oneshot
//! channel and acknowledges only then.
//!
//! Submissions are committed in the order they were submitted. The AMQP source relies on this:
//! its acknowledgements use `multiple=true`, which is only correct if batch N is committed no
//! later than batch N+1.

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::metrics as m;
use crate::record::Batch;
use crate::store::{CommitOutcome, Store};

/// Writer tuning.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Most inputs committed in one transaction.
    pub max_records_per_commit: usize,
    /// Submissions that may wait for the writer before submitters are slowed down.
    pub queue_depth: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            max_records_per_commit: 4000,
            queue_depth: 64,
        }
    }
}

/// The commit failed; nothing of the batch may be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("commit failed: {0}")]
pub struct CommitFailed(pub String);

/// The receiving end of one submission.
pub type CommitReceipt = oneshot::Receiver<Result<CommitOutcome, CommitFailed>>;

struct Submission {
    batch: Batch,
    reply: oneshot::Sender<Result<CommitOutcome, CommitFailed>>,
}

/// Handle for submitting batches. Cloneable; the writer stops when every handle is dropped,
/// after committing everything already submitted.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<Submission>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("inputs", &self.batch.len())
            .finish()
    }
}

impl Writer {
    /// Starts the writer task on `store`.
    pub fn spawn(store: Arc<dyn Store>, config: WriterConfig) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(config.queue_depth.max(1));
        let handle = tokio::spawn(run(store, rx, config));
        (Self { tx }, handle)
    }

    /// Queues `batch` for commit; await the receipt before acknowledging anything in it.
    pub async fn submit(&self, batch: Batch) -> Result<CommitReceipt, CommitFailed> {
        let (reply, receipt) = oneshot::channel();
        self.tx
            .send(Submission { batch, reply })
            .await
            .map_err(|_| CommitFailed("writer has stopped".to_owned()))?;
        Ok(receipt)
    }

    /// Submits and waits for the commit.
    pub async fn commit(&self, batch: Batch) -> Result<CommitOutcome, CommitFailed> {
        let receipt = self.submit(batch).await?;
        receipt
            .await
            .map_err(|_| CommitFailed("writer has stopped".to_owned()))?
    }
}

/// First pause after a failed commit; doubles up to [`MAX_FAILURE_PAUSE`].
const FIRST_FAILURE_PAUSE: Duration = Duration::from_millis(100);
/// Longest pause between commits while the store keeps failing.
const MAX_FAILURE_PAUSE: Duration = Duration::from_secs(5);

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Submission>, config: WriterConfig) {
    // While the store fails, pause between attempts: every failure sends inputs back to be
    // redelivered (AMQP nack) or retried (HTTP 503), and a hot loop would only add load.
    let mut pause = Duration::ZERO;
    while let Some(first) = rx.recv().await {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let mut group = vec![first];
        let mut inputs = group[0].batch.len();
        while inputs < config.max_records_per_commit {
            match rx.try_recv() {
                Ok(next) => {
                    inputs += next.batch.len();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let (batches, replies): (Vec<Batch>, Vec<_>) =
            group.into_iter().map(|s| (s.batch, s.reply)).unzip();
        let started = StdInstant::now();
        let result = store.commit(&batches).await;
        metrics::histogram!(m::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(m::COMMIT_INPUTS).record(inputs as f64);
        match result {
            Ok(outcomes) => {
                pause = Duration::ZERO;
                for ((reply, outcome), batch) in replies.into_iter().zip(outcomes).zip(&batches) {
                    m::record_outcome(batch, &outcome);
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                let message = format!("{:#}", anyhow_like(&error));
                tracing::warn!(error = %message, inputs, "store commit failed; inputs will be redelivered");
                metrics::counter!(m::COMMIT_FAILURES).increment(1);
                pause = (pause * 2).clamp(FIRST_FAILURE_PAUSE, MAX_FAILURE_PAUSE);
                for reply in replies {
                    let _ = reply.send(Err(CommitFailed(message.clone())));
                }
            }
        }
    }
}

/// Renders an error with its source chain: `a: b: c`.
pub(crate) fn anyhow_like(error: &(dyn std::error::Error + 'static)) -> impl std::fmt::Display {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::record::{Gap, Source};
    use crate::store::{QuarantineEntry, StatusSummary, StoreError, StoreFuture, StoredFact};
    use crate::time::Instant;

    /// Fails the first `failures` commits, then succeeds.
    #[derive(Debug)]
    struct Flaky {
        failures: u32,
        calls: AtomicU32,
    }

    fn unused<T>() -> StoreFuture<'static, T> {
        Box::pin(async { Err(StoreError::Query(sqlx::Error::PoolClosed)) })
    }

    impl Store for Flaky {
        fn commit<'a>(&'a self, batches: &'a [Batch]) -> StoreFuture<'a, Vec<CommitOutcome>> {
            Box::pin(async move {
                if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
                    return Err(StoreError::Query(sqlx::Error::PoolTimedOut));
                }
                Ok(batches
                    .iter()
                    .map(|_| CommitOutcome {
                        records: 1,
                        ..Default::default()
                    })
                    .collect())
            })
        }
        fn open_gap<'a>(&'a self, _: Source, _: Instant, _: &'a str) -> StoreFuture<'a, i64> {
            unused()
        }
        fn close_gap(&self, _: i64, _: Instant) -> StoreFuture<'_, ()> {
            unused()
        }
        fn record_gap<'a>(
            &'a self,
            _: Source,
            _: Instant,
            _: Instant,
            _: &'a str,
        ) -> StoreFuture<'a, bool> {
            unused()
        }
        fn close_stale_gaps(&self, _: Source, _: Instant) -> StoreFuture<'_, u64> {
            unused()
        }
        fn gaps(&self, _: u32) -> StoreFuture<'_, Vec<Gap>> {
            unused()
        }
        fn heartbeat<'a>(
            &'a self,
            _: Source,
            _: &'a str,
            _: Instant,
            _: Instant,
        ) -> StoreFuture<'a, ()> {
            unused()
        }
        fn heartbeats(&self, _: Source) -> StoreFuture<'_, Vec<crate::store::Heartbeat>> {
            unused()
        }
        fn status(&self) -> StoreFuture<'_, StatusSummary> {
            unused()
        }
        fn quarantine_list(&self, _: u32) -> StoreFuture<'_, Vec<QuarantineEntry>> {
            unused()
        }
        fn quarantine_get(&self, _: i64) -> StoreFuture<'_, Option<QuarantineEntry>> {
            unused()
        }
        fn facts(&self, _: u32) -> StoreFuture<'_, Vec<StoredFact>> {
            unused()
        }
        fn resources_until(
            &self,
            _: Instant,
        ) -> crate::store::StoreStream<'_, crate::store::ResourceFacts> {
            Box::pin(futures_lite::stream::empty())
        }
        fn coverage(&self) -> StoreFuture<'_, crate::store::Coverage> {
            unused()
        }
        fn gaps_overlapping(&self, _: Instant, _: Instant) -> StoreFuture<'_, Vec<Gap>> {
            unused()
        }
        crate::test_support::store_methods_failing_with!(unused);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_reach_every_submitter_and_the_writer_backs_off_then_recovers() {
        let store = Arc::new(Flaky {
            failures: 3,
            calls: AtomicU32::new(0),
        });
        let (writer, task) = Writer::spawn(store.clone(), WriterConfig::default());
        let started = tokio::time::Instant::now();
        for _ in 0..3 {
            let error = writer.commit(Batch::default()).await.unwrap_err();
            assert!(error.0.contains("store query failed"), "{error}");
        }
        let ok = writer.commit(Batch::default()).await.unwrap();
        assert_eq!(ok.records, 1);
        // Pauses of 100, 200 and 400 ms came between the four attempts.
        assert_eq!(started.elapsed(), Duration::from_millis(700));
        drop(writer);
        task.await.unwrap();
        assert_eq!(store.calls.load(Ordering::SeqCst), 4);
    }
}
