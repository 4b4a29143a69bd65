//! Billing data out: the outbox and the sinks that deliver from it.
//!
//! When a period closes (and for every correction of it), the outbox gets one row per sink and
//! owner project ([`outbox::plan_period`]); each sink then delivers the row's document — the
//! project's slice of the closed report, or its part of a correction — and the row moves
//! `planned` → `confirmed`, or is retried with backoff, or ends `failed-permanent`
//! ([`outbox::after_attempt`]).
//!
//! Invariants:
//! - **Planned once**: a unique key on (sink, period, project, digest) makes planning
//!   idempotent, on one replica or several.
//! - **Delivered once per document**: a sink keys what it writes by the document's digest, so a
//!   retry after a crash between "delivered" and "outbox updated" finds its own record instead
//!   of writing a second (the file sink: the same path with the same bytes; the webhook sink:
//!   the same `webhook-id`/`Idempotency-Key`, by which the receiver recognises a replay; Odoo:
//!   a search by `ref` before every create).
//! - A document is rebuilt from the store (the closed report never changes), so the outbox holds
//!   references, never copies.
//!
//! Sinks are folders shaped alike: `file/` (atomic JSON/CSV files), `webhook/` (signed POSTs),
//! `odoo/` (draft invoices or sale orders, found by `ref` before anything is created), and
//! `ceilometer/`, which is not a document sink but streams every stored event with a durable
//! cursor.

pub mod ceilometer;
pub mod file;
pub mod http;
pub mod odoo;
pub mod outbox;
pub mod task;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;

use crate::close::correction::Correction;
use crate::report::Report;

/// One document a sink delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// A project's slice of a closed report (the report of one project, `project` set).
    Report(Box<Report>),
    /// A correction, cut to one project's delta.
    Correction {
        /// The correction, with only that project in `projects`.
        correction: Box<Correction>,
        /// The project.
        project_id: Option<String>,
    },
}

/// Why a delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    /// Worth retrying (an unreachable peer, a timeout, a 5xx, a full disk).
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help (a 4xx other than 408/429, a refused record).
    #[error("{0}")]
    Permanent(String),
}

/// A boxed future of a sink.
pub type SinkFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A destination for billing documents.
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// The name the outbox knows it by (`meter.sinks[].name`).
    fn name(&self) -> &str;
    /// Delivers `document`; returns what the sink calls the record (a path, an id). Delivering
    /// the same document twice must leave one record.
    fn deliver<'a>(
        &'a self,
        document: &'a Document,
    ) -> SinkFuture<'a, Result<String, AttemptError>>;
    /// What delivering `document` now would do at the sink, in words (`push --dry-run`):
    /// `create …`, `update …`, `no-op: …`; changes nothing. `None` when the sink cannot say.
    fn preview<'a>(&'a self, document: &'a Document) -> SinkFuture<'a, Option<String>> {
        let _ = document;
        Box::pin(async { None })
    }
}
