//! Decoding of Ceilometer HTTP-publisher bodies (reference §3.3–3.4).
//!
//! A body is a JSON array (`batch=true`) or a single object (`batch=false`). Each item is
//! decoded on its own and kept verbatim, so one malformed item is quarantined while the others
//! are stored. Events are recognised by `event_type`; samples by `name` (or the older
//! `counter_name`). Credentials are scrubbed from what is kept ([`crate::scrub`]).

use serde_json::Value;
use serde_json::value::RawValue;

use crate::facts::{SampleView, event_facts, sample_facts};
use crate::record::{Accepted, Decoded, Quarantined, RawRecord, RecordKind, Source};
use crate::scrub::Scrubber;
use crate::time::{Instant, parse_timestamp, parse_timestamp_value};

/// What the endpoint expects in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `POST …/events`.
    Events,
    /// `POST …/samples`.
    Samples,
}

/// Decodes a whole POST body into one decoded entry per item.
pub fn decode_body(
    body: &[u8],
    expect: Expect,
    received_at: Instant,
    scrubber: &Scrubber,
) -> Vec<Decoded> {
    let quarantine = |reason: String, bytes: &[u8]| {
        Decoded::Quarantined(Quarantined::scrubbed(
            Quarantined {
                source: Source::Http,
                reason,
                exchange: None,
                routing_key: None,
                received_at,
                body: bytes.to_vec(),
            },
            scrubber,
        ))
    };
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(e) => return vec![quarantine(format!("body is not UTF-8: {e}"), body)],
    };
    let items: Vec<&RawValue> = if text.trim_start().starts_with('[') {
        match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) => items,
            Err(e) => return vec![quarantine(format!("body is not a JSON array: {e}"), body)],
        }
    } else {
        match serde_json::from_str::<&RawValue>(text) {
            Ok(item) => vec![item],
            Err(e) => return vec![quarantine(format!("body is not JSON: {e}"), body)],
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let item = raw.get();
            let result = match expect {
                Expect::Events => decode_event(item, received_at, scrubber),
                Expect::Samples => decode_sample(item, received_at, scrubber),
            };
            result.map(Decoded::Accepted).unwrap_or_else(|reason| {
                quarantine(format!("item {index}: {reason}"), item.as_bytes())
            })
        })
        .collect()
}

fn object(item: &str) -> Result<serde_json::Map<String, Value>, String> {
    match serde_json::from_str::<Value>(item) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("not a JSON object".to_owned()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

fn text<'a>(map: &'a serde_json::Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| map.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

/// The item text to store, scrubbed when it holds credentials.
fn scrubbed_item(
    item: &str,
    map: serde_json::Map<String, Value>,
    scrubber: &Scrubber,
) -> (String, Option<String>) {
    let mut value = Value::Object(map);
    match scrubber.scrub(&mut value, "") {
        Some(paths) => (value.to_string(), Some(paths)),
        None => (item.to_owned(), None),
    }
}

fn decode_event(item: &str, received_at: Instant, scrubber: &Scrubber) -> Result<Accepted, String> {
    let map = object(item)?;
    let message_id = text(&map, &["message_id"]).ok_or("event has no message_id")?;
    let event_type = text(&map, &["event_type"]).ok_or("event has no event_type")?;
    let generated = match map.get("generated") {
        Some(v) => parse_timestamp_value(v).map_err(|e| format!("field generated: {e}"))?,
        None => None,
    };
    let traits = match map.get("traits") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(traits)) => traits
            .iter()
            .enumerate()
            .map(|(i, t)| match t.as_array().map(Vec::as_slice) {
                Some([Value::String(name), _type, value]) => Ok((name.clone(), value.clone())),
                _ => Err(format!("traits[{i}] is not [name, type, value]")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err("traits is not a list".to_owned()),
    };
    let facts = event_facts(event_type, generated, &traits);
    let (message_id, event_type) = (message_id.to_owned(), event_type.to_owned());
    let (body, scrubbed) = scrubbed_item(item, map, scrubber);
    Ok(Accepted {
        record: RawRecord {
            dedup_key: format!("msg:{message_id}"),
            source: Source::Http,
            kind: RecordKind::CeilometerEvent,
            message_id: Some(message_id),
            exchange: None,
            routing_key: None,
            envelope_version: None,
            publisher_id: None,
            event_type: Some(event_type),
            priority: None,
            emitted_at: generated,
            received_at,
            body,
            scrubbed,
        },
        facts,
    })
}

fn decode_sample(
    item: &str,
    received_at: Instant,
    scrubber: &Scrubber,
) -> Result<Accepted, String> {
    let map = object(item)?;
    let meter = text(&map, &["name", "counter_name"]).ok_or("sample has no name")?;
    let resource_id = text(&map, &["resource_id"]).ok_or("sample has no resource_id")?;
    let timestamp_text = text(&map, &["timestamp"]).ok_or("sample has no timestamp")?;
    let leap = crate::time::is_leap_second(timestamp_text);
    let timestamp = parse_timestamp(timestamp_text)
        .map_err(|e| format!("field timestamp: {e}"))?
        .ok_or("sample has no timestamp")?;
    let volume = map
        .get("volume")
        .or_else(|| map.get("counter_volume"))
        .ok_or("sample has no volume")?;
    let facts = sample_facts(&SampleView {
        meter,
        sample_type: text(&map, &["type", "counter_type"]),
        unit: text(&map, &["unit", "counter_unit"]),
        volume,
        resource_id,
        project_id: text(&map, &["project_id"]),
        user_id: text(&map, &["user_id"]),
        timestamp,
        metadata: map.get("resource_metadata"),
    });
    let dedup_key = format!(
        "sample:{meter}:{resource_id}:{}{}",
        timestamp.micros(),
        if leap { ":leap" } else { "" }
    );
    let message_id = text(&map, &["id", "message_id"]).map(str::to_owned);
    let meter = meter.to_owned();
    let (body, scrubbed) = scrubbed_item(item, map, scrubber);
    Ok(Accepted {
        record: RawRecord {
            dedup_key,
            source: Source::Http,
            kind: RecordKind::CeilometerSample,
            message_id,
            exchange: None,
            routing_key: None,
            envelope_version: None,
            publisher_id: None,
            event_type: Some(meter),
            priority: None,
            emitted_at: Some(timestamp),
            received_at,
            body,
            scrubbed,
        },
        facts,
    })
}
