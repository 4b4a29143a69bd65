//! Decoding of oslo.messaging notification bodies (reference §1.1–1.3).
//!
//! Accepts envelope 2.0 (`{"oslo.version": "2.0", "oslo.message": "<JSON string>"}`) and 1.0
//! (the notification dict itself), with or without `_context_*` keys. Anything that is not an
//! oslo notification, or a billing notification whose payload cannot be read, is quarantined
//! with the reason; unknown event types are accepted with no facts. Credentials are scrubbed
//! from the body before it becomes a record or a quarantine entry ([`crate::scrub`]).

use serde_json::Value;

use crate::facts::{Notification, notification_facts};
use crate::record::{Accepted, Decoded, Quarantined, RawRecord, RecordKind, Source};
use crate::scrub::Scrubber;
use crate::time::{Instant, parse_timestamp};

/// Decodes one AMQP delivery body, scrubbing credentials out of what is kept.
pub fn decode_delivery(
    body: &[u8],
    exchange: &str,
    routing_key: &str,
    received_at: Instant,
    scrubber: &Scrubber,
) -> Decoded {
    match decode_inner(body, exchange, routing_key, received_at, scrubber) {
        Ok(accepted) => Decoded::Accepted(accepted),
        Err(reason) => Decoded::Quarantined(Quarantined::scrubbed(
            Quarantined {
                source: Source::Amqp,
                reason,
                exchange: Some(exchange.to_owned()),
                routing_key: Some(routing_key.to_owned()),
                received_at,
                body: body.to_vec(),
            },
            scrubber,
        )),
    }
}

/// The notification inside an envelope 2.0 body (`oslo.message`, decoded), `None` for a 1.0
/// body (the notification is the body itself).
pub(crate) fn inner_envelope(
    outer: &serde_json::Map<String, Value>,
) -> Result<Option<Value>, String> {
    match (outer.get("oslo.version"), outer.get("oslo.message")) {
        (Some(version), Some(message)) => {
            let version = version.as_str().unwrap_or_default();
            if version.split('.').next() != Some("2") {
                return Err(format!(
                    "unsupported oslo.version {version:?} (expected 2.x)"
                ));
            }
            let Value::String(message) = message else {
                return Err("oslo.message is not a string".to_owned());
            };
            serde_json::from_str::<Value>(message)
                .map(Some)
                .map_err(|e| format!("oslo.message is not JSON: {e}"))
        }
        _ => Ok(None),
    }
}

fn decode_inner(
    body: &[u8],
    exchange: &str,
    routing_key: &str,
    received_at: Instant,
    scrubber: &Scrubber,
) -> Result<Accepted, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    let mut outer: Value =
        serde_json::from_str(text).map_err(|e| format!("body is not JSON: {e}"))?;
    let Value::Object(outer_map) = &outer else {
        return Err("body is not a JSON object".to_owned());
    };
    let inner = inner_envelope(outer_map)?;
    let version = if inner.is_some() { "2.0" } else { "1.0" };
    let mut inner_holder = inner.unwrap_or(Value::Null);
    let envelope = if version == "1.0" {
        &outer
    } else {
        &inner_holder
    };
    let Value::Object(env) = envelope else {
        return Err("oslo.message is not a JSON object".to_owned());
    };
    let text_field = |key: &str| env.get(key).and_then(Value::as_str).map(str::to_owned);
    let message_id = text_field("message_id")
        .filter(|m| !m.is_empty())
        .ok_or("envelope has no message_id")?;
    let event_type = text_field("event_type")
        .filter(|e| !e.is_empty())
        .ok_or("envelope has no event_type")?;
    let emitted_at = match env.get("timestamp") {
        Some(Value::String(ts)) => {
            parse_timestamp(ts).map_err(|e| format!("envelope field timestamp: {e}"))?
        }
        _ => None,
    };
    let priority = text_field("priority");
    let payload = env.get("payload").unwrap_or(&Value::Null);
    let facts = notification_facts(&Notification {
        event_type: &event_type,
        priority: priority.as_deref(),
        payload,
        emitted_at,
    })
    .map_err(|e| e.to_string())?;
    let publisher_id = text_field("publisher_id");
    let (body, scrubbed) = scrubbed_body(text, &mut outer, &mut inner_holder, version, scrubber);
    Ok(Accepted {
        record: RawRecord {
            dedup_key: format!("msg:{message_id}"),
            source: Source::Amqp,
            kind: RecordKind::Notification,
            message_id: Some(message_id),
            exchange: Some(exchange.to_owned()),
            routing_key: Some(routing_key.to_owned()),
            envelope_version: Some(version.to_owned()),
            publisher_id,
            event_type: Some(event_type),
            priority,
            emitted_at,
            received_at,
            body,
            scrubbed,
        },
        facts,
    })
}

/// The body to store: `text` as received when it holds no credentials, else the scrubbed
/// envelope (for 2.0, with the scrubbed notification written back into `oslo.message`).
fn scrubbed_body(
    text: &str,
    outer: &mut Value,
    inner: &mut Value,
    version: &str,
    scrubber: &Scrubber,
) -> (String, Option<String>) {
    let mut paths = Vec::new();
    if version == "2.0" {
        if let Some(found) = scrubber.scrub(inner, "/oslo.message") {
            paths.push(found);
            if let Value::Object(map) = outer {
                map.insert("oslo.message".to_owned(), Value::String(inner.to_string()));
            }
        }
        if let Value::Object(map) = outer {
            for (key, value) in map.iter_mut().filter(|(k, _)| *k != "oslo.message") {
                let path = format!("/{key}");
                paths.extend(scrubber.scrub(value, &path));
            }
        }
    } else {
        paths.extend(scrubber.scrub(outer, ""));
    }
    if paths.is_empty() {
        (text.to_owned(), None)
    } else {
        (outer.to_string(), Some(paths.join(",")))
    }
}
