//! Acknowledgement of AMQP deliveries — only here, and only with the commit result in hand.
//!
//! Batches reach this task in the order they were submitted to the writer, and the writer
//! commits in that order, so acknowledging batch N with `multiple=true` covers exactly the
//! deliveries of batches ≤ N, all of which are committed. On a failed commit the batch is
//! nacked with requeue (a temporary store failure); malformed inputs never fail a commit — they
//! were quarantined in the same transaction and are acknowledged with the rest.

use std::time::Instant as StdInstant;

use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::mpsc;

use crate::ingest::writer::CommitReceipt;
use crate::metrics as m;

/// A submitted batch waiting for its commit.
#[derive(Debug)]
pub(crate) struct PendingAck {
    /// Resolves when the writer committed (or failed) the batch.
    pub(crate) receipt: CommitReceipt,
    /// The acker of the batch's last delivery (acks all earlier ones with `multiple`).
    pub(crate) last: Acker,
    /// When the batch's first delivery arrived.
    pub(crate) first_received: StdInstant,
}

/// Acknowledges batches in order until the sender side is dropped. Returns the number of
/// deliveries batches that could not be acknowledged (the connection was gone: they will be
/// redelivered and recognised as duplicates).
pub(crate) async fn run(mut pending: mpsc::Receiver<PendingAck>) -> u64 {
    let mut failed = 0;
    while let Some(p) = pending.recv().await {
        let committed = match p.receipt.await {
            Ok(Ok(_)) => true,
            Ok(Err(error)) => {
                tracing::warn!(%error, "batch not committed; nacking it for redelivery");
                false
            }
            Err(_) => {
                tracing::warn!("writer stopped before committing a batch; it will be redelivered");
                false
            }
        };
        let result = if committed {
            p.last.ack(BasicAckOptions { multiple: true }).await
        } else {
            p.last
                .nack(BasicNackOptions {
                    multiple: true,
                    requeue: true,
                })
                .await
        };
        match result {
            Ok(_) if committed => {
                metrics::histogram!(m::ACK_LATENCY_SECONDS, "source" => "amqp")
                    .record(p.first_received.elapsed().as_secs_f64());
            }
            Ok(_) => {}
            Err(error) => {
                failed += 1;
                tracing::warn!(%error, "cannot acknowledge batch; the broker will redeliver it");
            }
        }
    }
    failed
}
