//! Bounded fuzzing of the decoders on every test run (`steward_meter::fuzzing` says what must
//! hold): real captures and fixtures mutated structurally (values replaced by other types,
//! keys dropped, nested documents re-encoded, huge numbers, NUL and odd Unicode) and at the
//! byte level (flips, cuts, insertions), plus raw bytes. `STEWARD_FUZZ_CASES` sets the cases
//! per harness (default 1,000); `scripts/fuzz` runs the same harnesses coverage-guided.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::{Value, json};
use steward_meter::fuzzing;

fn cases() -> u32 {
    std::env::var("STEWARD_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

fn config() -> Config {
    Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "fuzz-regressions",
        ))),
        ..Config::default()
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// oslo.messaging's `messagingv2` wrapping of an envelope.
fn v2(envelope: &Value) -> Value {
    json!({"oslo.version": "2.0", "oslo.message": serde_json::to_string(envelope).unwrap()})
}

/// AMQP bodies: every notification fixture (as sent: oslo 1.0 and 2.0), the oslo captures and
/// the 242 real notifications of `../shared/fixtures/real`.
fn amqp_seeds() -> &'static [Value] {
    static SEEDS: OnceLock<Vec<Value>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut paths = Vec::new();
        files(&manifest().join("tests/fixtures/notifications"), &mut paths);
        let mut seeds = Vec::new();
        for path in paths {
            let envelope: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            seeds.push(v2(&envelope));
            seeds.push(envelope);
        }
        let real = manifest().join("../../../shared/fixtures/real/notifications.jsonl");
        let text = std::fs::read_to_string(&real).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (../shared must be beside the checkout)",
                real.display()
            )
        });
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let capture: Value = serde_json::from_str(line).unwrap();
            seeds.push(v2(&capture["body"]));
        }
        assert!(seeds.len() > 250, "{} seeds", seeds.len());
        seeds
    })
}

/// Ceilometer posts: the HTTP fixtures and captures.
fn http_seeds() -> &'static [Value] {
    static SEEDS: OnceLock<Vec<Value>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut paths = Vec::new();
        files(&manifest().join("tests/fixtures/ceilometer"), &mut paths);
        files(
            &manifest().join("tests/fixtures/captures/ceilometer-http"),
            &mut paths,
        );
        let mut seeds = Vec::new();
        for path in paths {
            let value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            seeds.push(value.get("body").cloned().unwrap_or(value));
        }
        assert!(seeds.len() >= 10, "{} seeds", seeds.len());
        seeds
    })
}

/// A JSON value of any shape, small.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(u64::MAX)),
        Just(json!(1e308)),
        "\\PC{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("\u{0}"),
            Just(""),
            Just("None"),
            Just("2026-13-45T25:61:61Z"),
            Just("2016-12-31T23:59:60Z"),
            Just("9999-12-31T23:59:59.999999Z"),
            Just("10000-01-01T00:00:00Z"),
            Just("\u{202e}\u{feff}\u{10ffff}"),
            Just("{\"nested\": \"json\"}"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(Value),
    Remove,
    /// An object or array re-encoded as a JSON string (and a string decoded, when it is JSON).
    Reencode,
    Nest(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => any_value().prop_map(Mutation::Replace),
        2 => Just(Mutation::Remove),
        1 => Just(Mutation::Reencode),
        1 => (1usize..200).prop_map(Mutation::Nest),
    ]
}

/// JSON pointers of every value inside `value`.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                pointers(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn apply(mut value: Value, mutations: &[(usize, Mutation)]) -> Value {
    for (selector, m) in mutations {
        let mut all = Vec::new();
        pointers(&value, String::new(), &mut all);
        let at = &all[selector % all.len()];
        if at.is_empty() {
            if let Mutation::Replace(v) = m {
                value = v.clone();
            }
            continue;
        }
        let (parent, key) = at.rsplit_once('/').unwrap();
        let key = key.replace("~1", "/").replace("~0", "~");
        let Some(target) = value.pointer_mut(at) else {
            continue;
        };
        match m {
            Mutation::Replace(v) => *target = v.clone(),
            Mutation::Reencode => {
                *target = match target.take() {
                    Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
                    other => Value::String(other.to_string()),
                };
            }
            Mutation::Nest(depth) => {
                let mut nested = target.take();
                for _ in 0..*depth {
                    nested = json!([nested]);
                }
                *target = nested;
            }
            Mutation::Remove => match value.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(&key);
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = key.parse::<usize>()
                        && i < items.len()
                    {
                        items.remove(i);
                    }
                }
                _ => {}
            },
        }
    }
    value
}

#[derive(Debug, Clone)]
enum ByteEdit {
    Flip(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Flip(i, b)),
        any::<usize>().prop_map(ByteEdit::Cut),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| ByteEdit::Insert(i, b)),
    ]
}

fn edit(mut bytes: Vec<u8>, edits: &[ByteEdit]) -> Vec<u8> {
    for e in edits {
        if bytes.is_empty() {
            break;
        }
        match e {
            ByteEdit::Flip(i, b) => {
                let i = i % bytes.len();
                bytes[i] ^= b | 1;
            }
            ByteEdit::Cut(i) => bytes.truncate(i % bytes.len()),
            ByteEdit::Insert(i, b) => {
                let i = i % bytes.len();
                bytes.splice(i..i, b.iter().copied());
            }
        }
    }
    bytes
}

/// A structurally mutated seed, sometimes edited at the byte level too.
fn from_seeds(seeds: fn() -> &'static [Value]) -> impl Strategy<Value = Vec<u8>> {
    (
        any::<usize>(),
        prop::collection::vec((any::<usize>(), mutation()), 0..4),
        prop::collection::vec(byte_edit(), 0..3),
    )
        .prop_map(move |(seed, mutations, edits)| {
            let all = seeds();
            let value = apply(all[seed % all.len()].clone(), &mutations);
            edit(serde_json::to_vec(&value).unwrap(), &edits)
        })
}

fn with_route(body: Vec<u8>, route: u8) -> Vec<u8> {
    let mut data = vec![route];
    data.extend(body);
    data
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn amqp_deliveries_from_real_captures(body in from_seeds(amqp_seeds), route in any::<u8>()) {
        fuzzing::amqp_delivery(&with_route(body, route));
    }

    #[test]
    fn amqp_deliveries_from_raw_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::amqp_delivery(&data);
    }

    #[test]
    fn ceilometer_posts_from_real_captures(body in from_seeds(http_seeds), choice in any::<u8>()) {
        fuzzing::http_post(&with_route(body, choice));
    }

    #[test]
    fn ceilometer_posts_from_raw_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::http_post(&data);
    }

    #[test]
    fn timestamps_from_shapes_and_bytes(
        text in prop_oneof![
            "[0-9]{1,5}-[0-9]{1,2}-[0-9]{1,2}[T ][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:?[0-9]{2})?",
            "-?[0-9]{1,20}(\\.[0-9]{1,9})?(e[+-]?[0-9]{1,3})?",
            "\\PC{0,40}",
        ],
        bytes in prop::collection::vec(any::<u8>(), 0..48),
    ) {
        fuzzing::timestamp(text.as_bytes());
        fuzzing::timestamp(&bytes);
    }
}

#[test]
fn every_seed_decodes_under_the_harness_unmutated() {
    for (i, seed) in amqp_seeds().iter().enumerate() {
        fuzzing::amqp_delivery(&with_route(serde_json::to_vec(seed).unwrap(), i as u8));
    }
    for seed in http_seeds() {
        fuzzing::http_post(&with_route(serde_json::to_vec(seed).unwrap(), 0));
        fuzzing::http_post(&with_route(serde_json::to_vec(seed).unwrap(), 1));
    }
}
