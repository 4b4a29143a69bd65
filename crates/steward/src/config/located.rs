//! Finding things in the configuration text by line and indentation: the field path at a line,
//! the line of a field path, the block a problem lives in, and parser messages in plain words.
//!
//! This reads block-style YAML the way people write configuration files (one `key: value` per
//! line, lists as `- item` lines, flow collections on one line). It only locates; the parser
//! decides what the file means. Blanking a block keeps every line number true, so problems
//! found after blanking still point at the right line.

/// One line of the file, split into indentation and content.
#[derive(Debug, Clone)]
struct Line<'a> {
    indent: usize,
    content: &'a str,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    text.lines()
        .map(|raw| {
            let content = raw.trim_start_matches([' ', '\t']);
            Line {
                indent: raw.len() - content.len(),
                content: content.trim_end(),
            }
        })
        .collect()
}

/// Blank or a comment: not part of the structure.
fn is_filler(line: &Line<'_>) -> bool {
    line.content.is_empty() || line.content.starts_with('#')
}

/// The key of a `key: value` or `key:` line (after an optional `- `).
fn key_of(content: &str) -> Option<&str> {
    let content = content.strip_prefix("- ").unwrap_or(content).trim_start();
    if content.starts_with(['{', '[', '#', '"', '\'']) {
        return None;
    }
    let (key, rest) = content.split_once(':')?;
    (rest.is_empty() || rest.starts_with(' ')).then_some(key.trim())
}

/// The indentation of what follows `- ` on a list-item line (the item's own keys).
fn item_indent(line: &Line<'_>) -> usize {
    let after = line.content.strip_prefix('-').unwrap_or(line.content);
    line.indent + 1 + (after.len() - after.trim_start().len())
}

fn is_item(line: &Line<'_>) -> bool {
    line.content == "-" || line.content.starts_with("- ")
}

/// One level of the structure enclosing a line.
#[derive(Debug, Clone)]
struct Frame {
    /// Indentation of the key, or of the `-` of an item.
    indent: usize,
    /// `key` or `[index]`.
    segment: String,
    /// 0-based line that opened it.
    line: usize,
    /// 1-based column of what it names (the key, or the item's content).
    column: usize,
    /// An item frame (`- …`).
    item: bool,
    /// Items seen so far in the list under this key.
    items: usize,
}

/// For every line, the frames enclosing it (the line's own key or item last); `None` for
/// blank and comment lines.
fn structure(all: &[Line<'_>]) -> Vec<Option<Vec<Frame>>> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut out = Vec::with_capacity(all.len());
    for (i, l) in all.iter().enumerate() {
        if is_filler(l) {
            out.push(None);
            continue;
        }
        if is_item(l) {
            while stack
                .last()
                .is_some_and(|top| top.indent > l.indent || (top.item && top.indent == l.indent))
            {
                stack.pop();
            }
            let index = match stack.last_mut() {
                Some(parent) => {
                    parent.items += 1;
                    parent.items - 1
                }
                None => 0,
            };
            stack.push(Frame {
                indent: l.indent,
                segment: format!("[{index}]"),
                line: i,
                column: item_indent(l) + 1,
                item: true,
                items: 0,
            });
            if let Some(key) = key_of(l.content) {
                stack.push(Frame {
                    indent: item_indent(l),
                    segment: key.to_owned(),
                    line: i,
                    column: item_indent(l) + 1,
                    item: false,
                    items: 0,
                });
            }
        } else if let Some(key) = key_of(l.content) {
            while stack.last().is_some_and(|top| top.indent >= l.indent) {
                stack.pop();
            }
            stack.push(Frame {
                indent: l.indent,
                segment: key.to_owned(),
                line: i,
                column: l.indent + 1,
                item: false,
                items: 0,
            });
        }
        out.push(Some(stack.clone()));
    }
    out
}

fn path_of(frames: &[Frame]) -> String {
    let mut path = String::new();
    for f in frames {
        if !path.is_empty() && !f.item {
            path.push('.');
        }
        path.push_str(&f.segment);
    }
    path
}

/// The dotted field path of the structure at 1-based `line` (`meter.products[2].unit`).
pub fn path_at(text: &str, line: u32) -> Option<String> {
    let all = lines(text);
    let at = usize::try_from(line).ok()?.checked_sub(1)?;
    let frames = structure(&all).into_iter().nth(at)??;
    let path = path_of(&frames);
    (!path.is_empty()).then_some(path)
}

/// The 1-based line and column of a dotted path (`meter.products[1].unit`): the key's line, or
/// for `…[i]` the i-th list item's line. When the path is not in the file (a field left at its
/// default), the deepest enclosing part that is.
pub fn find(text: &str, path: &str) -> Option<(u32, u32)> {
    let all = lines(text);
    let mut first: std::collections::HashMap<String, (u32, u32)> = std::collections::HashMap::new();
    for frames in structure(&all).into_iter().flatten() {
        for depth in 1..=frames.len() {
            let f = &frames[depth - 1];
            first
                .entry(path_of(&frames[..depth]))
                .or_insert((f.line as u32 + 1, f.column as u32));
        }
    }
    let mut wanted = path.to_owned();
    loop {
        if let Some(found) = first.get(&wanted) {
            return Some(*found);
        }
        let cut = wanted.rfind(['.', '['])?;
        wanted.truncate(cut);
    }
}

/// The first line after the block that starts at `start` (deeper lines belong to it).
fn end_of_block(all: &[Line<'_>], start: usize, indent: usize) -> usize {
    (start + 1..all.len())
        .find(|&j| !is_filler(&all[j]) && all[j].indent <= indent)
        .unwrap_or(all.len())
}

/// The lines (0-based, end exclusive) that carry the problem at 1-based `line`: the line and
/// everything nested under it; the whole list item it is in when `whole_item`.
pub fn block_at(text: &str, line: u32, whole_item: bool) -> std::ops::Range<usize> {
    let all = lines(text);
    let Some(at) = usize::try_from(line).ok().and_then(|l| l.checked_sub(1)) else {
        return 0..0;
    };
    if at >= all.len() {
        return 0..0;
    }
    let mut start = at;
    if whole_item
        && let Some(Some(frames)) = structure(&all).get(at)
        && let Some(item) = frames.iter().rev().find(|f| f.item)
    {
        start = item.line;
    }
    start..end_of_block(&all, start, all[start].indent)
}

/// `text` with the block `range` emptied, and with it every enclosing section or item left
/// with nothing in it (an empty `amqp:` would read as null, a new problem that is not the
/// file's). Line numbers are unchanged.
pub fn blank_block(text: &str, range: std::ops::Range<usize>) -> String {
    let all = lines(text);
    let Some(Some(frames)) = structure(&all).get(range.start).cloned() else {
        return blank(text, range);
    };
    let mut text = blank(text, range.clone());
    for frame in frames.iter().rev() {
        if frame.line >= range.start {
            continue;
        }
        let now = lines(&text);
        let opener = &now[frame.line];
        let inline_value = if frame.item {
            !is_item(opener) || opener.content.len() > 1 && key_of(opener.content).is_none()
        } else {
            key_of(opener.content).is_some_and(|_| {
                let after = opener.content.split_once(':').map_or("", |(_, v)| v).trim();
                !after.is_empty() && !after.starts_with('#')
            })
        };
        let end = end_of_block(&now, frame.line, now[frame.line].indent);
        let empty = (frame.line + 1..end).all(|j| is_filler(&now[j]));
        if inline_value || !empty {
            break;
        }
        text = blank(&text, frame.line..end);
    }
    text
}

/// `text` with the given lines emptied (line numbers unchanged).
pub fn blank(text: &str, range: std::ops::Range<usize>) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if range.contains(&i) {
            if line.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(line);
        }
    }
    out
}

/// A parser message in plain words. `value` is the text the parser pointed at.
pub fn plain(message: &str, value: &str) -> String {
    let value = value.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once("`, expected one of ") {
            let known: Vec<&str> = expected.split(", ").map(|k| k.trim_matches('`')).collect();
            let closest = known
                .iter()
                .map(|k| (strsim::levenshtein(field, k), *k))
                .min()
                .filter(|(distance, _)| *distance <= 2.max(field.len() / 3));
            return match closest {
                Some((_, k)) => format!(
                    "unknown field `{field}`: did you mean `{k}`? (fields here: {})",
                    known.join(", ")
                ),
                None => format!(
                    "unknown field `{field}` (fields here: {})",
                    known.join(", ")
                ),
            };
        }
        if let Some((field, _)) = rest.split_once('`') {
            return format!("unknown field `{field}`: this section has no fields");
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((variant, expected)) = rest.split_once("`, expected one of ")
    {
        return format!("`{variant}` is not one of: {}", expected.replace('`', ""));
    }
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((variant, expected)) = rest.split_once("`, expected ")
    {
        return format!(
            "`{variant}` is not allowed here: must be {}",
            expected.replace('`', "")
        );
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return format!("`{field}` is required here");
    }
    if let Some(kind) = message.strip_prefix("invalid ") {
        let range = match kind {
            "u8" => Some("0 to 255"),
            "u16" => Some("0 to 65535"),
            "u32" => Some("0 to 4294967295"),
            "u64" | "usize" => Some("0 to 18446744073709551615"),
            "i32" | "i64" | "isize" => Some("a whole number"),
            _ => None,
        };
        if let Some(range) = range {
            let range = if range.starts_with('a') {
                range.to_owned()
            } else {
                format!("a whole number from {range}")
            };
            return format!("must be {range}, not `{value}`");
        }
        if kind.starts_with("f32") || kind.starts_with("f64") {
            return format!("must be a number, not `{value}`");
        }
        if kind == "bool" || kind == "boolean" {
            return format!("must be true or false, not `{value}`");
        }
        if kind == "socket address syntax" {
            return format!("must be an address like 127.0.0.1:8788 or [::1]:8788, not `{value}`");
        }
    }
    match message {
        "expected sequence start" => {
            return format!(
                "must be a list, e.g. [a, b] or one `- item` per line (found `{value}`)"
            );
        }
        "expected mapping start" => {
            return "must be a section of `key: value` lines (found something else, or nothing)"
                .to_owned();
        }
        _ => {}
    }
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return format!("must be {expected}, not {found}");
    }
    if let Some(rest) = message.strip_prefix("invalid value: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return format!("must be {expected}, not {found}");
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# Steward
meter:
  amqp:
    url: amqp://x
    queue: q   # comment
  products:
    - product: a
      resource: instance
      unit: hour
    - {product: b, resource: volume, unit: GiB-hour}
    - product: c
      statuses:
        - running
      unit: hour
log:
  level: info
";

    #[test]
    fn paths_at_lines() {
        assert_eq!(path_at(TEXT, 2).as_deref(), Some("meter"));
        assert_eq!(path_at(TEXT, 5).as_deref(), Some("meter.amqp.queue"));
        assert_eq!(
            path_at(TEXT, 7).as_deref(),
            Some("meter.products[0].product")
        );
        assert_eq!(path_at(TEXT, 9).as_deref(), Some("meter.products[0].unit"));
        assert_eq!(path_at(TEXT, 10).as_deref(), Some("meter.products[1]"));
        assert_eq!(path_at(TEXT, 14).as_deref(), Some("meter.products[2].unit"));
        assert_eq!(
            path_at(TEXT, 13).as_deref(),
            Some("meter.products[2].statuses[0]")
        );
        assert_eq!(path_at(TEXT, 16).as_deref(), Some("log.level"));
    }

    #[test]
    fn lines_of_paths() {
        assert_eq!(find(TEXT, "meter.amqp.queue"), Some((5, 5)));
        assert_eq!(find(TEXT, "meter.products[1]"), Some((10, 7)));
        assert_eq!(find(TEXT, "meter.products[2].unit"), Some((14, 7)));
        assert_eq!(find(TEXT, "meter.products[0]"), Some((7, 7)));
        assert_eq!(find(TEXT, "log.level"), Some((16, 3)));
        // Not in the file: its section.
        assert_eq!(find(TEXT, "meter.amqp.prefetch"), Some((3, 3)));
        assert_eq!(find(TEXT, "meter.http.listen"), Some((2, 1)));
    }

    #[test]
    fn blocks_and_blanking_keep_line_numbers() {
        assert_eq!(block_at(TEXT, 3, false), 2..5);
        assert_eq!(block_at(TEXT, 8, false), 7..8);
        assert_eq!(block_at(TEXT, 8, true), 6..9);
        assert_eq!(block_at(TEXT, 11, false), 10..14);
        let blanked = blank(TEXT, 6..9);
        assert_eq!(blanked.lines().count(), TEXT.lines().count());
        assert_eq!(find(&blanked, "meter.products[0]"), Some((10, 7)));
    }

    #[test]
    fn plain_words() {
        assert_eq!(
            plain("invalid u16", "lots"),
            "must be a whole number from 0 to 65535, not `lots`"
        );
        assert!(
            plain(
                "unknown field `queeu`, expected one of enabled, url, queue, prefetch",
                "queeu"
            )
            .starts_with("unknown field `queeu`: did you mean `queue`?")
        );
        assert_eq!(
            plain("unknown variant `xml`, expected one of text, json", "xml"),
            "`xml` is not one of: text, json"
        );
        assert_eq!(
            plain("missing field `resource`", ""),
            "`resource` is required here"
        );
        assert!(plain("expected sequence start", "nova").contains("must be a list"));
    }
}
