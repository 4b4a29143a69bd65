//! Credential scrubbing: no Keystone token or password is ever stored or logged.
//!
//! OpenStack notifications carry the request context of the call that caused them. Real nova,
//! cinder, neutron and octavia put the caller's Keystone token into `_context_auth_token` (and
//! sometimes `_context_auth_token_info`, the whole token with its catalogue) and nova nests whole
//! contexts inside payloads (`request_spec.…._context.auth_token`). A lossless store that kept
//! such bodies verbatim would be a store of live credentials.
//!
//! Invariants:
//! - every accepted body is scrubbed before it is stored: each object key whose name — after
//!   removing a leading `_context_` and ignoring ASCII case — is in the [`Scrubber`]'s list has
//!   its value replaced by [`SCRUBBED`], at any depth, also inside oslo 2.0's `oslo.message`
//!   string; `null` values (no credential present) are left as they are;
//! - the record keeps a note of the JSON paths that were scrubbed (`raw_records.scrubbed`), and
//!   a body with nothing to scrub is kept byte for byte;
//! - a quarantined body, which may not be JSON at all, is scrubbed textually: the string value
//!   after any listed key (quoted, or JSON-escaped inside a string) is replaced, so that a token
//!   in a malformed notification does not survive in quarantine either;
//! - nothing that reads credentials (facts, owners, times) depends on the scrubbed values.

use std::fmt::Write as _;

use serde_json::Value;

/// What a scrubbed value is replaced with.
pub const SCRUBBED: &str = "***scrubbed***";

/// Key names scrubbed by default (compared without a leading `_context_`, ignoring case).
pub const DEFAULT_KEYS: &[&str] = &[
    "auth_token",
    "auth_token_info",
    "service_token",
    "service_token_info",
    "token",
    "x_auth_token",
    "x-auth-token",
    "x-subject-token",
    "password",
    "admin_password",
    "adminpass",
    "passwd",
    "secret",
    "client_secret",
    "application_credential_secret",
];

/// Scrubs credentials out of bodies; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrubber {
    /// Lower-case key names.
    keys: Vec<String>,
}

impl Default for Scrubber {
    fn default() -> Self {
        Self::new(DEFAULT_KEYS.iter().copied())
    }
}

impl Scrubber {
    /// A scrubber for the given key names.
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            keys: keys.into_iter().map(|k| k.to_ascii_lowercase()).collect(),
        }
    }

    fn is_secret_key(&self, key: &str) -> bool {
        let bare = strip_context_prefix(key);
        self.keys
            .iter()
            .any(|k| k.len() == bare.len() && k.eq_ignore_ascii_case(bare))
    }

    /// Scrubs `value` in place; appends the JSON paths (`/a/b`) that were scrubbed to `found`.
    /// A string that holds a JSON object or array (oslo 2.0's `oslo.message`) is scrubbed
    /// inside and written back as a string.
    pub fn scrub_value(&self, value: &mut Value, path: &str, found: &mut Vec<String>) {
        let mut path = path.to_owned();
        self.walk(value, &mut path, found);
    }

    /// [`Scrubber::scrub_value`] with one path buffer for the whole walk: bodies are walked on
    /// every ingest, so nothing is allocated per key unless a value is scrubbed.
    fn walk(&self, value: &mut Value, path: &mut String, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    let len = path.len();
                    path.push('/');
                    if key.contains(['~', '/']) {
                        path.push_str(&pointer_escape(key));
                    } else {
                        path.push_str(key);
                    }
                    if self.is_secret_key(key) && !child.is_null() {
                        *child = Value::String(SCRUBBED.to_owned());
                        found.push(path.clone());
                    } else {
                        self.walk(child, path, found);
                    }
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter_mut().enumerate() {
                    let len = path.len();
                    let _ = write!(path, "/{i}");
                    self.walk(child, path, found);
                    path.truncate(len);
                }
            }
            Value::String(text) if looks_like_json_container(text) => {
                if let Ok(mut inner) = serde_json::from_str::<Value>(text) {
                    let before = found.len();
                    self.walk(&mut inner, path, found);
                    if found.len() > before {
                        *text = inner.to_string();
                    }
                }
            }
            _ => {}
        }
    }

    /// Scrubs a parsed body in place; returns the scrubbed paths, comma-separated, or `None`
    /// when there was nothing to scrub (then the original text may be kept as it is).
    pub fn scrub(&self, value: &mut Value, path: &str) -> Option<String> {
        let mut found = Vec::new();
        self.scrub_value(value, path, &mut found);
        (!found.is_empty()).then(|| found.join(","))
    }

    /// Scrubs bytes that may not be JSON (quarantine): every value that follows a listed key —
    /// a string, or a whole object or array — is replaced, also where the JSON is escaped inside
    /// a string (oslo 2.0's `oslo.message`). Returns whether anything was replaced.
    pub fn scrub_text(&self, body: &mut Vec<u8>) -> bool {
        if !self
            .keys
            .iter()
            .any(|k| contains_ignore_ascii_case(body, k.as_bytes()))
        {
            return false;
        }
        let mut out = Vec::with_capacity(body.len());
        let mut changed = false;
        let mut i = 0;
        while i < body.len() {
            if body[i] == b'"'
                && let Some(found) = self.secret_value_at(body, i)
            {
                out.extend_from_slice(&body[i..found.start]);
                out.extend_from_slice(&found.replacement);
                changed = true;
                i = found.end;
                continue;
            }
            out.push(body[i]);
            i += 1;
        }
        if changed {
            *body = out;
        }
        changed
    }

    /// At a quote that opens a key: where its value lies and what replaces it, when the key is
    /// listed and a string, object or array value follows.
    fn secret_value_at(&self, body: &[u8], quote: usize) -> Option<TextValue> {
        let start = quote + 1;
        let mut end = start;
        while end < body.len() && body[end] != b'"' && body[end] != b'\\' {
            end += 1;
        }
        let key = std::str::from_utf8(body.get(start..end)?).ok()?;
        if key.is_empty() || !self.is_secret_key(key) {
            return None;
        }
        // A key closed by `\"` is JSON written inside a JSON string: every quote and backslash
        // of that inner document carries one more backslash.
        let escaped = body.get(end) == Some(&b'\\');
        let (c, n) = inner_char(body, end, escaped)?;
        if c != b'"' {
            return None;
        }
        let mut p = skip_space(body, end + n, escaped);
        let (c, n) = inner_char(body, p, escaped)?;
        if c != b':' {
            return None;
        }
        p = skip_space(body, p + n, escaped);
        let (c, n) = inner_char(body, p, escaped)?;
        match c {
            b'"' => {
                let value_start = p + n;
                let value_end = string_end(body, value_start, escaped);
                Some(TextValue {
                    start: value_start,
                    end: value_end,
                    replacement: SCRUBBED.as_bytes().to_vec(),
                })
            }
            b'{' | b'[' => {
                let quote: &[u8] = if escaped { b"\\\"" } else { b"\"" };
                let mut replacement = quote.to_vec();
                replacement.extend_from_slice(SCRUBBED.as_bytes());
                replacement.extend_from_slice(quote);
                Some(TextValue {
                    start: p,
                    end: container_end(body, p, escaped),
                    replacement,
                })
            }
            _ => None,
        }
    }
}

/// A value found by [`Scrubber::secret_value_at`]: `body[start..end]` becomes `replacement`.
struct TextValue {
    start: usize,
    end: usize,
    replacement: Vec<u8>,
}

/// The character of the (possibly escaped) inner document at `i`, and how many bytes it takes:
/// inside an escaped document `\\"` is a quote and `\\\\` a backslash.
fn inner_char(body: &[u8], i: usize, escaped: bool) -> Option<(u8, usize)> {
    let b = *body.get(i)?;
    if escaped && b == b'\\' {
        Some((*body.get(i + 1)?, 2))
    } else {
        Some((b, 1))
    }
}

fn skip_space(body: &[u8], mut i: usize, escaped: bool) -> usize {
    while let Some((c, n)) = inner_char(body, i, escaped) {
        if !c.is_ascii_whitespace() {
            break;
        }
        i += n;
    }
    i
}

/// Where the string whose content starts at `i` ends (at its closing quote), or the body's end.
fn string_end(body: &[u8], mut i: usize, escaped: bool) -> usize {
    while let Some((c, n)) = inner_char(body, i, escaped) {
        match c {
            b'\\' => {
                // An escape inside the string: skip the escaped character too.
                i += n;
                if let Some((_, m)) = inner_char(body, i, escaped) {
                    i += m;
                }
            }
            b'"' => return i,
            _ => i += n,
        }
    }
    body.len()
}

/// One past the bracket that closes the object or array opening at `i`, or the body's end.
fn container_end(body: &[u8], mut i: usize, escaped: bool) -> usize {
    let mut depth = 0usize;
    while let Some((c, n)) = inner_char(body, i, escaped) {
        match c {
            b'"' => {
                i = string_end(body, i + n, escaped);
                i += inner_char(body, i, escaped).map_or(0, |(_, m)| m);
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + n;
                }
            }
            _ => {}
        }
        i += n;
    }
    body.len()
}

fn strip_context_prefix(key: &str) -> &str {
    match key.get(..9) {
        Some(prefix) if prefix.eq_ignore_ascii_case("_context_") => &key[9..],
        _ => key,
    }
}

fn looks_like_json_container(text: &str) -> bool {
    let t = text.trim_start();
    (t.starts_with('{') || t.starts_with('[')) && text.len() > 2
}

/// JSON Pointer escaping (`~` → `~0`, `/` → `~1`).
fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() || haystack.len() < needle.len() {
        return needle.is_empty();
    }
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn context_tokens_and_nested_contexts_are_scrubbed_with_their_paths() {
        let s = Scrubber::default();
        let mut v = json!({
            "_context_auth_token": "gAAAAAB-live-token",
            "_context_auth_token_info": {"token": {"catalog": []}},
            "_context_service_token": null,
            "_context_user_name": "alice",
            "payload": {"request_spec": {"ctx": [{"_context": {"auth_token": "t2"}}]},
                        "adminPass": "hunter2"},
        });
        let mut found = Vec::new();
        s.scrub_value(&mut v, "", &mut found);
        let text = v.to_string();
        for secret in ["gAAAAAB-live-token", "t2", "hunter2", "catalog"] {
            assert!(!text.contains(secret), "{secret} survived: {text}");
        }
        assert_eq!(
            v["_context_service_token"],
            Value::Null,
            "null is left alone"
        );
        assert_eq!(v["_context_user_name"], "alice");
        found.sort();
        assert_eq!(
            found,
            [
                "/_context_auth_token",
                "/_context_auth_token_info",
                "/payload/adminPass",
                "/payload/request_spec/ctx/0/_context/auth_token",
            ]
        );
    }

    #[test]
    fn json_strings_holding_objects_are_scrubbed_inside() {
        let inner = json!({"message_id": "m", "_context_auth_token": "live"}).to_string();
        let mut body = json!({"oslo.version": "2.0", "oslo.message": inner});
        let paths = Scrubber::default().scrub(&mut body, "");
        let text = body.to_string();
        assert!(!text.contains("live"), "{text}");
        assert_eq!(paths.as_deref(), Some("/oslo.message/_context_auth_token"));
        let inner: Value = serde_json::from_str(body["oslo.message"].as_str().unwrap()).unwrap();
        assert_eq!(inner["message_id"], "m");
    }

    #[test]
    fn nothing_to_scrub_says_so() {
        let mut body = json!({"b": 1, "a": {"_context_auth_token": null, "token_count": 3}});
        let before = body.clone();
        assert_eq!(Scrubber::default().scrub(&mut body, ""), None);
        assert_eq!(body, before);
    }

    #[test]
    fn text_scrubbing_reaches_plain_and_escaped_values_in_broken_json() {
        let mut body = br#"{"oslo.message": "{\"_context_auth_token\": \"live-1\", \"x\": 1", "_context_auth_token" : "live-2", "password": "p\"w", broken"#.to_vec();
        assert!(Scrubber::default().scrub_text(&mut body));
        let text = String::from_utf8(body).unwrap();
        for secret in ["live-1", "live-2", "p\\\"w"] {
            assert!(!text.contains(secret), "{secret} survived: {text}");
        }
        assert!(text.contains("\\\"x\\\": 1"), "{text}");
    }

    #[test]
    fn text_scrubbing_replaces_whole_objects_and_respects_inner_escapes() {
        let inner = json!({
            "_context_auth_token_info": {"token": {"id": "live-3", "roles": [{"name": "x}"}]}},
            "_context_auth_token": "live\\\"4",
            "keep": "after",
        })
        .to_string();
        let whole = json!({"oslo.version": "2.0", "oslo.message": inner}).to_string();
        // Cut short, so it is not JSON any more.
        let mut body = whole.as_bytes()[..whole.len() - 3].to_vec();
        assert!(Scrubber::default().scrub_text(&mut body));
        let text = String::from_utf8(body).unwrap();
        for secret in ["live-3", "live", "roles"] {
            assert!(!text.contains(secret), "{secret} survived: {text}");
        }
        assert!(text.contains("keep") && text.contains("after"), "{text}");
    }

    #[test]
    fn configured_keys_replace_the_default_list() {
        let s = Scrubber::new(["vendor_key"]);
        let mut v = json!({"vendor_key": "k", "_context_auth_token": "t"});
        let mut found = Vec::new();
        s.scrub_value(&mut v, "", &mut found);
        assert_eq!(v["vendor_key"], SCRUBBED);
        assert_eq!(v["_context_auth_token"], "t");
    }
}
