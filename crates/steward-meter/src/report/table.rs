//! Terminal rendering of a report: the period and how complete it is, per project its lines
//! and unknown windows (with `detail`, every resource and interval), then exact totals per
//! product. Quantities of different products are never added up, even when their units match.

use std::fmt::Write as _;

use super::{PeriodState, Report, provenance_text};

/// Aligned columns, for a person.
pub fn to_table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "usage {} .. {}  (steward {}, content {})",
        report.period.start,
        report.period.end,
        report.generator.version,
        report.content_digest.get(..19).unwrap_or_default()
    );
    let _ = writeln!(out, "{}", state_line(report));
    match (
        report.coverage.first_input_at,
        report.coverage.last_input_at,
    ) {
        (Some(first), Some(last)) => {
            let _ = writeln!(out, "inputs received {first} .. {last}");
        }
        _ => out.push_str("the store holds no input\n"),
    }
    for w in &report.coverage.unknown {
        let _ = writeln!(out, "usage unknown {} .. {}: {}", w.start, w.end, w.reason);
    }
    if report.projects.is_empty() && report.billed_until > report.period.start {
        if report.coverage.unknown.is_empty() {
            out.push_str("\nno usage in the billed time\n");
        } else {
            out.push_str("\nno usage known in the billed time (see \"usage unknown\" above)\n");
        }
    }
    for project in &report.projects {
        let _ = writeln!(
            out,
            "\nproject {}",
            project.project_id.as_deref().unwrap_or("(no owner known)")
        );
        if project.lines.is_empty() {
            out.push_str("  nothing billable\n");
        } else {
            let mut rows = vec![header(&[
                "PRODUCT",
                "QUANTITY",
                "UNIT",
                "RESOURCES",
                "PROVENANCE",
            ])];
            for line in &project.lines {
                rows.push(vec![
                    line.product.clone(),
                    line.quantity.clone(),
                    line.unit.clone(),
                    line.resources.to_string(),
                    provenance_text(&line.provenance),
                ]);
            }
            out.push_str(&indent(
                &columns(&rows, &[false, true, false, true, false]),
                2,
            ));
        }
        if !project.unknown.is_empty() {
            let _ = writeln!(
                out,
                "  not billed, usage unknown ({} window(s)):",
                project.unknown.len()
            );
            for w in &project.unknown {
                let _ = writeln!(
                    out,
                    "    {} {}  {} .. {}  {}",
                    w.resource_type.as_str(),
                    w.resource_id,
                    w.start,
                    w.end,
                    w.reason
                );
            }
        }
        for resource in project.resources.iter().flatten() {
            let _ = writeln!(
                out,
                "  {} {}",
                resource.resource_type.as_str(),
                resource.resource_id
            );
            let mut rows = vec![header(&["START", "END", "STATUS", "ATTRIBUTES"])];
            for i in &resource.intervals {
                let attributes: Vec<String> = i
                    .attributes
                    .iter()
                    .map(|(k, v)| match v {
                        serde_json::Value::String(s) => format!("{k}={s}"),
                        other => format!("{k}={other}"),
                    })
                    .collect();
                rows.push(vec![
                    i.start.to_rfc3339(),
                    i.end.to_rfc3339(),
                    i.status.as_str().to_owned(),
                    attributes.join(" "),
                ]);
            }
            if resource.intervals.is_empty() {
                out.push_str("    no billed interval\n");
            } else {
                out.push_str(&indent(&columns(&rows, &[false; 4]), 4));
            }
            for p in &resource.products {
                let _ = writeln!(out, "    = {} {} {}", p.product, p.quantity, p.unit);
            }
        }
    }
    if !report.totals.is_empty() && report.projects.len() > 1 {
        let _ = writeln!(
            out,
            "\ntotals over {} projects (exact sums, per product)",
            report.projects.len()
        );
        let mut rows = vec![header(&[
            "PRODUCT",
            "QUANTITY",
            "UNIT",
            "PROJECTS",
            "RESOURCES",
        ])];
        for t in &report.totals {
            rows.push(vec![
                t.product.clone(),
                t.quantity.clone(),
                t.unit.clone(),
                t.projects.to_string(),
                t.resources.to_string(),
            ]);
        }
        out.push_str(&indent(
            &columns(&rows, &[false, true, false, true, true]),
            2,
        ));
    }
    if !report.gaps.is_empty() {
        let _ = writeln!(
            out,
            "\n{} data gap(s) overlap this period: see `steward meter gaps`",
            report.gaps.len()
        );
    }
    out
}

/// One line saying how complete the period is.
fn state_line(report: &Report) -> String {
    match report.period_state {
        PeriodState::Open if report.billed_until == report.period.start => format!(
            "open: the period had not begun as of {}; nothing is billed yet",
            report.as_of
        ),
        PeriodState::Open => format!(
            "open: billed up to as_of {} (the period is not over; usage will still grow)",
            report.as_of
        ),
        PeriodState::CompleteAsOf => format!(
            "complete as of {} (late facts can still change it until the period is closed)",
            report.as_of
        ),
        PeriodState::Closed => match &report.completeness {
            Some(c) => format!(
                "closed at {} as {}\ncompleteness: {} (`steward meter corrections` lists \
                 what arrived since)",
                c.closed_at, report.content_digest, c.summary
            ),
            None => format!("closed (as of {})", report.as_of),
        },
    }
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn indent(text: &str, by: usize) -> String {
    text.lines().map(|l| format!("{:by$}{l}\n", "")).collect()
}

/// Aligned columns; `right[c]` right-aligns column `c` (numbers).
fn columns(rows: &[Vec<String>], right: &[bool]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if right.get(c).copied().unwrap_or(false) {
                    format!("{cell:>w$}", w = widths[c])
                } else {
                    format!("{cell:<w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
