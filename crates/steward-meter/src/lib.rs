//! Metering for billing that never loses usage.
//!
//! Ceilometer loses notifications when RabbitMQ restarts and when its HTTP publisher fails.
//! This crate receives the same OpenStack notifications — from Steward's own durable queue on
//! RabbitMQ and from Ceilometer's HTTP publisher — and stores every one durably and exactly
//! once, with the billing facts derived from it:
//!
//! - [`ingest`]: the AMQP and HTTP sources and the writer; inputs are acknowledged only after
//!   their commit;
//! - [`record`]: raw records, quarantine entries and gaps;
//! - [`facts`]: normalisation of nova, cinder, glance, neutron and octavia events into facts
//!   with a semantic dedup key;
//! - [`store`]: the [`store::Store`] trait with SQLite and PostgreSQL backends;
//! - [`serve`]: `steward meter serve`.
//!
//! ```
//! use steward_meter::ingest::amqp::decode_delivery;
//! use steward_meter::record::Decoded;
//! use steward_meter::time::Instant;
//!
//! // An oslo.messaging 2.0 envelope: the notification is a JSON *string* inside it.
//! let notification = serde_json::json!({
//!     "message_id": "m-1",
//!     "event_type": "compute.instance.delete.end",
//!     "priority": "INFO",
//!     "timestamp": "2023-05-03 10:11:12.123456",
//!     "payload": {"instance_id": "vm-1", "tenant_id": "p-1",
//!                 "terminated_at": "2023-05-03T10:11:11.000000"},
//! });
//! let body = serde_json::json!({"oslo.version": "2.0", "oslo.message": notification.to_string()});
//! let scrubber = steward_meter::scrub::Scrubber::default();
//! let decoded = decode_delivery(body.to_string().as_bytes(), "nova", "notifications.info",
//!                               Instant::now(), &scrubber);
//! let Decoded::Accepted(accepted) = decoded else { panic!("quarantined") };
//! assert_eq!(accepted.record.dedup_key, "msg:m-1");
//! assert_eq!(accepted.facts[0].semantic_key(), "instance/vm-1/deleted/1683108671");
//! assert_eq!(accepted.facts[0].project_id.as_deref(), Some("p-1"));
//! ```

#![deny(missing_docs)]

pub mod close;
pub mod config;
pub mod facts;
pub mod fuzzing;
pub mod ingest;
pub mod metrics;
pub mod record;
pub mod report;
pub mod scrub;
pub mod serve;
pub mod server;
pub mod sinks;
pub mod store;
#[cfg(test)]
mod test_support;
pub mod time;
pub mod usage;

/// The name of the host this process runs on (for lock files and replica ids); empty where the
/// kernel does not say.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}
