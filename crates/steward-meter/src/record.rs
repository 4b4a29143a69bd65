//! What the ingest stores: raw records (the evidence), quarantine entries (what could not be
//! read) and gaps (windows in which a source could not receive).
//!
//! Every accepted input becomes exactly one [`RawRecord`] with a [`RawRecord::dedup_key`]:
//! - `msg:<message_id>` for oslo notifications *and* Ceilometer events (Ceilometer reuses the
//!   envelope `message_id`, so the same notification arriving both ways is one record);
//! - `sample:<meter>:<resource>:<timestamp µs>` for Ceilometer samples, whose own `id` is a new
//!   uuid on every conversion and so cannot identify a redelivered sample.

use sha2::{Digest, Sha256};

use crate::facts::Fact;
use crate::time::Instant;

/// The ingest path an input arrived by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Steward's own queue on RabbitMQ.
    Amqp,
    /// Ceilometer's HTTP publisher.
    Http,
    /// The reconciler, reading the OpenStack APIs.
    Reconcile,
}

impl Source {
    /// The stable name used in the store, metrics and `meter status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Amqp => "amqp",
            Self::Http => "http",
            Self::Reconcile => "reconcile",
        }
    }

    /// Parses [`Source::as_str`] back.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "amqp" => Some(Self::Amqp),
            "http" => Some(Self::Http),
            "reconcile" => Some(Self::Reconcile),
            _ => None,
        }
    }
}

/// What kind of input a raw record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// An oslo.messaging notification (envelope 1.0 or 2.0).
    Notification,
    /// A Ceilometer event.
    CeilometerEvent,
    /// A Ceilometer sample.
    CeilometerSample,
    /// What an OpenStack API listing said about one resource (the reconciler's evidence).
    ApiObservation,
}

impl RecordKind {
    /// The stable name used in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notification => "notification",
            Self::CeilometerEvent => "ceilometer_event",
            Self::CeilometerSample => "ceilometer_sample",
            Self::ApiObservation => "api_observation",
        }
    }
}

/// One accepted input, verbatim, with the envelope fields parsed out.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    /// Unique key; see the module docs.
    pub dedup_key: String,
    /// The ingest path.
    pub source: Source,
    /// The kind of input.
    pub kind: RecordKind,
    /// Envelope or event `message_id`.
    pub message_id: Option<String>,
    /// AMQP exchange it was published to.
    pub exchange: Option<String>,
    /// AMQP routing key.
    pub routing_key: Option<String>,
    /// `1.0` or `2.0` for oslo envelopes.
    pub envelope_version: Option<String>,
    /// Envelope `publisher_id`.
    pub publisher_id: Option<String>,
    /// Event type, or meter name for samples.
    pub event_type: Option<String>,
    /// Envelope priority (`INFO`, `ERROR`, …).
    pub priority: Option<String>,
    /// Envelope timestamp, event `generated`, or sample `timestamp`.
    pub emitted_at: Option<Instant>,
    /// When Steward received it.
    pub received_at: Instant,
    /// The input as received (for a Ceilometer list, this item's own text), except that
    /// credentials are scrubbed out of it (see [`crate::scrub`]).
    pub body: String,
    /// The JSON paths whose values were scrubbed from `body`, comma-separated; `None` when the
    /// body is exactly as received.
    pub scrubbed: Option<String>,
}

/// A raw record and the facts derived from it, committed together.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The record.
    pub record: RawRecord,
    /// Its facts (none for event types without billing meaning).
    pub facts: Vec<Fact>,
}

/// An input that could not be decoded, kept with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The ingest path.
    pub source: Source,
    /// Why it was not accepted, naming the field where possible.
    pub reason: String,
    /// AMQP exchange, when it came from RabbitMQ.
    pub exchange: Option<String>,
    /// AMQP routing key.
    pub routing_key: Option<String>,
    /// When Steward received it.
    pub received_at: Instant,
    /// The bytes as received.
    pub body: Vec<u8>,
}

impl Quarantined {
    /// `q` with credentials scrubbed textually out of its body (the body may not be JSON); the
    /// reason says so when anything was scrubbed.
    pub fn scrubbed(mut q: Quarantined, scrubber: &crate::scrub::Scrubber) -> Quarantined {
        if scrubber.scrub_text(&mut q.body) {
            q.reason
                .push_str("; credentials were scrubbed from the body");
        }
        q
    }

    /// Content digest: a redelivered copy of the same bad body is quarantined once.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.source.as_str().as_bytes());
        hasher.update([0]);
        hasher.update(&self.body);
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The outcome of decoding one input.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// Store it (and its facts).
    Accepted(Accepted),
    /// Keep it in quarantine.
    Quarantined(Quarantined),
}

/// Inputs to commit in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Records with their facts.
    pub accepted: Vec<Accepted>,
    /// Quarantine entries.
    pub quarantined: Vec<Quarantined>,
}

impl Batch {
    /// Adds one decoded input.
    pub fn push(&mut self, decoded: Decoded) {
        match decoded {
            Decoded::Accepted(a) => self.accepted.push(a),
            Decoded::Quarantined(q) => self.quarantined.push(q),
        }
    }

    /// Number of inputs (accepted + quarantined).
    pub fn len(&self) -> usize {
        self.accepted.len() + self.quarantined.len()
    }

    /// True when the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves everything of `other` into this batch.
    pub fn append(&mut self, other: &mut Batch) {
        self.accepted.append(&mut other.accepted);
        self.quarantined.append(&mut other.quarantined);
    }
}

/// A window in which a source could not receive (broker unreachable, Steward not running, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Store id.
    pub id: i64,
    /// The source that was blind.
    pub source: Source,
    /// Start of the window.
    pub started_at: Instant,
    /// End of the window; `None` while it is still open.
    pub ended_at: Option<Instant>,
    /// What caused it, in words.
    pub cause: String,
}
