//! Benchmarks and workloads for Steward's ingest.
//!
//! The `steward-bench` binary measures end-to-end durable ingest against the real broker and
//! the real `steward` binary (see `docs/benchmarks.md`); [`workload`] generates the notification
//! streams it and the end-to-end tests use.

#![deny(missing_docs)]
#![recursion_limit = "256"]

pub mod workload;
