//! The durable store: one [`Store`] trait, two backends (SQLite, PostgreSQL).
//!
//! # Design
//!
//! The ingest commits [`Batch`]es. One call to [`Store::commit`] is one database transaction
//! holding several batches (group commit): raw records, their facts, quarantine entries and the
//! per-source counters. When it returns `Ok`, everything is durable — SQLite runs in WAL mode
//! with `synchronous=FULL`, PostgreSQL commits synchronously — and only then may the caller
//! acknowledge the inputs (see `ingest::*::ack`).
//!
//! Invariants, each enforced by a unique constraint rather than an in-memory set:
//! - `raw_records.dedup_key` is unique: a redelivered or replayed input is a no-op that is
//!   counted as a duplicate;
//! - `facts.semantic_key` is unique: the same transition arriving under different ids is one fact;
//! - `quarantine.digest` is unique: a redelivered bad body is kept once.
//!
//! A commit has three outcomes — delivered, errored (transient) and rejected (an input the
//! database refuses for what it is, which is quarantined while its batch-mates are committed);
//! see `commit.rs` for the protocol and the connection hygiene that keeps "committed" true.
//!
//! Migrations are embedded per backend and applied by [`open`].
//! The shared behaviour suite in `tests.rs` runs against both backends.

mod commit;
mod postgres;
mod sql;
mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use commit::{MAX_IDENTIFIER_BYTES, unstorable};
pub use sql::SqlStore;
pub use sqlite::{WriterLock, lock_writer};

use crate::record::{Batch, Gap, Source};
use crate::time::Instant;

/// A boxed future returned by store methods (object-safe async).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A boxed stream of store rows (object-safe async iteration).
pub type StoreStream<'a, T> =
    Pin<Box<dyn futures_lite::Stream<Item = Result<T, StoreError>> + Send + 'a>>;

/// Store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no supported backend.
    #[error("unsupported store url {0:?}: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// Could not create the folder for the SQLite file.
    #[error("cannot create store folder {path}")]
    CreateDir {
        /// The folder.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Could not connect.
    #[error("cannot open store {url}")]
    Connect {
        /// The URL with any password removed.
        url: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// Applying the embedded migrations failed.
    #[error("cannot apply store migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// Another process serves this SQLite store.
    #[error(
        "the store {path} is already served by another process ({holder}); one writer per SQLite store — use PostgreSQL for several replicas"
    )]
    InUse {
        /// The database file.
        path: String,
        /// Who holds the lock, as it wrote itself into the lock file.
        holder: String,
    },
    /// The writer lock file could not be used.
    #[error("cannot lock {path}")]
    Lock {
        /// The lock file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A read-only command was pointed at a store that does not exist.
    #[error(
        "no store at {path}: check meter.store.url (or --config); `steward meter serve` or \
         `steward meter migrate` creates it"
    )]
    Missing {
        /// The file that is not there.
        path: String,
    },
    /// The database holds no Steward schema (a read-only command does not create one).
    #[error(
        "{url} holds no Steward store: run `steward meter migrate` or `steward meter serve` first"
    )]
    NotAStore {
        /// The URL with any password removed.
        url: String,
    },
    /// The store was migrated by a newer Steward; this binary must not read or change it.
    #[error(
        "the store's schema is version {found}, newer than this binary's {supported}: use the \
         Steward release that migrated it (or newer)"
    )]
    SchemaTooNew {
        /// The store's newest applied migration.
        found: i64,
        /// The newest migration this binary knows.
        supported: i64,
    },
    /// A query failed; [`StoreError::is_rejection`] tells a refused value from a transient
    /// failure.
    #[error("store query failed")]
    Query(#[from] sqlx::Error),
}

impl StoreError {
    /// True when the database refused a *value* for what it is (a data exception, a constraint
    /// other than the dedup keys, a value too large): retrying the same input cannot succeed.
    /// Everything else — connection lost, locked, busy, disk full, I/O, serialization failure —
    /// is transient.
    pub fn is_rejection(&self) -> bool {
        match self {
            Self::Query(sqlx::Error::Encode(_)) => true,
            Self::Query(sqlx::Error::Database(db)) => {
                let Some(code) = db.code() else {
                    return false;
                };
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    // SQLite extended result codes: the primary code is the low byte.
                    // 18 SQLITE_TOOBIG, 19 SQLITE_CONSTRAINT, 20 SQLITE_MISMATCH.
                    code.parse::<i32>()
                        .is_ok_and(|c| matches!(c & 0xff, 18..=20))
                } else {
                    // PostgreSQL SQLSTATE classes: 22 data exception, 23 integrity constraint
                    // violation, 54 program limit exceeded (e.g. an index row too large).
                    matches!(code.get(..2), Some("22" | "23" | "54"))
                }
            }
            _ => false,
        }
    }
}

/// An input the store refused; it was quarantined with `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The input's dedup key.
    pub dedup_key: String,
    /// Why, naming the field or quoting the database.
    pub reason: String,
}

/// What one committed batch changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    /// New raw records.
    pub records: u64,
    /// Raw records that were already stored (redeliveries, replays).
    pub duplicates: u64,
    /// New facts.
    pub facts: u64,
    /// Facts whose semantic key was already stored.
    pub fact_duplicates: u64,
    /// Quarantine entries written (a bad body seen before is not written again).
    pub quarantined: u64,
    /// Inputs that decoded but that the store refused; each was quarantined instead of stored.
    pub rejected: Vec<Rejected>,
}

impl CommitOutcome {
    /// Adds `other` (a later commit of the same request) to this outcome.
    pub fn absorb(&mut self, other: CommitOutcome) {
        self.records += other.records;
        self.duplicates += other.duplicates;
        self.facts += other.facts;
        self.fact_duplicates += other.fact_duplicates;
        self.quarantined += other.quarantined;
        self.rejected.extend(other.rejected);
    }
}

/// Per-source ingest counters, as kept in the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceStats {
    /// `amqp` or `http`.
    pub source: String,
    /// Raw records stored.
    pub records: i64,
    /// Inputs recognised as already stored.
    pub duplicates: i64,
    /// Facts stored.
    pub facts: i64,
    /// Facts recognised as already stored.
    pub fact_duplicates: i64,
    /// Inputs quarantined.
    pub quarantined: i64,
    /// When the newest input of this source was received.
    pub last_received_at: Option<Instant>,
}

/// What the store has heard: see [`Store::coverage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coverage {
    /// When the first input was received; `None` when none was.
    pub first_input_at: Option<Instant>,
    /// When the last input was received.
    pub last_input_at: Option<Instant>,
    /// The earliest time a fact describes (replayed or late history can predate every
    /// reception).
    pub first_fact_at: Option<Instant>,
}

impl Coverage {
    /// Where the store's knowledge begins: its first input or the earliest time a fact
    /// describes, whichever is earlier. Before it, usage is unknown.
    pub fn known_from(&self) -> Option<Instant> {
        match (self.first_input_at, self.first_fact_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A quarantine entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineEntry {
    /// Store id (for `meter quarantine show`).
    pub id: i64,
    /// The ingest path.
    pub source: String,
    /// Why it was quarantined.
    pub reason: String,
    /// AMQP exchange.
    pub exchange: Option<String>,
    /// AMQP routing key.
    pub routing_key: Option<String>,
    /// When it was received.
    pub received_at: Instant,
    /// The bytes as received.
    pub body: Vec<u8>,
}

/// A fact as stored (the fields the CLI and tests read back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFact {
    /// Semantic key.
    pub semantic_key: String,
    /// Dedup key of the raw record it came from.
    pub record_key: String,
    /// Resource type name.
    pub resource_type: String,
    /// Resource id.
    pub resource_id: String,
    /// Owner project.
    pub project_id: Option<String>,
    /// Fact kind name.
    pub kind: String,
    /// Effective time.
    pub effective_at: Instant,
    /// `payload` or `envelope`.
    pub time_source: String,
    /// `notification` or `ceilometer`.
    pub origin: String,
    /// Canonical JSON attributes.
    pub attributes: String,
}

/// One fact of a [`ResourceFacts`]: the fields the usage engine reads.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct FactRow(
    /// Kind name.
    pub String,
    /// Effective time, microseconds.
    pub i64,
    /// Owner project.
    pub Option<String>,
    /// Origin name.
    pub String,
    /// Attributes.
    pub std::collections::BTreeMap<String, serde_json::Value>,
);

/// All facts of one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceFacts {
    /// Resource type name.
    pub resource_type: String,
    /// Resource id.
    pub resource_id: String,
    /// Its facts, in no particular order.
    pub facts: Vec<FactRow>,
}

/// One `serve` process's heartbeat for one source: it listened from `started_at` until at
/// least `alive_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The replica (process) id.
    pub replica: String,
    /// When it started listening.
    pub started_at: Instant,
    /// Its latest heartbeat.
    pub alive_at: Instant,
}

/// One reconciliation as recorded (see `ingest::reconcile`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileRun {
    /// When it began listing (a listing shows the cloud as of some time after this).
    pub started_at: Instant,
    /// When it had written its facts.
    pub finished_at: Instant,
    /// The resource types whose listings were complete.
    pub listed: Vec<String>,
    /// Resources the listings showed.
    pub resources_seen: i64,
    /// Facts written (reconciled and estimated).
    pub facts_written: i64,
    /// Of those, estimates.
    pub estimated: i64,
    /// Listings that failed, and why.
    pub problems: Option<String>,
}

/// A closed billing period as stored (see `crate::close`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedPeriod {
    /// Store id.
    pub id: i64,
    /// First instant of the period.
    pub start: Instant,
    /// First instant after it.
    pub end: Instant,
    /// When it was closed.
    pub closed_at: Instant,
    /// The closed report's content digest.
    pub digest: String,
    /// Canonical JSON of the product catalogue it was computed with.
    pub catalogue: String,
    /// Canonical JSON of the closed report (completeness statement included).
    pub report: String,
    /// Facts stored when it was last compared with the store.
    pub facts_seen: i64,
}

/// A closed period without its report: what `status` lists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeriodSummary {
    /// First instant of the period.
    pub start: Instant,
    /// First instant after it.
    pub end: Instant,
    /// When it was closed.
    pub closed_at: Instant,
    /// The closed report's digest.
    pub digest: String,
    /// Corrections stored since.
    pub corrections: i64,
    /// The newest correction's digest.
    pub latest_correction: Option<String>,
}

/// One stored correction of a closed period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCorrection {
    /// 1 for the first correction of the period, then 2, …
    pub sequence: i64,
    /// When it was made.
    pub created_at: Instant,
    /// The correction's content digest.
    pub digest: String,
    /// Canonical JSON of the correction document (the delta).
    pub correction: String,
    /// Canonical JSON of the full recomputed report the correction leads to.
    pub basis: String,
}

/// One document to deliver to one sink, as the outbox keeps it (see `crate::sinks::outbox`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    /// Store id.
    pub id: i64,
    /// The sink's name.
    pub sink: String,
    /// First instant of the period.
    pub period_start: Instant,
    /// First instant after it.
    pub period_end: Instant,
    /// The owner project; `None` for usage no fact names an owner of.
    pub project_id: Option<String>,
    /// `report` or `correction`.
    pub kind: String,
    /// The closed report's or the correction's content digest.
    pub digest: String,
    /// `planned`, `sent`, `confirmed` or `failed-permanent`.
    pub state: String,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// What the sink calls the delivered record.
    pub remote_id: Option<String>,
    /// Not attempted before this.
    pub next_attempt_at: Instant,
    /// When it was planned.
    pub created_at: Instant,
    /// When it last changed.
    pub updated_at: Instant,
}

/// What an outbox row becomes after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryUpdate {
    /// The new state.
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Why the attempt failed, if it did.
    pub last_error: Option<String>,
    /// What the sink calls the record, once known.
    pub remote_id: Option<String>,
    /// The next attempt, for a retry.
    pub next_attempt_at: Instant,
}

/// A place in the stored records, in the order event forwarders read them.
///
/// PostgreSQL (see migration 0008): by the writing transaction, then by emission time, then by
/// id. SQLite: by id alone (`txid` and `emitted_at` are 0): one writer commits at a time and
/// inserts each batch in emission order. Either way, whatever becomes readable after a
/// position was read sorts after it, and the events committed together go out in the order
/// their services emitted them.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct ForwardPosition {
    /// The writing transaction (PostgreSQL), 0 on SQLite.
    pub txid: i64,
    /// The record's emission time in microseconds, 0 when it has none (PostgreSQL), 0 on
    /// SQLite.
    pub emitted_at: i64,
    /// The record's id.
    pub record_id: i64,
}

/// One stored event to forward: an oslo notification or a Ceilometer event, as received
/// (credentials scrubbed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Where it is.
    pub position: ForwardPosition,
    /// `notification` or `ceilometer_event`.
    pub kind: String,
    /// The envelope's or event's `message_id`.
    pub message_id: Option<String>,
    /// The event type.
    pub event_type: Option<String>,
    /// The envelope's `publisher_id`.
    pub publisher_id: Option<String>,
    /// The envelope's `timestamp` or the event's `generated`.
    pub emitted_at: Option<Instant>,
    /// When Steward received it.
    pub received_at: Instant,
    /// The body as stored.
    pub body: String,
}

/// How far one forwarder has delivered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForwardCursor {
    /// The sink's name.
    pub sink: String,
    /// The last delivered event.
    pub position: ForwardPosition,
    /// Events delivered so far.
    pub forwarded: i64,
    /// When it last moved.
    pub updated_at: Instant,
}

/// Everything `steward meter status` shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatusSummary {
    /// Counters per source.
    pub sources: Vec<SourceStats>,
    /// Raw records in the store.
    pub records_total: i64,
    /// Facts in the store.
    pub facts_total: i64,
    /// Quarantine entries in the store.
    pub quarantined_total: i64,
    /// Gaps recorded.
    pub gaps_total: i64,
    /// Gaps still open (a source is blind right now, or Steward died during one).
    pub gaps_open: i64,
}

/// The durable store behind the ingest. See the module docs for the guarantees.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Commits the batches in one transaction; one outcome per batch, in order.
    fn commit<'a>(&'a self, batches: &'a [Batch]) -> StoreFuture<'a, Vec<CommitOutcome>>;
    /// Records the start of a gap; returns its id.
    fn open_gap<'a>(
        &'a self,
        source: Source,
        started_at: Instant,
        cause: &'a str,
    ) -> StoreFuture<'a, i64>;
    /// Records the end of a gap.
    fn close_gap(&self, id: i64, ended_at: Instant) -> StoreFuture<'_, ()>;
    /// Records a closed gap `[started_at, ended_at)` unless that very window is already recorded
    /// (several replicas may find the same one); returns whether it was new.
    fn record_gap<'a>(
        &'a self,
        source: Source,
        started_at: Instant,
        ended_at: Instant,
        cause: &'a str,
    ) -> StoreFuture<'a, bool>;
    /// Closes gaps of `source` left open by a previous process; returns how many.
    fn close_stale_gaps(&self, source: Source, ended_at: Instant) -> StoreFuture<'_, u64>;
    /// Recent gaps, newest first.
    fn gaps(&self, limit: u32) -> StoreFuture<'_, Vec<Gap>>;
    /// Records that `replica` (one `serve` process, listening since `started_at`) could receive
    /// for `source` at `at`.
    fn heartbeat<'a>(
        &'a self,
        source: Source,
        replica: &'a str,
        started_at: Instant,
        at: Instant,
    ) -> StoreFuture<'a, ()>;
    /// Every replica's heartbeat for `source`, oldest first.
    fn heartbeats(&self, source: Source) -> StoreFuture<'_, Vec<Heartbeat>>;
    /// Counters and totals for `meter status`.
    fn status(&self) -> StoreFuture<'_, StatusSummary>;
    /// Quarantine entries, newest first, without bodies' bytes beyond what is needed.
    fn quarantine_list(&self, limit: u32) -> StoreFuture<'_, Vec<QuarantineEntry>>;
    /// One quarantine entry.
    fn quarantine_get(&self, id: i64) -> StoreFuture<'_, Option<QuarantineEntry>>;
    /// Facts in store order (oldest first), at most `limit`.
    fn facts(&self, limit: u32) -> StoreFuture<'_, Vec<StoredFact>>;
    /// Every resource with a fact effective before `until`, with *all* its facts (a later
    /// fact may name the owner or date the creation of earlier time), one item per resource,
    /// ordered by resource type and id (facts inside an item in no particular order).
    /// Streamed, so a report holds one resource's facts at a time.
    fn resources_until(&self, until: Instant) -> StoreStream<'_, ResourceFacts>;
    /// What the store has heard: its first and last input (records and quarantined inputs
    /// alike) and its earliest fact.
    fn coverage(&self) -> StoreFuture<'_, Coverage>;
    /// Gaps that overlap `[start, end)` (open gaps included), oldest first.
    fn gaps_overlapping(&self, start: Instant, end: Instant) -> StoreFuture<'_, Vec<Gap>>;
    /// Records a finished reconciliation.
    fn record_reconcile_run<'a>(&'a self, run: &'a ReconcileRun) -> StoreFuture<'a, ()>;
    /// Recent reconciliations, newest first.
    fn reconcile_runs(&self, limit: u32) -> StoreFuture<'_, Vec<ReconcileRun>>;
    /// Records volume type names `(id, name)` as listed at `seen_at` (a rename replaces the
    /// old name).
    fn record_volume_types<'a>(
        &'a self,
        types: &'a [(String, String)],
        seen_at: Instant,
    ) -> StoreFuture<'a, ()>;
    /// Volume type names by id.
    fn volume_type_names(&self) -> StoreFuture<'_, std::collections::BTreeMap<String, String>>;
    /// Stores a closed period unless that period is already closed (another replica, or an
    /// earlier close); returns whether this call closed it. `period.id` is ignored.
    fn insert_closed_period<'a>(&'a self, period: &'a ClosedPeriod) -> StoreFuture<'a, bool>;
    /// The closed period `[start, end)`, if it is closed.
    fn closed_period(&self, start: Instant, end: Instant) -> StoreFuture<'_, Option<ClosedPeriod>>;
    /// Every closed period, newest first, without reports.
    fn closed_periods(&self) -> StoreFuture<'_, Vec<PeriodSummary>>;
    /// Stores a correction of closed period `period_id` unless one with its sequence exists
    /// (another replica made it first), and records `facts_seen`; returns whether it was new.
    fn insert_correction<'a>(
        &'a self,
        period_id: i64,
        correction: &'a StoredCorrection,
        facts_seen: i64,
    ) -> StoreFuture<'a, bool>;
    /// The corrections of closed period `period_id`, oldest first.
    fn corrections(&self, period_id: i64) -> StoreFuture<'_, Vec<StoredCorrection>>;
    /// Facts effective before `until` (what can change a period ending then).
    fn fact_count_before(&self, until: Instant) -> StoreFuture<'_, i64>;
    /// Records that closed period `period_id` matched the store when it held `facts_seen`
    /// facts.
    fn mark_period_checked(&self, period_id: i64, facts_seen: i64) -> StoreFuture<'_, ()>;
    /// Plans `deliveries` (state `planned`, due at `now`) unless the same (sink, period,
    /// project, digest) is planned already; returns how many were new. `id`, `state`,
    /// `attempts`, `last_error`, `remote_id` and the times of each are ignored.
    fn plan_deliveries<'a>(
        &'a self,
        deliveries: &'a [Delivery],
        now: Instant,
    ) -> StoreFuture<'a, u64>;
    /// The outbox rows of `[start, end)`, of `sink` when given, in planning order.
    fn deliveries<'a>(
        &'a self,
        sink: Option<&'a str>,
        start: Instant,
        end: Instant,
    ) -> StoreFuture<'a, Vec<Delivery>>;
    /// Rows of `sink` to attempt at `now` (`planned` or `sent`, due), oldest first.
    fn due_deliveries<'a>(
        &'a self,
        sink: &'a str,
        now: Instant,
        limit: u32,
    ) -> StoreFuture<'a, Vec<Delivery>>;
    /// Outbox rows counted per sink and state: `(sink, state, rows)`.
    fn outbox_summary(&self) -> StoreFuture<'_, Vec<(String, String, i64)>>;
    /// Records an attempt's outcome for row `id`.
    fn update_delivery<'a>(
        &'a self,
        id: i64,
        update: &'a DeliveryUpdate,
        now: Instant,
    ) -> StoreFuture<'a, ()>;
    /// The stored events (notifications and Ceilometer events) after `after` that no running
    /// transaction can still precede, in forwarding order, at most `limit`.
    fn events_after(&self, after: ForwardPosition, limit: u32)
    -> StoreFuture<'_, Vec<StoredEvent>>;
    /// How many stored events come after `after` (a forwarder's lag).
    fn events_behind(&self, after: ForwardPosition) -> StoreFuture<'_, i64>;
    /// Every forwarder's cursor, by sink name.
    fn forward_cursors(&self) -> StoreFuture<'_, Vec<ForwardCursor>>;
    /// Moves `sink`'s cursor to `to` (never backwards: a replica behind leaves it) and counts
    /// `events` more as delivered.
    fn advance_forward_cursor<'a>(
        &'a self,
        sink: &'a str,
        to: ForwardPosition,
        events: u64,
        now: Instant,
    ) -> StoreFuture<'a, ()>;
}

/// Opens an existing store for reading only: nothing is created or migrated, a missing store is
/// [`StoreError::Missing`] and a store migrated by a newer Steward is
/// [`StoreError::SchemaTooNew`]. For `status`, `gaps`, `quarantine` and `report`.
pub async fn open_read_only(
    url: &str,
    timeout: std::time::Duration,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqlStore::open_read_only(url, timeout).await?))
}

/// Opens (and migrates) the store named by `url`: `sqlite://PATH` or `postgres://…`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with_timeout(url, DEFAULT_CONNECT_TIMEOUT).await
}

/// Like [`open`], giving up on an unreachable database after `timeout`.
pub async fn open_with_timeout(
    url: &str,
    timeout: std::time::Duration,
) -> Result<Arc<dyn Store>, StoreError> {
    let store = SqlStore::open_with_timeout(url, timeout).await?;
    Ok(Arc::new(store))
}

/// How long [`open`] tries to reach the database.
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Removes passwords from a URL for messages and logs: the userinfo password and any
/// password-like query parameter (`?password=`, `sslpassword=`, …).
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &base[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    format!("{}{user}:***{}", &base[..scheme_end + 3], &base[at..])
                }
                None => base.to_owned(),
            }
        }
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if is_secret_parameter(key) => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

fn is_secret_parameter(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "pass", "pwd", "secret", "token", "key"]
        .iter()
        .any(|k| key.contains(k))
}

#[cfg(test)]
mod tests;
