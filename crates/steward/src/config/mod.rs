//! Loading Steward's configuration file: one YAML file, strict, with `${ENV}` substitution.
//!
//! Errors name the file, the line, the column and the field path, in plain words, and
//! `steward config check` reports every problem of a file, not only the first. Substitution happens on the text before parsing, one line at a time, so line
//! numbers stay true: `${NAME}` must be set, `${NAME:-default}` falls back, `$${` is a literal
//! `${`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use steward_meter::config::MeterConfig;

mod located;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Metering (`steward meter …`).
    #[serde(default)]
    pub meter: MeterConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
}

/// `log:`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `steward_meter=debug,info`. `RUST_LOG` overrides it.
    /// Default `info,lapin::channel=off`.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: default_level(),
        }
    }
}

/// `info`, without lapin's own channel-close lines: Steward probes exchanges passively and lapin
/// logs each expected 404 as an error; real AMQP failures are logged by Steward itself.
fn default_level() -> String {
    "info,lapin::channel=off".to_owned()
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A configuration problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column, when known.
    pub column: Option<u32>,
    /// The field path (`meter.amqp.url`), when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// No file: every default.
    Defaults,
    /// A file given by `--config` or `STEWARD_CONFIG`.
    File(PathBuf),
}

/// Loads and validates the configuration; every problem found is returned.
pub fn load(source: &ConfigSource) -> Result<Config, Vec<Problem>> {
    match source {
        ConfigSource::Defaults => Ok(Config::default()),
        ConfigSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                vec![Problem {
                    file: path.clone(),
                    line: None,
                    column: None,
                    field: None,
                    message: format!("cannot read: {e}"),
                }]
            })?;
            parse(path, &text, |name| std::env::var(name).ok())
        }
    }
}

/// Parses configuration text (after `${ENV}` substitution through `env`) and reports **every**
/// problem: after each parser error the block it points at is blanked (line numbers stay
/// true) and parsing starts again, then the semantic checks run on what parsed. Problems come
/// sorted by line, each with its field path in the file as written.
pub fn parse(
    path: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, Vec<Problem>> {
    let problem = |line: Option<u32>, column, field: Option<String>, message: String| Problem {
        file: path.to_owned(),
        line,
        column,
        field,
        message,
    };
    // YAML breaks lines at CR, LF and CRLF; so does every count of lines below.
    let normalized = normalize_line_breaks(text);
    let text = normalized.as_ref();
    let mut expanded = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut unset = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        match substitute(line, &env) {
            Ok(line) => expanded.push_str(&line),
            Err(message) => {
                let number = index as u32 + 1;
                let field = located::path_at(text, number);
                let column = line
                    .find("${")
                    .map(|at| line[..at].chars().count() as u32 + 1);
                problems.push(problem(Some(number), column, field, message));
                expanded.push_str(line);
                unset.push(number);
            }
        }
    }
    // What the file says, as written: paths and values are read from it.
    let original = expanded.clone();
    let mut working = expanded;
    for line in unset {
        working = located::blank_block(&working, located::block_at(&original, line, false));
    }
    let mut blanked_keys: Vec<(String, String)> = Vec::new();
    let mut config = None;
    for _ in 0..MAX_PARSER_PROBLEMS {
        if working.trim().is_empty() {
            config = Some(Config::default());
            break;
        }
        let error = match serde_saphyr::from_str::<Config>(&working) {
            Ok(parsed) => {
                config = Some(parsed);
                break;
            }
            Err(error) => error,
        };
        let message = first_line(&error.to_string());
        let Some(location) = error.location() else {
            problems.push(problem(None, None, None, message));
            break;
        };
        let (line, column) = (location.line() as u32, location.column() as u32);
        let field = located::path_at(&original, line);
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'));
        let item = field.as_deref().map(item_path);
        // A required key whose line was blanked for its own problem: already reported.
        let explained = missing.is_some_and(|key| {
            blanked_keys
                .iter()
                .any(|(i, k)| Some(i.as_str()) == item.as_deref() && k == key)
        });
        if !explained {
            let value = value_at(&working, line, column);
            problems.push(problem(
                Some(line),
                Some(column),
                field.clone(),
                located::plain(&message, &value),
            ));
        }
        if let (Some(field), Some(item)) = (&field, &item)
            && let Some(key) = field.rsplit('.').next()
        {
            blanked_keys.push((item.clone(), key.to_owned()));
        }
        let block = located::block_at(&working, line, missing.is_some());
        let next = located::blank_block(&working, block);
        if next == working {
            break;
        }
        working = next;
    }
    if let Some(config) = &config {
        let mut semantic = config.meter.problems();
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
            semantic.push((
                "log.level".to_owned(),
                format!("is not a log filter like `info` or `steward_meter=debug,info`: {error}"),
            ));
        }
        for (field, message) in semantic {
            let (line, column) = located::find(&working, &field).unzip();
            let shown = line
                .and_then(|line| located::path_at(&original, line))
                .map(|found| same_depth(&found, &field))
                .unwrap_or(field);
            let message = renumber(&message, &working, &original);
            problems.push(problem(line, column, Some(shown), message));
        }
    }
    problems.sort_by_key(|p| (p.line, p.column));
    problems.dedup();
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(problems),
    }
}

/// `text` with CRLF and lone CR line breaks as LF (borrowed when it has none).
pub fn normalize_line_breaks(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\r') {
        std::borrow::Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// After this many parser problems `config check` stops looking for more.
const MAX_PARSER_PROBLEMS: usize = 64;

/// The path of the list item a field is in (`meter.products[2].unit` → `meter.products[2]`),
/// or the field's parent section.
fn item_path(field: &str) -> String {
    match field.rfind(['.', '[']) {
        Some(cut) if field[cut..].starts_with('[') => field.to_owned(),
        Some(cut) => field[..cut].to_owned(),
        None => String::new(),
    }
}

/// `found` cut to as many parts as `wanted` has (`meter.products[3].product` for
/// `meter.products[2]` → `meter.products[3]`: the index as written in the file).
fn same_depth(found: &str, wanted: &str) -> String {
    let parts = |p: &str| p.matches(['.', '[']).count();
    let depth = parts(wanted);
    let mut seen = 0;
    for (i, c) in found.char_indices() {
        if c == '.' || c == '[' {
            if seen == depth {
                return found[..i].to_owned();
            }
            seen += 1;
        }
    }
    found.to_owned()
}

/// A semantic message's `name[N]` references (`… already defined as products[0]`) counted in
/// the parsed file, renumbered as written (items blanked for their own problems are not in
/// what parsed).
fn renumber(message: &str, working: &str, original: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find('[') {
        let name_start = rest[..open]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let Some(close) = rest[open..].find(']').map(|c| open + c) else {
            break;
        };
        let name = &rest[name_start..open];
        let as_written = rest[open + 1..close]
            .parse::<usize>()
            .ok()
            .filter(|_| !name.is_empty())
            .and_then(|n| {
                let wanted = format!("meter.{name}[{n}]");
                let (line, _) = located::find(working, &wanted)?;
                let found = same_depth(&located::path_at(original, line)?, &wanted);
                found
                    .strip_prefix(&format!("meter.{name}"))
                    .map(str::to_owned)
            });
        match as_written {
            Some(index) => {
                out.push_str(&rest[..open]);
                out.push_str(&index);
            }
            None => out.push_str(&rest[..=close]),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The text at 1-based `line` and `column`, up to a comment.
fn value_at(text: &str, line: u32, column: u32) -> String {
    let Some(l) = text.lines().nth(line.saturating_sub(1) as usize) else {
        return String::new();
    };
    let rest: String = l.chars().skip(column.saturating_sub(1) as usize).collect();
    let rest = rest.split(" #").next().unwrap_or_default();
    rest.trim().trim_matches(['"', '\'']).to_owned()
}

/// The first line of a parser message, without the parser's own `error: line N column M:`
/// prefix (the location is printed once, as FILE:LINE:COLUMN).
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    match line
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((location, rest)) if location.contains(" column ") => rest.to_owned(),
        _ => line.to_owned(),
    }
}

/// Expands `${NAME}` and `${NAME:-default}` in one line; `$${` stays a literal `${`.
fn substitute(line: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or("unterminated ${ in this line")?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid variable name in ${{{expr}}}"));
        }
        let value = match (env(name), default) {
            (Some(value), _) => value,
            (None, Some(default)) => default.to_owned(),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (used as ${{{name}}})"
                ));
            }
        };
        rest = &after[end + 1..];
        // `key: ${EMPTY}` would read as YAML null, i.e. "not set": for a token that would turn
        // authentication off silently. An empty value that is the whole scalar stays an empty
        // string, which the field's own check then refuses.
        let whole_scalar = {
            let before = out.trim_end();
            let after = rest.trim();
            (before.ends_with(':') || before.ends_with('-'))
                && (after.is_empty() || after.starts_with('#'))
        };
        if value.trim().is_empty() && whole_scalar {
            out.push('\'');
            out.push_str(&value);
            out.push('\'');
        } else {
            out.push_str(&value);
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(text: &str, vars: &[(&str, &str)]) -> Result<Config, Vec<Problem>> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse(Path::new("steward.yaml"), text, |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse_with("", &[]).unwrap(), Config::default());
        assert_eq!(parse_with("# nothing\n", &[]).unwrap(), Config::default());
    }

    #[test]
    fn env_substitution_with_default_and_escape() {
        let config = parse_with(
            "meter:\n  amqp:\n    url: amqp://u:${PASS}@h:5672/%2f\n    queue: ${Q:-steward.q}\n  http:\n    bearer_token: \"$${literal}\"\n",
            &[("PASS", "s3cret")],
        )
        .unwrap();
        assert_eq!(config.meter.amqp.url.expose(), "amqp://u:s3cret@h:5672/%2f");
        assert_eq!(config.meter.amqp.queue, "steward.q");
        assert_eq!(
            config.meter.http.bearer_token.unwrap().expose(),
            "${literal}"
        );
    }

    #[test]
    fn an_empty_secret_from_the_environment_is_an_error_not_no_authentication() {
        for value in ["", "   ", "\t"] {
            let problems = parse_with(
                "meter:\n  http:\n    bearer_token: ${STEWARD_HTTP_TOKEN}\n",
                &[("STEWARD_HTTP_TOKEN", value)],
            )
            .unwrap_err();
            assert_eq!(problems.len(), 1, "{value:?}");
            assert_eq!(
                problems[0].field.as_deref(),
                Some("meter.http.bearer_token")
            );
            assert_eq!(problems[0].line, Some(3));
        }
        let problems =
            parse_with("meter:\n  http:\n    bearer_token: ${T:-}  # none\n", &[]).unwrap_err();
        assert_eq!(
            problems[0].field.as_deref(),
            Some("meter.http.bearer_token")
        );
        // Inside a longer value an empty variable is just empty text.
        let problems = parse_with(
            "meter:\n  store:\n    url: postgres://steward:${PW}@db/steward\n",
            &[("PW", "")],
        )
        .unwrap_err();
        assert_eq!(problems[0].field.as_deref(), Some("meter.store.url"));
        assert!(problems[0].message.contains("password"), "{}", problems[0]);
    }

    #[test]
    fn unset_variable_names_the_line() {
        let problems = parse_with("meter:\n  store:\n    url: ${DB_URL}\n", &[]).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, Some(3));
        assert!(problems[0].message.contains("DB_URL"), "{}", problems[0]);
    }

    #[test]
    fn unknown_field_is_located() {
        let problems = parse_with("meter:\n  amqp:\n    queeu: x\n", &[]).unwrap_err();
        assert_eq!(problems[0].line, Some(3), "{}", problems[0]);
        assert!(problems[0].message.contains("queeu"), "{}", problems[0]);
    }

    #[test]
    fn wrong_type_is_located() {
        let problems = parse_with("meter:\n  amqp:\n    prefetch: lots\n", &[]).unwrap_err();
        assert_eq!(problems[0].line, Some(3), "{}", problems[0]);
    }

    #[test]
    fn catalogue_problems_point_at_the_list() {
        let text = "meter:\n  products:\n    - {product: x, resource: volume, unit: h, statuses: [running]}\n";
        let problems = parse_with(text, &[]).unwrap_err();
        assert_eq!(problems[0].field.as_deref(), Some("meter.products[0]"));
        assert_eq!(problems[0].line, Some(3));
        assert!(
            problems[0].message.contains("instance products only"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn semantic_problem_names_field_and_line() {
        let problems =
            parse_with("meter:\n  amqp:\n    queue: notifications.info\n", &[]).unwrap_err();
        assert_eq!(problems[0].field.as_deref(), Some("meter.amqp.queue"));
        assert_eq!(problems[0].line, Some(3));
        assert!(
            problems[0]
                .to_string()
                .starts_with("steward.yaml:3:5: meter.amqp.queue: ")
        );
    }

    #[test]
    fn every_problem_of_a_file_is_reported_located_and_in_plain_words() {
        let text = "\
meter:
  amqp:
    queeu: steward.meter
    prefetch: lots
  http:
    listen: nowhere
  products:
    - product: a
      resource: volumes
      unit: GiB-hour
    - product: b
      resource: instance
      unit: hour
      statuses: [runing]
    - product: b
      resource: floating_ip
      unit: hour
log:
  format: xml
";
        let problems = parse_with(text, &[]).unwrap_err();
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 7, "{shown:#?}");
        let expect = [
            ("steward.yaml:3:5: meter.amqp.queeu: unknown field `queeu`: did you mean `queue`?"),
            ("steward.yaml:4:15: meter.amqp.prefetch: must be a whole number from 0 to 65535, not `lots`"),
            ("steward.yaml:6:13: meter.http.listen: must be an address like 127.0.0.1:8788"),
            ("steward.yaml:9:17: meter.products[0].resource: `volumes` is not one of: instance, volume"),
            ("steward.yaml:14:18: meter.products[1].statuses"),
            ("steward.yaml:15:7: meter.products[2]: product \"b\" is already defined as products[1]"),
            ("steward.yaml:19:11: log.format: `xml` is not one of: text, json"),
        ];
        for (problem, expected) in shown.iter().zip(expect) {
            assert!(
                problem.starts_with(expected),
                "{problem}\n  expected {expected}"
            );
        }
        for problem in &shown {
            for jargon in [
                "u16",
                "variant",
                "mapping start",
                "sequence start",
                "invalid type",
            ] {
                assert!(!problem.contains(jargon), "{problem}");
            }
        }
    }

    #[test]
    fn a_clean_file_after_many_problems_is_still_checked_semantically() {
        // Parser problems do not hide the semantic ones of the rest of the file.
        let text =
            "meter:\n  amqp:\n    prefetch: x\n    queue: notifications.info\n  products: []\n";
        let problems = parse_with(text, &[]).unwrap_err();
        let fields: Vec<&str> = problems.iter().filter_map(|p| p.field.as_deref()).collect();
        assert_eq!(
            fields,
            ["meter.amqp.prefetch", "meter.amqp.queue", "meter.products"],
            "{problems:#?}"
        );
    }

    #[test]
    fn a_log_filter_that_cannot_be_used_is_refused() {
        let problems = parse_with("log:\n  level: steward_meter=loud\n", &[]).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].field.as_deref(), Some("log.level"));
        assert_eq!((problems[0].line, problems[0].column), (Some(2), Some(3)));
        assert!(parse_with("log:\n  level: steward_meter=debug,info\n", &[]).is_ok());
    }

    #[test]
    fn lines_end_at_cr_lf_and_crlf_alike() {
        for newline in ["\n", "\r\n", "\r"] {
            let text = ["meter:", "  amqp:", "    queeu: x", ""].join(newline);
            let problems = parse_with(&text, &[]).unwrap_err();
            assert_eq!(problems[0].line, Some(3), "{newline:?}: {}", problems[0]);
            assert_eq!(problems[0].field.as_deref(), Some("meter.amqp.queeu"));
        }
    }
}
