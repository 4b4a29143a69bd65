//! Metric names and the helpers that record them.
//!
//! Prometheus conventions: counters end in `_total`, labels are low-cardinality (`source` is
//! `amqp` or `http`; never a project or resource id). The binary installs the recorder and
//! serves it at `/metrics`.

use crate::record::Batch;
use crate::store::CommitOutcome;

/// Inputs received, before decoding (`source`).
pub const RECEIVED: &str = "steward_ingest_received_total";
/// Raw records newly committed (`source`).
pub const COMMITTED: &str = "steward_ingest_committed_total";
/// Inputs recognised as already stored (`source`).
pub const DUPLICATES: &str = "steward_ingest_duplicates_total";
/// Inputs quarantined (`source`).
pub const QUARANTINED: &str = "steward_ingest_quarantined_total";
/// Facts newly committed (`source`).
pub const FACTS: &str = "steward_ingest_facts_total";
/// Time from receiving an input to acknowledging it (`source`), seconds.
pub const ACK_LATENCY_SECONDS: &str = "steward_ingest_ack_latency_seconds";
/// Inputs per AMQP batch.
pub const BATCH_SIZE: &str = "steward_ingest_batch_size";
/// Inputs per store transaction.
pub const COMMIT_INPUTS: &str = "steward_store_commit_inputs";
/// Store transaction duration, seconds.
pub const COMMIT_SECONDS: &str = "steward_store_commit_seconds";
/// Failed store transactions.
pub const COMMIT_FAILURES: &str = "steward_store_commit_failures_total";
/// 1 while connected to RabbitMQ, else 0.
pub const AMQP_CONNECTED: &str = "steward_amqp_connected";
/// The AMQP prefetch in force (sized by bytes in flight).
pub const AMQP_PREFETCH: &str = "steward_amqp_prefetch";
/// AMQP connection attempts that failed.
pub const AMQP_CONNECT_FAILURES: &str = "steward_amqp_connect_failures_total";
/// Gaps recorded (`source`).
pub const GAPS: &str = "steward_gaps_total";
/// Gaps currently open (`source`).
pub const GAPS_OPEN: &str = "steward_gaps_open";
/// Reconciler runs (`result`: `ok`, `problems`, `failed`).
pub const RECONCILE_RUNS: &str = "steward_reconcile_runs_total";
/// Facts the reconciler wrote (`origin`: `reconciled`, `estimated`).
pub const RECONCILE_FACTS: &str = "steward_reconcile_facts_total";
/// When the last reconciler run finished that listed everything, Unix seconds.
pub const RECONCILE_LAST_COMPLETE: &str = "steward_reconcile_last_complete_timestamp_seconds";
/// Billing periods this process closed.
pub const PERIODS_CLOSED: &str = "steward_periods_closed_total";
/// Corrections of closed periods this process stored.
pub const PERIOD_CORRECTIONS: &str = "steward_period_corrections_total";
/// Ended periods past their grace that are not closed yet (awaiting a reconciliation).
pub const PERIODS_AWAITING_CLOSE: &str = "steward_periods_awaiting_close";
/// The end of the newest closed period, Unix seconds.
pub const LAST_CLOSED_PERIOD_END: &str = "steward_last_closed_period_end_timestamp_seconds";
/// Delivery attempts by sink and outcome (`confirmed`, `planned` = to retry,
/// `failed-permanent`).
pub const DELIVERIES: &str = "steward_deliveries_total";
/// Outbox rows that ended `failed-permanent`, per sink.
pub const DELIVERIES_FAILED: &str = "steward_outbox_failed_permanent";
/// Events a Ceilometer-format forwarder delivered (confirmed by the consumer), per sink.
pub const FORWARDED: &str = "steward_forwarded_events_total";
/// Forwarding requests that failed (retried), per sink.
pub const FORWARD_ERRORS: &str = "steward_forward_errors_total";
/// Stored events a forwarder has not delivered yet, per sink.
pub const FORWARD_LAG: &str = "steward_forward_lag_events";
/// HTTP ingest requests by answer class (`status`: `2xx`, `400`, `401`, `408`, `413`, `503`).
pub const HTTP_REQUESTS: &str = "steward_http_ingest_requests_total";

/// Registers descriptions (units and help texts) for every metric.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(RECEIVED, "Inputs received, before decoding.");
    describe_counter!(COMMITTED, "Raw records newly committed to the store.");
    describe_counter!(
        DUPLICATES,
        "Inputs recognised as already stored (redeliveries, replays)."
    );
    describe_counter!(
        QUARANTINED,
        "Inputs that could not be decoded, kept in quarantine."
    );
    describe_counter!(FACTS, "Facts newly committed.");
    describe_histogram!(
        ACK_LATENCY_SECONDS,
        Unit::Seconds,
        "Time from receiving an input to acknowledging it after commit."
    );
    describe_histogram!(BATCH_SIZE, "Inputs per AMQP batch.");
    describe_histogram!(COMMIT_INPUTS, "Inputs per store transaction.");
    describe_histogram!(COMMIT_SECONDS, Unit::Seconds, "Store transaction duration.");
    describe_counter!(COMMIT_FAILURES, "Store transactions that failed.");
    describe_gauge!(AMQP_CONNECTED, "1 while connected to RabbitMQ.");
    describe_counter!(
        AMQP_CONNECT_FAILURES,
        "Failed AMQP connection attempts, by reason: unreachable, authentication_refused, \
         vhost_missing, vhost_access_refused, tls, refused, other."
    );
    describe_gauge!(
        AMQP_PREFETCH,
        "AMQP prefetch in force, sized so that prefetch x message size stays within the budget."
    );
    describe_counter!(
        GAPS,
        "Gaps recorded (windows in which a source could not receive)."
    );
    describe_gauge!(GAPS_OPEN, "Gaps currently open.");
    describe_counter!(HTTP_REQUESTS, "HTTP ingest requests by answer.");
    describe_counter!(
        RECONCILE_RUNS,
        "Reconciler runs by result: ok, problems (a listing failed), failed (store)."
    );
    describe_counter!(
        RECONCILE_FACTS,
        "Facts the reconciler wrote from the OpenStack APIs, by origin."
    );
    describe_counter!(
        PERIODS_CLOSED,
        "Billing periods this process closed (with a completeness statement)."
    );
    describe_counter!(
        PERIOD_CORRECTIONS,
        "Corrections of closed periods this process stored (facts that arrived after the close)."
    );
    describe_counter!(
        DELIVERIES,
        "Delivery attempts of closed reports and corrections, by sink and outcome."
    );
    describe_counter!(
        FORWARDED,
        "Events forwarded in Ceilometer format and confirmed by the consumer, per sink."
    );
    describe_counter!(
        FORWARD_ERRORS,
        "Forwarding requests that failed and will be retried, per sink."
    );
    describe_gauge!(
        FORWARD_LAG,
        "Stored events a forwarder has not delivered yet, per sink (alert when it only grows)."
    );
    describe_gauge!(
        DELIVERIES_FAILED,
        "Outbox rows that failed for good (a refused record), per sink: they need a person."
    );
    describe_gauge!(
        PERIODS_AWAITING_CLOSE,
        "Ended periods past their grace that are not closed (awaiting a clean reconciliation)."
    );
    describe_gauge!(
        LAST_CLOSED_PERIOD_END,
        Unit::Seconds,
        "The end of the newest closed billing period."
    );
    describe_gauge!(
        RECONCILE_LAST_COMPLETE,
        Unit::Seconds,
        "When the last reconciler run that listed every configured resource type finished."
    );
}

/// Histogram buckets (seconds) for latencies, and for batch sizes.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for batch and commit sizes.
pub const SIZE_BUCKETS: &[f64] = &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0];

/// Makes every documented series exist from the start, at 0: an alert on
/// `steward_amqp_connected == 0` must fire when the broker is unreachable from the first
/// second, not only after a first successful connect.
pub fn start_at_zero(amqp_enabled: bool) {
    if amqp_enabled {
        metrics::gauge!(AMQP_CONNECTED).set(0.0);
        for reason in crate::ingest::amqp::failure::FailureKind::ALL {
            metrics::counter!(AMQP_CONNECT_FAILURES, "reason" => reason.as_str()).absolute(0);
        }
    }
    for source in ["amqp", "http"] {
        for counter in [RECEIVED, COMMITTED, DUPLICATES, QUARANTINED, FACTS, GAPS] {
            metrics::counter!(counter, "source" => source).absolute(0);
        }
        metrics::gauge!(GAPS_OPEN, "source" => source).set(0.0);
    }
    metrics::counter!(COMMIT_FAILURES).absolute(0);
    for result in ["ok", "problems", "failed"] {
        metrics::counter!(RECONCILE_RUNS, "result" => result).absolute(0);
    }
    for origin in ["reconciled", "estimated"] {
        metrics::counter!(RECONCILE_FACTS, "origin" => origin).absolute(0);
    }
    for status in ["2xx", "400", "401", "408", "413", "503"] {
        metrics::counter!(HTTP_REQUESTS, "status" => status).absolute(0);
    }
}

pub(crate) fn record_outcome(batch: &Batch, outcome: &CommitOutcome) {
    let source = match (batch.accepted.first(), batch.quarantined.first()) {
        (Some(a), _) => a.record.source.as_str(),
        (None, Some(q)) => q.source.as_str(),
        (None, None) => return,
    };
    metrics::counter!(COMMITTED, "source" => source).increment(outcome.records);
    metrics::counter!(DUPLICATES, "source" => source).increment(outcome.duplicates);
    metrics::counter!(FACTS, "source" => source).increment(outcome.facts);
    metrics::counter!(QUARANTINED, "source" => source)
        .increment((batch.quarantined.len() + outcome.rejected.len()) as u64);
}
