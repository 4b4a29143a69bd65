//! Loading Steward's configuration file: one YAML file, strict, with `${ENV}` substitution.
//!
//! Errors name the file, the line and the field, so `steward config check` can point at the
//! problem. Substitution happens on the text before parsing, one line at a time, so line
//! numbers stay true: `${NAME}` must be set, `${NAME:-default}` falls back, `$${` is a literal
//! `${`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use steward_meter::config::MeterConfig;

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
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
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

/// Parses configuration text (after `${ENV}` substitution through `env`).
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
    let mut expanded = String::with_capacity(text.len());
    let mut problems = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        match substitute(line, &env) {
            Ok(line) => expanded.push_str(&line),
            Err(message) => {
                problems.push(problem(Some(index as u32 + 1), None, None, message));
                expanded.push_str(line);
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if expanded.trim().is_empty() {
        return Ok(Config::default());
    }
    let config: Config = serde_saphyr::from_str(&expanded).map_err(|error| {
        let location = error.location();
        vec![problem(
            location.map(|l| l.line() as u32),
            location.map(|l| l.column() as u32),
            None,
            first_line(&error.to_string()),
        )]
    })?;
    let semantic = config.meter.problems();
    if semantic.is_empty() {
        Ok(config)
    } else {
        Err(semantic
            .into_iter()
            .map(|(field, message)| {
                let line = find_field_line(text, &field);
                problem(line, None, Some(field), message)
            })
            .collect())
    }
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

/// The line of the last key of a dotted path (`meter.amqp.queue` → the `queue:` line inside
/// `amqp:` inside `meter:`), by indentation. Good enough for pointing a person at it.
fn find_field_line(text: &str, field: &str) -> Option<u32> {
    // `products[3]` is looked up as `products` (the list's line).
    let mut wanted = field
        .split('.')
        .map(|k| k.split('[').next().unwrap_or(k))
        .peekable();
    let mut current = wanted.next()?;
    let mut min_indent = 0usize;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with('#') || indent < min_indent {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix(current)
            && rest.trim_start().starts_with(':')
        {
            match wanted.next() {
                Some(next) => {
                    current = next;
                    min_indent = indent + 1;
                }
                None => return Some(index as u32 + 1),
            }
        }
    }
    None
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
        assert_eq!(problems[0].line, Some(2));
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
                .starts_with("steward.yaml:3: meter.amqp.queue: ")
        );
    }
}
