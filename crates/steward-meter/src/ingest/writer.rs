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
use std::time::Instant as StdInstant;

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

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Submission>, config: WriterConfig) {
    while let Some(first) = rx.recv().await {
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
                for ((reply, outcome), batch) in replies.into_iter().zip(outcomes).zip(&batches) {
                    m::record_outcome(batch, &outcome);
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                let message = format!("{:#}", anyhow_like(&error));
                tracing::warn!(error = %message, inputs, "store commit failed; inputs will be redelivered");
                metrics::counter!(m::COMMIT_FAILURES).increment(1);
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
