//! Fuzz harnesses: what must hold for *any* input to the decoders, checked by panicking.
//!
//! The same functions run under `cargo fuzz` (the targets in `fuzz/`, coverage-guided, for long
//! runs: `scripts/fuzz`) and under proptest in the test suite (a bounded run on every
//! `scripts/test`, from real captures mutated and from raw bytes). A harness never panics on
//! its own account: a panic is a bug found in Steward.
//!
//! Invariants checked:
//! - **AMQP deliveries** ([`amqp_delivery`]): every body is either accepted or quarantined with
//!   a reason; a quarantined body is kept byte for byte unless credentials were scrubbed (and
//!   the reason says so); an accepted record keeps the body as received unless it lists what
//!   it scrubbed; facts name a resource, an event type, and a time inside the years 0–9999;
//!   decoding is deterministic.
//! - **HTTP posts** ([`http_post`]): the same for each item, and the summary counts agree
//!   with the items handed out.
//! - **Timestamps** ([`timestamp`]): parsing never panics; a parsed time prints as RFC 3339 and
//!   parses back to itself.

use crate::ingest::amqp::decode_delivery;
use crate::ingest::http::{Expect, decode_stream};
use crate::record::{Accepted, Decoded, Source};
use crate::scrub::Scrubber;
use crate::time::{Instant, parse_timestamp, parse_timestamp_value};

/// Exchanges and routing keys a delivery is said to come from (chosen by the first byte).
const ROUTES: [(&str, &str); 6] = [
    ("nova", "notifications.info"),
    ("nova", "versioned_notifications.info"),
    ("cinder", "notifications.info"),
    ("neutron", "notifications.error"),
    ("octavia", "notifications.info"),
    ("glance", "notifications.info"),
];

/// The latest instant Steward represents (9999-12-31T23:59:59.999999Z).
const LATEST_MICROS: i64 = 253_402_300_799_999_999;

/// Received "now", fixed so that runs repeat.
const RECEIVED: Instant = Instant(1_764_000_000_000_000);

fn check_accepted(a: &Accepted, input: &[u8]) {
    let record = &a.record;
    assert!(
        !record.dedup_key.is_empty(),
        "an accepted record has a dedup key"
    );
    if record.scrubbed.is_none() {
        assert_eq!(
            record.body.as_bytes(),
            input,
            "an unscrubbed body is kept as received"
        );
    }
    for fact in &a.facts {
        assert!(
            !fact.resource_id.is_empty(),
            "a fact names its resource: {fact:?}"
        );
        assert!(!fact.event_type.is_empty(), "a fact names its event type");
        let t = fact.effective_at.micros();
        assert!(
            (-62_135_596_800_000_000..=LATEST_MICROS).contains(&t),
            "effective time {t} outside 0001..9999"
        );
        assert!(!fact.semantic_key().is_empty());
    }
}

fn check_decoded(decoded: &Decoded, input: &[u8]) {
    match decoded {
        Decoded::Accepted(a) => check_accepted(a, input),
        Decoded::Quarantined(q) => {
            assert!(
                !q.reason.trim().is_empty(),
                "a quarantined input has a reason"
            );
            if !q.reason.contains("credentials were scrubbed") {
                assert_eq!(q.body, input, "a quarantined body is kept byte for byte");
            }
        }
    }
}

/// One AMQP delivery: the first byte picks the exchange and routing key, the rest is the body.
pub fn amqp_delivery(data: &[u8]) {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    let (exchange, routing_key) = ROUTES[usize::from(route) % ROUTES.len()];
    let scrubber = Scrubber::default();
    let decoded = decode_delivery(body, exchange, routing_key, RECEIVED, &scrubber);
    check_decoded(&decoded, body);
    if let Decoded::Quarantined(q) = &decoded {
        assert_eq!(q.source, Source::Amqp);
        assert_eq!(q.exchange.as_deref(), Some(exchange));
    }
    let again = decode_delivery(body, exchange, routing_key, RECEIVED, &scrubber);
    assert_eq!(decoded, again, "decoding is deterministic");
}

/// One Ceilometer HTTP post: the first byte picks events or samples and the chunk size, the
/// rest is the body.
pub fn http_post(data: &[u8]) {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let expect = if choice & 1 == 0 {
        Expect::Events
    } else {
        Expect::Samples
    };
    let chunk_items = 1 + usize::from(choice >> 1) % 8;
    let scrubber = Scrubber::default();
    let mut handed_out = 0usize;
    let mut quarantined = 0usize;
    let summary = decode_stream(body, expect, RECEIVED, &scrubber, chunk_items, |chunk| {
        assert!(!chunk.is_empty(), "no empty chunks");
        assert!(chunk.len() <= chunk_items, "chunks are bounded");
        for decoded in &chunk {
            match decoded {
                Decoded::Accepted(a) => {
                    assert!(!a.record.dedup_key.is_empty());
                    for fact in &a.facts {
                        assert!(!fact.resource_id.is_empty(), "{fact:?}");
                        assert!(fact.effective_at.micros() <= LATEST_MICROS);
                    }
                }
                Decoded::Quarantined(q) => {
                    assert!(!q.reason.trim().is_empty());
                    assert_eq!(q.source, Source::Http);
                    quarantined += 1;
                }
            }
        }
        handed_out += chunk.len();
        true
    });
    assert!(
        summary.malformed <= summary.items,
        "{summary:?}: more malformed than items"
    );
    assert!(
        handed_out >= 1 || body.iter().all(u8::is_ascii_whitespace) || summary.items == 0,
        "a non-empty post yields at least one outcome"
    );
    assert!(
        quarantined <= summary.malformed.max(1),
        "{quarantined} quarantined for {summary:?}"
    );
}

/// A timestamp as text (and, when it is a JSON number or string, as a JSON value).
pub fn timestamp(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(Some(t)) = parse_timestamp(&text) {
        assert!(t.micros() <= LATEST_MICROS, "{text:?} parsed past 9999");
        let printed = t.to_rfc3339();
        assert_eq!(
            parse_timestamp(&printed),
            Ok(Some(t)),
            "{text:?} printed as {printed} does not parse back"
        );
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(Some(t)) = parse_timestamp_value(&value)
    {
        assert!(t.micros() <= LATEST_MICROS, "{value} parsed past 9999");
        assert_eq!(parse_timestamp(&t.to_rfc3339()), Ok(Some(t)));
    }
}
