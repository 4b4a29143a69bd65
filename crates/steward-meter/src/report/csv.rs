//! CSV rendering of a report (RFC 4180 quoting). Every row carries the period, `as_of`, the
//! period state and `billed_until`, so a row read on its own still says what it covers.
//!
//! Without detail: one row per project and product. With detail: one row per project,
//! resource and product (the rows of a project and product add up to its line).

use super::{Report, provenance_text};

fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

const PERIOD_COLUMNS: &str = "period_start,period_end,as_of,period_state,billed_until";

/// The report as CSV rows, in report order.
pub fn to_csv(report: &Report) -> String {
    let period = [
        report.period.start.to_rfc3339(),
        report.period.end.to_rfc3339(),
        report.as_of.to_rfc3339(),
        report.period_state.as_str().to_owned(),
        report.billed_until.to_rfc3339(),
    ]
    .join(",");
    let mut rows = Vec::new();
    for project in &report.projects {
        let project_id = field(project.project_id.as_deref().unwrap_or_default());
        match &project.resources {
            Some(resources) => {
                for resource in resources {
                    for p in &resource.products {
                        rows.push(vec![
                            project_id.clone(),
                            resource.resource_type.as_str().to_owned(),
                            field(&resource.resource_id),
                            field(&p.product),
                            field(&p.unit),
                            p.quantity.clone(),
                            p.quantity_exact.clone(),
                        ]);
                    }
                }
            }
            None => {
                for line in &project.lines {
                    rows.push(vec![
                        project_id.clone(),
                        field(&line.product),
                        field(&line.unit),
                        line.quantity.clone(),
                        line.quantity_exact.clone(),
                        line.resources.to_string(),
                        field(&provenance_text(&line.provenance)),
                    ]);
                }
            }
        }
    }
    let header = if report.detail {
        ",project_id,resource_type,resource_id,product,unit,quantity,quantity_exact\n"
    } else {
        ",project_id,product,unit,quantity,quantity_exact,resources,provenance\n"
    };
    let mut text = String::from(PERIOD_COLUMNS);
    text.push_str(header);
    for cells in rows {
        text.push_str(&period);
        for cell in cells {
            text.push(',');
            text.push_str(&cell);
        }
        text.push('\n');
    }
    text
}
