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

/// Items handed to the writer at a time while a post is decoded.
pub const CHUNK_ITEMS: usize = 1000;

/// Malformed items of one post quarantined one by one; beyond this many, the whole post is kept
/// as one more entry instead, so a hostile post of millions of tiny bad items costs its own
/// size in the store and in memory, not hundreds of bytes per item.
pub const MAX_ITEM_QUARANTINE: usize = 100;

/// What a decoded post held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PostSummary {
    /// Items in the post.
    pub items: usize,
    /// Items that could not be decoded.
    pub malformed: usize,
}

/// Decodes a whole POST body into one decoded entry per item (see [`decode_stream`]).
pub fn decode_body(
    body: &[u8],
    expect: Expect,
    received_at: Instant,
    scrubber: &Scrubber,
) -> Vec<Decoded> {
    let mut all = Vec::new();
    decode_stream(body, expect, received_at, scrubber, CHUNK_ITEMS, |chunk| {
        all.extend(chunk);
        true
    });
    all
}

/// Decodes a POST body item by item, handing chunks of at most `chunk_items` decoded items to
/// `sink` as it goes (memory stays bounded by the chunk, whatever the item count); stops early
/// when `sink` returns false. A body that is not a JSON list or object is one quarantine entry.
/// Malformed items beyond [`MAX_ITEM_QUARANTINE`] are covered by one entry holding the whole
/// post.
pub fn decode_stream(
    body: &[u8],
    expect: Expect,
    received_at: Instant,
    scrubber: &Scrubber,
    chunk_items: usize,
    mut sink: impl FnMut(Vec<Decoded>) -> bool,
) -> PostSummary {
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
        Err(e) => {
            sink(vec![quarantine(format!("body is not UTF-8: {e}"), body)]);
            return PostSummary {
                items: 1,
                malformed: 1,
            };
        }
    };
    let is_list = text.trim_start().starts_with('[');
    // Validate the whole document first (without building it), so that a post truncated at the
    // end is kept whole instead of being stored in part.
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        let what = if is_list { "a JSON array" } else { "JSON" };
        sink(vec![quarantine(format!("body is not {what}: {e}"), body)]);
        return PostSummary {
            items: 1,
            malformed: 1,
        };
    }
    let mut summary = PostSummary::default();
    let mut chunk = Vec::with_capacity(chunk_items.min(1024));
    let mut open = true;
    let mut handle = |raw: &RawValue, chunk: &mut Vec<Decoded>| -> bool {
        let index = summary.items;
        summary.items += 1;
        let item = raw.get();
        let result = match expect {
            Expect::Events => decode_event(item, received_at, scrubber),
            Expect::Samples => decode_sample(item, received_at, scrubber),
        };
        match result {
            Ok(accepted) => chunk.push(Decoded::Accepted(accepted)),
            Err(reason) => {
                summary.malformed += 1;
                if summary.malformed <= MAX_ITEM_QUARANTINE {
                    chunk.push(quarantine(
                        format!("item {index}: {reason}"),
                        item.as_bytes(),
                    ));
                }
            }
        }
        if chunk.len() >= chunk_items.max(1) {
            open = sink(std::mem::take(chunk));
        }
        open
    };
    if is_list {
        let mut de = serde_json::Deserializer::from_str(text);
        let _ = serde::Deserializer::deserialize_seq(
            &mut de,
            ItemVisitor(|raw: &RawValue| handle(raw, &mut chunk)),
        );
    } else if let Ok(item) = serde_json::from_str::<&RawValue>(text) {
        handle(item, &mut chunk);
    }
    if summary.malformed > MAX_ITEM_QUARANTINE {
        chunk.push(quarantine(
            format!(
                "{} of {} items are malformed; the first {MAX_ITEM_QUARANTINE} are kept one by \
                 one, this entry keeps the whole post",
                summary.malformed, summary.items
            ),
            body,
        ));
    }
    if open && !chunk.is_empty() {
        sink(chunk);
    }
    summary
}

/// Calls its function with each element of a JSON array as raw text, until it returns false.
struct ItemVisitor<F>(F);

impl<'de, F: FnMut(&RawValue) -> bool> serde::de::Visitor<'de> for ItemVisitor<F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if !(self.0)(raw) {
                break;
            }
        }
        Ok(())
    }
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
