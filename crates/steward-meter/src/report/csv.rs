//! CSV rendering of a report: one row per project and product (RFC 4180 quoting).

use super::Report;

fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// `project_id,product,unit,quantity,resources,provenance` rows, in report order.
pub fn to_csv(report: &Report) -> String {
    let mut out = String::from("project_id,product,unit,quantity,resources,provenance\n");
    for project in report.value["projects"].as_array().into_iter().flatten() {
        let project_id = project["project_id"].as_str().unwrap_or_default();
        for line in project["lines"].as_array().into_iter().flatten() {
            let row = [
                field(project_id),
                field(line["product"].as_str().unwrap_or_default()),
                field(line["unit"].as_str().unwrap_or_default()),
                field(line["quantity"].as_str().unwrap_or_default()),
                line["resources"].to_string(),
                field(&super::provenance_text(line)),
            ];
            out.push_str(&row.join(","));
            out.push('\n');
        }
    }
    out
}
