//! Fuzz harness for the configuration loader: what must hold for any file, checked by
//! panicking (run by `fuzz/` under cargo fuzz and by `tests/fuzz_config.rs` under proptest).
//!
//! Invariants: loading never panics and finishes; every problem names a line inside the file
//! (or none), a column of at least 1, and a message in words; the same text gives the same
//! answer; a file that loads has no problems left for the semantic checks.

use std::path::Path;

use crate::config::{normalize_line_breaks, parse};

/// One configuration file. `${SET}` expands to `value`, every other variable is unset.
pub fn config_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let env = |name: &str| (name == "SET").then(|| "value".to_owned());
    let path = Path::new("fuzz.yaml");
    let first = parse(path, &text, env);
    let lines = normalize_line_breaks(&text).lines().count() as u32 + 1;
    if let Err(problems) = &first {
        assert!(!problems.is_empty(), "an error names at least one problem");
        for p in problems {
            if let Some(line) = p.line {
                assert!(
                    (1..=lines).contains(&line),
                    "{p} is outside the file's {lines} lines"
                );
            }
            if let Some(column) = p.column {
                assert!(column >= 1, "{p}");
            }
            assert!(!p.message.trim().is_empty(), "{p} says nothing");
        }
    }
    let again = parse(path, &text, env);
    assert_eq!(first, again, "the same text gives the same answer");
}
