//! Terminal rendering of a report: aligned columns per project, totals per unit.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::Report;

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// Aligned columns: the header, then per project its lines, unknown windows and totals.
pub fn to_table(report: &Report) -> String {
    let v = &report.value;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "usage {} .. {}  (steward {}, content {})",
        text(&v["period"]["start"]),
        text(&v["period"]["end"]),
        text(&v["generator"]["version"]),
        text(&v["content_digest"]).get(..19).unwrap_or_default()
    );
    let projects = v["projects"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if projects.is_empty() {
        out.push_str("\nno usage in this period\n");
    }
    for project in projects {
        let _ = writeln!(
            out,
            "\nproject {}",
            project["project_id"].as_str().unwrap_or("(no owner known)")
        );
        let lines = project["lines"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut rows = vec![
            ["PRODUCT", "QUANTITY", "UNIT", "RESOURCES", "PROVENANCE"]
                .map(String::from)
                .to_vec(),
        ];
        let mut totals: BTreeMap<String, f64> = BTreeMap::new();
        for line in lines {
            rows.push(vec![
                text(&line["product"]).to_owned(),
                text(&line["quantity"]).to_owned(),
                text(&line["unit"]).to_owned(),
                line["resources"].to_string(),
                super::provenance_text(line),
            ]);
            let quantity: f64 = text(&line["quantity"]).parse().unwrap_or(0.0);
            *totals.entry(text(&line["unit"]).to_owned()).or_insert(0.0) += quantity;
        }
        if lines.is_empty() {
            out.push_str("  nothing billable\n");
        } else {
            out.push_str(&indent(&columns(&rows, &[false, true, false, true, false])));
            let total: Vec<String> = totals.iter().map(|(u, q)| format!("{q:.6} {u}")).collect();
            let _ = writeln!(out, "  total: {}", total.join(", "));
        }
        let unknown = project["unknown"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if !unknown.is_empty() {
            let _ = writeln!(
                out,
                "  not billed, usage unknown ({} window(s)):",
                unknown.len()
            );
            for w in unknown {
                let _ = writeln!(
                    out,
                    "    {} {}  {} .. {}  {}",
                    text(&w["resource_type"]),
                    text(&w["resource_id"]),
                    text(&w["start"]),
                    text(&w["end"]),
                    text(&w["reason"])
                );
            }
        }
    }
    let gaps = v["gaps"].as_array().map(Vec::len).unwrap_or(0);
    if gaps > 0 {
        let _ = writeln!(
            out,
            "\n{gaps} data gap(s) overlap this period: see `steward meter gaps`"
        );
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
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
