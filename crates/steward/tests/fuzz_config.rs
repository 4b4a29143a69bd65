//! Bounded fuzzing of the configuration loader on every test run (`steward::fuzzing` says what
//! must hold): the documented examples mutated line by line (lines dropped, doubled, indented
//! differently, values swapped for hostile YAML) and at the byte level, plus raw text.
//! `STEWARD_FUZZ_CASES` sets the cases (default 1,000).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

fn config() -> Config {
    Config {
        cases: std::env::var("STEWARD_FUZZ_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1000),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "fuzz-regressions",
        ))),
        ..Config::default()
    }
}

fn examples() -> &'static [String] {
    static EXAMPLES: OnceLock<Vec<String>> = OnceLock::new();
    EXAMPLES.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples");
        let mut texts: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        texts.sort();
        assert!(texts.len() >= 3);
        texts
    })
}

const HOSTILE: &[&str] = &[
    "",
    "~",
    "null",
    "-1",
    "99999999999999999999999",
    "1e400",
    "[",
    "{",
    "]",
    "}",
    "'open",
    "\"open",
    "&anchor x",
    "*anchor",
    "!!binary aGk=",
    "!!python/object:os.system",
    "${SET}",
    "${UNSET}",
    "${",
    "$${SET}",
    "- a",
    "? complex",
    ": x",
    "\t",
    "\u{0}",
    "yes",
    "0x1F",
    "1_000",
    ".inf",
    "[1, [2, [3, [4]]]]",
    "{a: {b: {c: {}}}}",
    "<<: *a",
    "|",
    ">",
    "%YAML 1.1",
    "---",
    "...",
    "#",
    "\u{feff}",
    "é",
    "127.0.0.1:99999",
    "postgres://u:@h/d",
    "amqp://",
];

#[derive(Debug, Clone)]
enum LineEdit {
    Drop(usize),
    Double(usize),
    Indent(usize, usize),
    Dedent(usize),
    Value(usize, usize),
    Insert(usize, usize),
}

fn line_edit() -> impl Strategy<Value = LineEdit> {
    prop_oneof![
        1 => any::<usize>().prop_map(LineEdit::Drop),
        1 => any::<usize>().prop_map(LineEdit::Double),
        1 => (any::<usize>(), 1usize..5).prop_map(|(l, n)| LineEdit::Indent(l, n)),
        1 => any::<usize>().prop_map(LineEdit::Dedent),
        3 => (any::<usize>(), any::<usize>()).prop_map(|(l, v)| LineEdit::Value(l, v)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(l, v)| LineEdit::Insert(l, v)),
    ]
}

fn apply(text: &str, edits: &[LineEdit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for e in edits {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let n = lines.len();
        match e {
            LineEdit::Drop(l) => {
                lines.remove(l % n);
            }
            LineEdit::Double(l) => {
                let line = lines[l % n].clone();
                lines.insert(l % n, line);
            }
            LineEdit::Indent(l, by) => lines[l % n].insert_str(0, &" ".repeat(*by)),
            LineEdit::Dedent(l) => {
                let line = &mut lines[l % n];
                *line = line.trim_start().to_owned();
            }
            LineEdit::Value(l, v) => {
                let line = &mut lines[l % n];
                let hostile = HOSTILE[v % HOSTILE.len()];
                *line = match line.split_once(": ") {
                    Some((key, _)) => format!("{key}: {hostile}"),
                    None => format!("{line} {hostile}"),
                };
            }
            LineEdit::Insert(l, v) => lines.insert(l % n, HOSTILE[v % HOSTILE.len()].to_owned()),
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn documented_examples_mutated(
        example in any::<usize>(),
        edits in prop::collection::vec(line_edit(), 1..6),
    ) {
        let all = examples();
        let text = apply(&all[example % all.len()], &edits);
        steward::fuzzing::config_file(text.as_bytes());
    }

    #[test]
    fn raw_text(text in "\\PC{0,200}", bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        steward::fuzzing::config_file(text.as_bytes());
        steward::fuzzing::config_file(&bytes);
    }
}

#[test]
fn the_examples_load_under_the_harness() {
    for text in examples() {
        steward::fuzzing::config_file(text.as_bytes());
        // Every variable set; secrets with a format (a webhook's whsec_…) get a valid value.
        let env = |name: &str| {
            Some(if name.contains("WEBHOOK_SECRET") {
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()
            } else {
                "v".into()
            })
        };
        let parsed = steward::config::parse(std::path::Path::new("x.yaml"), text, env);
        assert!(parsed.is_ok(), "{:?}", parsed.err());
    }
}
