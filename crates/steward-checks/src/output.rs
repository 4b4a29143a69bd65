//! Results as a table (people), JSON (scripts) or JUnit XML (CI systems), each ending with the
//! summary.
//!
//! JUnit: one `<testsuite>` per standard, one `<testcase>` per result (`classname` the standard
//! and version, `name` the test id and subject). FAIL and WARN are `<failure type="FAIL|WARN">`
//! (a warning is a finding, and CI should show it), ABORT an `<error>`, SKIP `<skipped>`; the
//! evidence is the failure's text, as JSON. The output validates against the JUnit schema CI
//! systems read (Jenkins' `junit-10.xsd`; a test runs `xmllint --schema` on it).

use std::collections::BTreeMap;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use crate::model::{CheckResult, Status, Summary};

/// The formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned columns and a summary line.
    #[default]
    Table,
    /// `{"results": [...], "summary": {...}}`.
    Json,
    /// JUnit XML.
    Junit,
}

/// `results` in `format`.
pub fn render(results: &[CheckResult], format: Format) -> String {
    match format {
        Format::Table => table(results),
        Format::Json => json(results),
        Format::Junit => junit(results),
    }
}

fn subject(r: &CheckResult) -> &str {
    r.subject.as_deref().unwrap_or("-")
}

/// A table: status, check, subject, message; then the summary.
pub fn table(results: &[CheckResult]) -> String {
    let width = |f: &dyn Fn(&CheckResult) -> usize, min: usize| {
        results.iter().map(f).max().unwrap_or(0).max(min)
    };
    let id_w = width(&|r| r.id.chars().count(), 5);
    let subject_w = width(&|r| subject(r).chars().count(), 7).min(48);
    let mut out = format!(
        "{:<6} {:<id_w$} {:<subject_w$} MESSAGE\n",
        "STATUS", "CHECK", "SUBJECT"
    );
    for r in results {
        let mut shown: String = subject(r).chars().take(subject_w).collect();
        if subject(r).chars().count() > subject_w {
            shown.pop();
            shown.push('…');
        }
        out.push_str(&format!(
            "{:<6} {:<id_w$} {:<subject_w$} {}\n",
            r.status.to_string(),
            r.id,
            shown,
            r.message
        ));
    }
    out.push_str(&Summary::of(results).to_string());
    out.push('\n');
    out
}

/// JSON: every result with its evidence, and the summary.
pub fn json(results: &[CheckResult]) -> String {
    let mut text = serde_json::to_string_pretty(&serde_json::json!({
        "results": results,
        "summary": Summary::of(results),
    }))
    .unwrap_or_default();
    text.push('\n');
    text
}

/// JUnit XML.
pub fn junit(results: &[CheckResult]) -> String {
    let mut suites: BTreeMap<&str, Vec<&CheckResult>> = BTreeMap::new();
    for r in results {
        suites.entry(r.standard.as_str()).or_default().push(r);
    }
    let total = Summary::of(results);
    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    let written = (|| -> std::io::Result<()> {
        writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        writer
            .create_element("testsuites")
            .with_attribute(("name", "steward check"))
            .with_attribute(("tests", total.total.to_string().as_str()))
            .with_attribute(("failures", (total.fail + total.warn).to_string().as_str()))
            .with_attribute(("errors", total.abort.to_string().as_str()))
            .write_inner_content(|w| {
                for (standard, cases) in &suites {
                    let owned: Vec<CheckResult> = cases.iter().map(|c| (*c).clone()).collect();
                    let counts = Summary::of(&owned);
                    w.create_element("testsuite")
                        .with_attribute(("name", *standard))
                        .with_attribute(("tests", counts.total.to_string().as_str()))
                        .with_attribute((
                            "failures",
                            (counts.fail + counts.warn).to_string().as_str(),
                        ))
                        .with_attribute(("errors", counts.abort.to_string().as_str()))
                        .with_attribute(("skipped", counts.skip.to_string().as_str()))
                        .write_inner_content(|w| {
                            for case in cases {
                                testcase(w, case)?;
                            }
                            Ok(())
                        })?;
                }
                Ok(())
            })?;
        Ok(())
    })();
    if written.is_err() {
        return String::new();
    }
    let mut text = String::from_utf8(writer.into_inner()).unwrap_or_default();
    text.push('\n');
    text
}

fn testcase(w: &mut Writer<Vec<u8>>, case: &CheckResult) -> std::io::Result<()> {
    let name = match &case.subject {
        Some(subject) => format!("{} {subject}", case.id),
        None => case.id.clone(),
    };
    let classname = format!("{}.{}", case.standard, case.version);
    let element = w
        .create_element("testcase")
        .with_attribute(("classname", classname.as_str()))
        .with_attribute(("name", name.as_str()));
    let evidence = if case.evidence.is_empty() {
        case.message.clone()
    } else {
        format!(
            "{}\n{}",
            case.message,
            serde_json::to_string_pretty(&case.evidence).unwrap_or_default()
        )
    };
    let inner = match case.status {
        Status::Pass => None,
        Status::Fail | Status::Warn => Some("failure"),
        Status::Abort => Some("error"),
        Status::Skip => Some("skipped"),
    };
    match inner {
        None => {
            element.write_empty()?;
        }
        Some(tag) => {
            element.write_inner_content(|w| {
                let status = case.status.to_string();
                let child = w
                    .create_element(tag)
                    .with_attribute(("message", case.message.as_str()));
                if tag == "skipped" {
                    child.write_empty()?;
                } else {
                    child
                        .with_attribute(("type", status.as_str()))
                        .write_text_content(BytesText::new(&evidence))?;
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<CheckResult> {
        vec![
            CheckResult::new(
                "scs-0102-prop-os_distro",
                ("scs-0102", "v2"),
                Status::Fail,
                "is mandatory but not set",
            )
            .about("image 1b2c \"Ubuntu <24.04> & co\"")
            .with("image_id", "1b2c"),
            CheckResult::new(
                "scs-0102-prop-hw_rng_model",
                ("scs-0102", "v2"),
                Status::Warn,
                "\"none\" is not virtio",
            )
            .about("image 9f9d \"Debian 12\""),
            CheckResult::new(
                "scs-0102-prop-architecture",
                ("scs-0102", "v2"),
                Status::Pass,
                "all 4 images",
            ),
            CheckResult::new(
                "scs-0101-entropy-avail",
                ("scs-0101", "v1"),
                Status::Skip,
                "needs --boot",
            ),
            CheckResult::new(
                "rgw-s3-multipart",
                ("steward-rgw", "v1"),
                Status::Abort,
                "radosgw did not answer",
            ),
        ]
    }

    /// The JUnit output against Jenkins' junit-10.xsd (scripts/junit-schema fetches it from
    /// pytest's source release on PyPI), with xmllint.
    #[test]
    fn junit_validates_against_the_junit_schema() {
        if std::env::var("STEWARD_TEST_SKIP_JUNIT_SCHEMA").is_ok_and(|v| v == "1") {
            return;
        }
        let xsd = std::env::var("STEWARD_TEST_JUNIT_XSD").unwrap_or_else(|_| {
            panic!(
                "STEWARD_TEST_JUNIT_XSD must name junit-10.xsd: run scripts/junit-schema (scripts/test \
                 does), or set STEWARD_TEST_SKIP_JUNIT_SCHEMA=1 to leave this out"
            )
        });
        let dir = std::env::temp_dir().join(format!("steward-junit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut results = sample();
        // Every kind of evidence and text that needs escaping.
        results.push(
            CheckResult::new("x", ("scs-0104", "v1"), Status::Fail, "a <b> & \"c\"\n]]>")
                .with("list", serde_json::json!([1, "two", null])),
        );
        for (name, set) in [("all.xml", results.clone()), ("empty.xml", Vec::new())] {
            let file = dir.join(name);
            std::fs::write(&file, junit(&set)).unwrap();
            let out = std::process::Command::new("xmllint")
                .args(["--noout", "--schema", &xsd])
                .arg(&file)
                .output()
                .unwrap_or_else(|e| panic!("xmllint (Debian's libxml2-utils): {e}"));
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn table_json_and_junit_show_the_same_results() {
        let results = sample();
        insta::assert_snapshot!("table", table(&results));
        insta::assert_snapshot!("json", json(&results));
        insta::assert_snapshot!("junit", junit(&results));
    }
}
