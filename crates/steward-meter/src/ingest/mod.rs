//! Ingest: the sources that receive OpenStack usage data, and the writer that commits it.
//!
//! ```text
//!  RabbitMQ ──▶ amqp::  decode ─┐                     ┌─▶ ack (multiple) after Ok
//!                               ├─▶ writer (group commit, one transaction) ─┤
//!  Ceilometer ─▶ http::  decode ┘                     └─▶ 2xx after Ok, 503 on Err
//! ```
//!
//! Every source has the same layout: `mod.rs` (config and task), `decode.rs` (bytes → records,
//! facts, quarantine entries), `ack.rs` (the only code that acknowledges, with the commit result
//! in hand) and `tests.rs`.

pub mod amqp;
pub mod http;
pub mod reconcile;
pub mod writer;

pub use writer::{CommitFailed, Writer, WriterConfig};
