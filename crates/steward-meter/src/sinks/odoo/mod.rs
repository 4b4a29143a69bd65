//! The Odoo sink: per project and closed month one **draft** customer invoice (`account.move`,
//! `move_type = out_invoice`) or draft sale order, for Odoo 16–19 ([`rpc`] speaks JSON-2,
//! JSON-RPC and XML-RPC). Pricing stays in Odoo: Steward sends products and quantities (and a
//! unit price only where `prices` names one).
//!
//! Invariants:
//! - **One record per project and month.** The key is `ref = steward:<YYYY-MM>:<project>`
//!   (`client_order_ref` on sale orders; draft invoices have no number). Every delivery
//!   searches by it before it creates, so a retry after a crash between "created in Odoo" and
//!   "recorded in the outbox" finds the record instead of making a second.
//! - **Drafts only are edited.** A draft found by its key gets the document's lines; a posted
//!   invoice is never written: a correction of a posted month becomes a credit note
//!   (`out_refund` reversing it, `ref …:c<n>:refund`) plus a new draft (`ref …:c<n>`); a
//!   confirmed sale order gets a new draft order with the changes.
//! - **Taxes explicit.** Every line carries `tax_ids` (`meter.sinks[].tax_ids`, default none),
//!   so Odoo does not add the company's default sale tax.
//! - **Nothing rounded silently.** Every written record is read back; a quantity (6 decimals,
//!   as in the report) or unit price that Odoo did not keep exactly — Odoo 16–18 round to the
//!   "Product Unit of Measure" and "Product Price" precisions, 2 digits by default — fails the
//!   delivery for good with what was lost and how to fix it, and a draft it created is removed.

pub mod rpc;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use self::rpc::{Client, OdooError, Protocol, Settings};
use super::{AttemptError, Document, Sink, SinkFuture};
use crate::close::correction::Correction;
use crate::report::Report;
use crate::usage::engine::Quantity;
use crate::usage::period::Period;

/// What the sink creates per project and month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OdooDocument {
    /// A draft customer invoice (`account.move`, `out_invoice`).
    #[default]
    Invoice,
    /// A draft quotation (`sale.order`).
    SaleOrder,
}

/// What the sink needs to know besides the connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping {
    /// Invoice or sale order.
    pub document: OdooDocument,
    /// Project id → partner `ref`; a project not listed is looked up by its id as `ref`.
    pub partners: BTreeMap<String, String>,
    /// Create a partner (`name` and `ref` = the project id) when none has the ref.
    pub create_partners: bool,
    /// Report product → `product.product.default_code`; a product not listed is looked up by
    /// its own name.
    pub products: BTreeMap<String, String>,
    /// Create a service product when none has the code.
    pub create_products: bool,
    /// Report product → unit price to send; products not listed are priced by Odoo.
    pub prices: BTreeMap<String, f64>,
    /// `account.tax` ids on every line (none by default).
    pub tax_ids: Vec<i64>,
}

/// Delivers documents to one Odoo database.
pub struct OdooSink {
    name: String,
    settings: Settings,
    mapping: Mapping,
    session: Mutex<Option<Client>>,
}

impl std::fmt::Debug for OdooSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdooSink")
            .field("name", &self.name)
            .field("url", &crate::store::redact_url(&self.settings.url))
            .field("database", &self.settings.database)
            .field("login", &self.settings.login)
            .finish_non_exhaustive()
    }
}

/// One line to invoice.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    /// The report's product.
    product: String,
    /// Its unit.
    unit: String,
    /// The quantity as the report prints it (6 decimals).
    quantity: String,
    /// Odoo's product id.
    product_id: i64,
    /// A unit price to send.
    price: Option<f64>,
}

/// A record read back: (product id, quantity, unit price, taxes) per line.
type ReadLine = (i64, f64, f64, Vec<i64>);

impl OdooSink {
    /// A sink called `name` on `settings`.
    pub fn new(name: &str, settings: Settings, mapping: Mapping) -> Result<Self, String> {
        rpc::base_url(&settings.url).map_err(|e| format!("url: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            settings,
            mapping,
            session: Mutex::new(None),
        })
    }

    /// The session, connecting (version, protocol, authentication) once.
    async fn client(&self) -> Result<Client, OdooError> {
        let mut session = self.session.lock().await;
        if let Some(client) = session.as_ref() {
            return Ok(client.clone());
        }
        let client = Client::connect(&self.settings).await?;
        tracing::info!(sink = %self.name, version = client.version, protocol = %client.protocol,
            "connected to Odoo");
        *session = Some(client.clone());
        Ok(client)
    }

    fn models(&self) -> (&'static str, &'static str, &'static str, &'static str) {
        // (model, line model, key field, lines field)
        match self.mapping.document {
            OdooDocument::Invoice => (
                "account.move",
                "account.move.line",
                "ref",
                "invoice_line_ids",
            ),
            OdooDocument::SaleOrder => (
                "sale.order",
                "sale.order.line",
                "client_order_ref",
                "order_line",
            ),
        }
    }

    async fn deliver_document(&self, document: &Document) -> Result<String, AttemptError> {
        let client = self.client().await.map_err(|e| self.failed(e))?;
        let result = match document {
            Document::Report(report) => self.deliver_report(&client, report).await,
            Document::Correction {
                correction,
                project_id,
            } => {
                self.deliver_correction(&client, correction, project_id.as_deref())
                    .await
            }
        };
        result.map_err(|e| match e {
            Failure::Odoo(e) => self.failed(e),
            Failure::Attempt(e) => e,
        })
    }

    /// An Odoo error as an attempt error; a transport failure also drops the session.
    fn failed(&self, error: OdooError) -> AttemptError {
        if error.is_transient() {
            if let Ok(mut session) = self.session.try_lock() {
                *session = None;
            }
            AttemptError::Transient(error.to_string())
        } else {
            AttemptError::Permanent(error.to_string())
        }
    }

    async fn partner(&self, client: &Client, project: &str) -> Result<i64, Failure> {
        let reference = self
            .mapping
            .partners
            .get(project)
            .map_or(project, String::as_str);
        let found = search_read(
            client,
            "res.partner",
            json!([["ref", "=", reference]]),
            &["id", "name"],
        )
        .await?;
        match found.as_slice() {
            [one] => Ok(id_of(one)),
            [] if self.mapping.create_partners => Ok(create(
                client,
                "res.partner",
                json!({"name": project, "ref": reference, "is_company": true}),
            )
            .await?),
            [] => Err(permanent(format!(
                "no Odoo partner has ref {reference:?} (project {project}): give the partner \
                 that ref, map the project in meter.sinks[{}].partners, or set create_partners",
                self.name
            ))),
            several => Err(permanent(format!(
                "{} Odoo partners have ref {reference:?}: ids {:?}; leave one",
                several.len(),
                several.iter().map(id_of).collect::<Vec<_>>()
            ))),
        }
    }

    /// The Odoo products of `products` (report product names), created where allowed.
    async fn products(
        &self,
        client: &Client,
        products: &[&str],
    ) -> Result<BTreeMap<String, i64>, Failure> {
        let code = |product: &str| {
            self.mapping
                .products
                .get(product)
                .cloned()
                .unwrap_or_else(|| product.to_owned())
        };
        let codes: Vec<String> = products.iter().map(|p| code(p)).collect();
        let found = search_read(
            client,
            "product.product",
            json!([["default_code", "in", codes]]),
            &["id", "default_code"],
        )
        .await?;
        let by_code: BTreeMap<String, i64> = found
            .iter()
            .filter_map(|p| Some((p["default_code"].as_str()?.to_owned(), id_of(p))))
            .collect();
        let mut out = BTreeMap::new();
        let mut missing = Vec::new();
        for product in products {
            let code = code(product);
            match by_code.get(&code) {
                Some(id) => {
                    out.insert((*product).to_owned(), *id);
                }
                None if self.mapping.create_products => {
                    // 16/17 name the kind `detailed_type`; 18 removed it for `type`.
                    let kind = if client.version <= 17 {
                        "detailed_type"
                    } else {
                        "type"
                    };
                    let id = create(
                        client,
                        "product.product",
                        json!({"name": product, "default_code": code, kind: "service",
                            "taxes_id": [[6, 0, self.mapping.tax_ids]]}),
                    )
                    .await?;
                    out.insert((*product).to_owned(), id);
                }
                None => missing.push(code),
            }
        }
        if !missing.is_empty() {
            return Err(permanent(format!(
                "no Odoo product has default_code {}: create them (service products, priced in \
                 Odoo), map the report's products in meter.sinks[{}].products, or set \
                 create_products",
                missing.join(", "),
                self.name
            )));
        }
        Ok(out)
    }

    /// The lines of `usage` (report product → 6-decimal quantity, unit), zero ones left out.
    async fn lines(
        &self,
        client: &Client,
        usage: &[(String, String, String)],
    ) -> Result<Vec<Line>, Failure> {
        let usage: Vec<&(String, String, String)> = usage
            .iter()
            .filter(|(_, _, q)| q.parse::<f64>().is_ok_and(|q| q != 0.0))
            .collect();
        let names: Vec<&str> = usage.iter().map(|(p, _, _)| p.as_str()).collect();
        let ids = self.products(client, &names).await?;
        Ok(usage
            .into_iter()
            .map(|(product, unit, quantity)| Line {
                product: product.clone(),
                unit: unit.clone(),
                quantity: quantity.clone(),
                product_id: ids[product],
                price: self.mapping.prices.get(product).copied(),
            })
            .collect())
    }

    /// The line values Odoo takes for `line` in the period `label`.
    fn line_vals(&self, version: u32, line: &Line, label: &str) -> Value {
        let quantity: f64 = line.quantity.parse().unwrap_or_default();
        let mut vals = Map::new();
        vals.insert("product_id".to_owned(), json!(line.product_id));
        vals.insert(
            "name".to_owned(),
            json!(format!("{} {label} ({})", line.product, line.unit)),
        );
        let taxes = json!([[6, 0, self.mapping.tax_ids]]);
        match self.mapping.document {
            OdooDocument::Invoice => {
                vals.insert("quantity".to_owned(), json!(quantity));
                vals.insert("tax_ids".to_owned(), taxes);
            }
            OdooDocument::SaleOrder => {
                vals.insert("product_uom_qty".to_owned(), json!(quantity));
                // 16–18 `tax_id`, 19 `tax_ids`.
                let field = if version >= 19 { "tax_ids" } else { "tax_id" };
                vals.insert(field.to_owned(), taxes);
            }
        }
        if let Some(price) = line.price {
            vals.insert("price_unit".to_owned(), json!(price));
        }
        Value::Object(vals)
    }

    /// The records of the document model with key `reference` (cancelled ones left out).
    async fn find(&self, client: &Client, reference: &str) -> Result<Vec<Value>, Failure> {
        self.find_any(client, &[reference.to_owned()]).await
    }

    /// The records of the document model whose key is one of `references`, in one search
    /// (cancelled ones left out).
    async fn find_any(
        &self,
        client: &Client,
        references: &[String],
    ) -> Result<Vec<Value>, Failure> {
        let (model, _, key, lines) = self.models();
        let mut domain = vec![json!([key, "in", references])];
        if self.mapping.document == OdooDocument::Invoice {
            domain.push(json!(["move_type", "in", ["out_invoice", "out_refund"]]));
        }
        let found = search_read(
            client,
            model,
            Value::Array(domain),
            &["id", "name", "state", key, lines],
        )
        .await?;
        Ok(found
            .into_iter()
            .filter(|r| r["state"].as_str() != Some("cancel"))
            .collect())
    }

    /// The record a correction numbered `sequence` applies to: the newest of the month's
    /// chain `base`, `base:c1`, …, `base:c<sequence - 1>` that is in Odoo (refunds left out),
    /// with its ref; found with one search.
    async fn newest_of_chain(
        &self,
        client: &Client,
        base: &str,
        sequence: i64,
    ) -> Result<Option<(String, Value)>, Failure> {
        let chain: Vec<String> = (0..sequence)
            .map(|n| {
                if n == 0 {
                    base.to_owned()
                } else {
                    format!("{base}:c{n}")
                }
            })
            .collect();
        let (_, _, key, _) = self.models();
        let found = self.find_any(client, &chain).await?;
        Ok(chain.into_iter().rev().find_map(|reference| {
            found
                .iter()
                .find(|r| r[key].as_str() == Some(reference.as_str()) && !is_refund(r))
                .map(|r| (reference, r.clone()))
        }))
    }

    /// Whether `record` can no longer be edited (a posted invoice, a confirmed order).
    fn is_final(&self, record: &Value) -> bool {
        let state = record["state"].as_str().unwrap_or("");
        match self.mapping.document {
            OdooDocument::Invoice => state == "posted",
            OdooDocument::SaleOrder => matches!(state, "sale" | "done"),
        }
    }

    /// Creates the document `reference` for `partner` with `lines`; returns its id.
    async fn create_document(
        &self,
        client: &Client,
        reference: &str,
        partner: i64,
        lines: &[Line],
        label: &str,
        origin: &str,
    ) -> Result<i64, Failure> {
        let (model, _, key, lines_field) = self.models();
        let mut vals = Map::new();
        vals.insert("partner_id".to_owned(), json!(partner));
        vals.insert(key.to_owned(), json!(reference));
        let commands: Vec<Value> = lines
            .iter()
            .map(|l| json!([0, 0, self.line_vals(client.version, l, label)]))
            .collect();
        vals.insert(lines_field.to_owned(), Value::Array(commands));
        match self.mapping.document {
            OdooDocument::Invoice => {
                vals.insert("move_type".to_owned(), json!("out_invoice"));
                vals.insert("invoice_origin".to_owned(), json!(origin));
                vals.insert(
                    "narration".to_owned(),
                    json!(format!("Steward usage {label}: {origin}")),
                );
            }
            OdooDocument::SaleOrder => {
                vals.insert("origin".to_owned(), json!(origin));
            }
        }
        create(client, model, Value::Object(vals)).await
    }

    /// Replaces the lines of draft `id` with `lines`.
    async fn replace_lines(
        &self,
        client: &Client,
        id: i64,
        record: &Value,
        lines: &[Line],
        label: &str,
    ) -> Result<(), Failure> {
        let (model, _, _, lines_field) = self.models();
        let mut commands: Vec<Value> = record[lines_field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_i64)
            .map(|line| json!([2, line, 0]))
            .collect();
        commands.extend(
            lines
                .iter()
                .map(|l| json!([0, 0, self.line_vals(client.version, l, label)])),
        );
        let mut vals = Map::new();
        vals.insert(lines_field.to_owned(), Value::Array(commands));
        call(
            client,
            model,
            "write",
            Some(&[id]),
            kwargs(&[("vals", Value::Object(vals))]),
        )
        .await?;
        Ok(())
    }

    /// The lines of record `id` as Odoo keeps them.
    async fn read_lines(&self, client: &Client, id: i64) -> Result<Vec<ReadLine>, Failure> {
        let (_, line_model, _, _) = self.models();
        let (back, quantity, taxes) = match self.mapping.document {
            OdooDocument::Invoice => ("move_id", "quantity", "tax_ids"),
            OdooDocument::SaleOrder => (
                "order_id",
                "product_uom_qty",
                if client.version >= 19 {
                    "tax_ids"
                } else {
                    "tax_id"
                },
            ),
        };
        let found = search_read(
            client,
            line_model,
            json!([[back, "=", id]]),
            &["product_id", quantity, "price_unit", taxes],
        )
        .await?;
        Ok(found
            .iter()
            .map(|l| {
                let product = match &l["product_id"] {
                    Value::Array(pair) => pair.first().and_then(Value::as_i64).unwrap_or(0),
                    other => other.as_i64().unwrap_or(0),
                };
                let mut tax_ids: Vec<i64> = l[taxes]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_i64)
                    .collect();
                tax_ids.sort_unstable();
                (
                    product,
                    l[quantity].as_f64().unwrap_or(f64::NAN),
                    l["price_unit"].as_f64().unwrap_or(f64::NAN),
                    tax_ids,
                )
            })
            .collect())
    }

    /// What Odoo did not keep of `lines` in record `id`, one sentence each (empty: all kept).
    async fn differences(
        &self,
        client: &Client,
        id: i64,
        lines: &[Line],
    ) -> Result<Vec<String>, Failure> {
        let mut stored = self.read_lines(client, id).await?;
        let mut taxes = self.mapping.tax_ids.clone();
        taxes.sort_unstable();
        let mut out = Vec::new();
        for line in lines {
            let position = stored.iter().position(|s| s.0 == line.product_id);
            let Some(found) = position.map(|i| stored.remove(i)) else {
                out.push(format!("the line of {} is missing", line.product));
                continue;
            };
            let kept = format!("{:.6}", found.1);
            if kept != line.quantity {
                out.push(format!(
                    "{}: quantity {} stored as {} (raise the decimal precision \"Product Unit \
                     of Measure\" to 6 digits)",
                    line.product, line.quantity, found.1
                ));
            }
            if let Some(price) = line.price
                && found.2 != price
            {
                out.push(format!(
                    "{}: unit price {price} stored as {} (raise the decimal precision \
                     \"Product Price\" to the digits of the price)",
                    line.product, found.2
                ));
            }
            if found.3 != taxes {
                out.push(format!(
                    "{}: taxes {:?} instead of {taxes:?}",
                    line.product, found.3
                ));
            }
        }
        for extra in stored {
            out.push(format!("an extra line of product id {}", extra.0));
        }
        Ok(out)
    }

    /// Reads `id` back; on a difference removes it when `created` (a draft made just now) and
    /// fails for good with what Odoo changed.
    async fn verify(
        &self,
        client: &Client,
        id: i64,
        lines: &[Line],
        created: bool,
        reference: &str,
    ) -> Result<(), Failure> {
        let differences = self.differences(client, id, lines).await?;
        if differences.is_empty() {
            return Ok(());
        }
        let (model, _, _, _) = self.models();
        let what = if created {
            call(client, model, "unlink", Some(&[id]), Map::new()).await?;
            "removed the draft it created"
        } else {
            "the draft holds what Odoo kept; do not post it"
        };
        Err(permanent(format!(
            "Odoo did not keep {reference} exactly ({what}): {}",
            differences.join("; ")
        )))
    }

    async fn deliver_report(&self, client: &Client, report: &Report) -> Result<String, Failure> {
        let project = report.project.as_deref().ok_or_else(|| {
            permanent(
                "usage that no fact names an owner project of cannot be invoiced; the report \
                 lists it"
                    .to_owned(),
            )
        })?;
        let period = Period {
            start: report.period.start,
            end: report.period.end,
        };
        let label = crate::close::period_label(&period);
        let reference = format!("steward:{label}:{project}");
        let usage: Vec<(String, String, String)> = report
            .projects
            .iter()
            .flat_map(|p| &p.lines)
            .map(|l| (l.product.clone(), l.unit.clone(), l.quantity.clone()))
            .collect();
        let lines = self.lines(client, &usage).await?;
        let origin = format!("report {}", report.content_digest);
        let (model, _, _, _) = self.models();
        let found = self.find(client, &reference).await?;
        match found.as_slice() {
            [] => {
                let partner = self.partner(client, project).await?;
                let id = self
                    .create_document(client, &reference, partner, &lines, &label, &origin)
                    .await?;
                self.verify(client, id, &lines, true, &reference).await?;
                Ok(format!("{model}/{id}"))
            }
            [record] if !self.is_final(record) => {
                let id = id_of(record);
                self.replace_lines(client, id, record, &lines, &label)
                    .await?;
                self.verify(client, id, &lines, false, &reference).await?;
                Ok(format!("{model}/{id}"))
            }
            [record] => {
                // Posted (or confirmed) already: delivered before; it must be this report.
                let id = id_of(record);
                let differences = self.differences(client, id, &lines).await?;
                if differences.is_empty() {
                    Ok(format!("{model}/{id}"))
                } else {
                    Err(permanent(format!(
                        "{reference} is {} in Odoo ({}) and differs from the closed report: {}; \
                         a posted record is never edited",
                        record["state"].as_str().unwrap_or("?"),
                        record["name"],
                        differences.join("; ")
                    )))
                }
            }
            several => Err(permanent(format!(
                "{} Odoo records have {reference}: ids {:?}; leave one",
                several.len(),
                several.iter().map(id_of).collect::<Vec<_>>()
            ))),
        }
    }

    async fn deliver_correction(
        &self,
        client: &Client,
        correction: &Correction,
        project: Option<&str>,
    ) -> Result<String, Failure> {
        let project = project.ok_or_else(|| {
            permanent("a correction of usage without an owner project cannot be invoiced".into())
        })?;
        let period = Period {
            start: correction.period.start,
            end: correction.period.end,
        };
        let label = crate::close::period_label(&period);
        let base = format!("steward:{label}:{project}");
        let this = format!("{base}:c{}", correction.sequence);
        let (model, _, _, _) = self.models();
        // Delivered before (a retry)? Then it is done.
        if let [record] = self.find(client, &this).await?.as_slice() {
            return Ok(format!("{model}/{} (correction {})", id_of(record), this));
        }
        // The record the correction applies to: the newest of the month's chain.
        let current = self
            .newest_of_chain(client, &base, correction.sequence)
            .await?;
        let Some((current_ref, record)) = current else {
            return Err(Failure::Attempt(AttemptError::Transient(format!(
                "{base} is not in Odoo yet: correction {} waits for the month's report",
                correction.sequence
            ))));
        };
        let id = id_of(&record);
        let stored = self.read_lines(client, id).await?;
        let after = self.after_correction(client, correction, &stored).await?;
        let origin = format!(
            "correction {} of {}",
            correction.sequence, correction.corrects
        );
        if !self.is_final(&record) {
            self.replace_lines(client, id, &record, &after, &label)
                .await?;
            self.verify(client, id, &after, false, &current_ref).await?;
            return Ok(format!("{model}/{id} (draft {current_ref} updated)"));
        }
        let partner = self.partner(client, project).await?;
        match self.mapping.document {
            OdooDocument::Invoice => {
                let refund_ref = format!("{this}:refund");
                let refund = match self.find(client, &refund_ref).await?.as_slice() {
                    [one] => id_of(one),
                    _ => {
                        let reversed = self.reversal_lines(client, id).await?;
                        let mut vals = Map::new();
                        vals.insert("move_type".to_owned(), json!("out_refund"));
                        vals.insert("partner_id".to_owned(), json!(partner));
                        vals.insert("ref".to_owned(), json!(refund_ref));
                        vals.insert("reversed_entry_id".to_owned(), json!(id));
                        vals.insert("invoice_origin".to_owned(), record["name"].clone());
                        vals.insert("invoice_line_ids".to_owned(), Value::Array(reversed));
                        create(client, "account.move", Value::Object(vals)).await?
                    }
                };
                let new = self
                    .create_document(client, &this, partner, &after, &label, &origin)
                    .await?;
                self.verify(client, new, &after, true, &this).await?;
                Ok(format!(
                    "account.move/{refund} (credit note for {}) + account.move/{new} (draft {this})",
                    record["name"].as_str().unwrap_or("?")
                ))
            }
            OdooDocument::SaleOrder => {
                // A confirmed order stays; the change is a new draft order.
                let delta = self.delta_lines(client, correction).await?;
                let new = self
                    .create_document(client, &this, partner, &delta, &label, &origin)
                    .await?;
                self.verify(client, new, &delta, true, &this).await?;
                Ok(format!("sale.order/{new} (draft {this}, the changes)"))
            }
        }
    }

    /// The lines after `correction`: what Odoo holds, with the corrected products' quantities
    /// replaced by the correction's `after`.
    async fn after_correction(
        &self,
        client: &Client,
        correction: &Correction,
        stored: &[ReadLine],
    ) -> Result<Vec<Line>, Failure> {
        let mut usage: BTreeMap<String, (String, String)> = BTreeMap::new();
        let changed: Vec<&str> = correction
            .projects
            .iter()
            .flat_map(|p| &p.lines)
            .map(|l| l.product.as_str())
            .collect();
        let ids = if changed.is_empty() {
            BTreeMap::new()
        } else {
            self.products(client, &changed).await?
        };
        for line in correction.projects.iter().flat_map(|p| &p.lines) {
            let after = Quantity::parse_exact(&line.after_exact)
                .map(|q| q.decimal(6))
                .unwrap_or_else(|| "0.000000".to_owned());
            usage.insert(line.product.clone(), (line.unit.clone(), after));
        }
        let mut lines: Vec<Line> = usage
            .iter()
            .filter(|(_, (_, q))| q.parse::<f64>().is_ok_and(|q| q != 0.0))
            .map(|(product, (unit, quantity))| Line {
                product: product.clone(),
                unit: unit.clone(),
                quantity: quantity.clone(),
                product_id: ids[product],
                price: self.mapping.prices.get(product).copied(),
            })
            .collect();
        let corrected: Vec<i64> = usage.keys().filter_map(|p| ids.get(p).copied()).collect();
        for (product_id, quantity, price, _) in stored {
            if corrected.contains(product_id) {
                continue;
            }
            lines.push(Line {
                product: format!("product {product_id}"),
                unit: String::new(),
                quantity: format!("{quantity:.6}"),
                product_id: *product_id,
                price: Some(*price),
            });
        }
        Ok(lines)
    }

    /// The correction's changes as lines (sale orders: a new order carries the delta).
    async fn delta_lines(
        &self,
        client: &Client,
        correction: &Correction,
    ) -> Result<Vec<Line>, Failure> {
        let usage: Vec<(String, String, String)> = correction
            .projects
            .iter()
            .flat_map(|p| &p.lines)
            .map(|l| {
                let delta = Quantity::parse_exact(&l.quantity_exact)
                    .map(|q| q.decimal(6))
                    .unwrap_or_else(|| l.quantity.clone());
                (l.product.clone(), l.unit.clone(), delta)
            })
            .collect();
        self.lines(client, &usage).await
    }

    /// Line commands reversing posted invoice `id` line for line (same product, quantity,
    /// price and taxes).
    async fn reversal_lines(&self, client: &Client, id: i64) -> Result<Vec<Value>, Failure> {
        let lines = search_read(
            client,
            "account.move.line",
            json!([["move_id", "=", id]]),
            &["product_id", "name", "quantity", "price_unit", "tax_ids"],
        )
        .await?;
        Ok(lines
            .iter()
            .map(|l| {
                let product = match &l["product_id"] {
                    Value::Array(pair) => pair.first().cloned().unwrap_or(Value::Bool(false)),
                    other => other.clone(),
                };
                json!([0, 0, {
                    "product_id": product,
                    "name": l["name"],
                    "quantity": l["quantity"],
                    "price_unit": l["price_unit"],
                    "tax_ids": [[6, 0, l["tax_ids"]]],
                }])
            })
            .collect())
    }
}

/// Why a step failed: Odoo's error (classified later) or a decided outcome.
#[derive(Debug)]
enum Failure {
    Odoo(OdooError),
    Attempt(AttemptError),
}

impl From<OdooError> for Failure {
    fn from(e: OdooError) -> Self {
        Self::Odoo(e)
    }
}

fn permanent(message: String) -> Failure {
    Failure::Attempt(AttemptError::Permanent(message))
}

fn is_refund(record: &Value) -> bool {
    record["name"]
        .as_str()
        .is_some_and(|n| n.starts_with("RINV"))
}

fn id_of(record: &Value) -> i64 {
    record["id"].as_i64().unwrap_or(0)
}

fn kwargs(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

async fn call(
    client: &Client,
    model: &str,
    method: &str,
    ids: Option<&[i64]>,
    kwargs: Map<String, Value>,
) -> Result<Value, Failure> {
    Ok(client.call(model, method, ids, kwargs).await?)
}

async fn search_read(
    client: &Client,
    model: &str,
    domain: Value,
    fields: &[&str],
) -> Result<Vec<Value>, Failure> {
    let found = call(
        client,
        model,
        "search_read",
        None,
        kwargs(&[("domain", domain), ("fields", json!(fields))]),
    )
    .await?;
    match found {
        Value::Array(records) => Ok(records),
        other => Err(Failure::Odoo(OdooError::Protocol(format!(
            "{model}.search_read answered {other}, not a list"
        )))),
    }
}

async fn create(client: &Client, model: &str, vals: Value) -> Result<i64, Failure> {
    let created = call(
        client,
        model,
        "create",
        None,
        kwargs(&[("vals_list", json!([vals]))]),
    )
    .await?;
    match created {
        Value::Array(ids) if ids.len() == 1 => Ok(ids[0].as_i64().unwrap_or(0)),
        Value::Number(id) => Ok(id.as_i64().unwrap_or(0)),
        other => Err(Failure::Odoo(OdooError::Protocol(format!(
            "{model}.create answered {other}, not one id"
        )))),
    }
}

impl Sink for OdooSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(
        &'a self,
        document: &'a Document,
    ) -> SinkFuture<'a, Result<String, AttemptError>> {
        Box::pin(self.deliver_document(document))
    }

    fn preview<'a>(&'a self, document: &'a Document) -> SinkFuture<'a, Option<String>> {
        Box::pin(async move {
            Some(match self.look(document).await {
                Ok(said) => said,
                Err(Failure::Odoo(e)) => format!("cannot look in Odoo: {e}"),
                Err(Failure::Attempt(e)) => format!("would fail: {e}"),
            })
        })
    }
}

impl OdooSink {
    /// What delivering `document` would do, from what Odoo holds under its keys.
    async fn look(&self, document: &Document) -> Result<String, Failure> {
        let client = self.client().await?;
        let (model, _, _, _) = self.models();
        let (period, project, correction) = match document {
            Document::Report(r) => (
                Period {
                    start: r.period.start,
                    end: r.period.end,
                },
                r.project.clone(),
                None,
            ),
            Document::Correction {
                correction,
                project_id,
            } => (
                Period {
                    start: correction.period.start,
                    end: correction.period.end,
                },
                project_id.clone(),
                Some(correction.sequence),
            ),
        };
        let Some(project) = project else {
            return Ok("refused: usage without an owner project cannot be invoiced".to_owned());
        };
        let base = format!("steward:{}:{project}", crate::close::period_label(&period));
        let describe = |record: &Value| {
            format!(
                "{model}/{} ({}{})",
                id_of(record),
                record["state"].as_str().unwrap_or("?"),
                record["name"]
                    .as_str()
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default()
            )
        };
        let Some(sequence) = correction else {
            return Ok(match self.find(&client, &base).await?.as_slice() {
                [] => format!("create a draft {model} with ref {base}"),
                [r] if !self.is_final(r) => {
                    format!("update {}: lines set to the report's", describe(r))
                }
                [r] => format!("no-op: {} has {base}", describe(r)),
                several => format!("refused: {} records have ref {base}", several.len()),
            });
        };
        let this = format!("{base}:c{sequence}");
        if let [r] = self.find(&client, &this).await?.as_slice() {
            return Ok(format!("no-op: delivered as {}", describe(r)));
        }
        if let Some((_, r)) = self.newest_of_chain(&client, &base, sequence).await? {
            return Ok(if !self.is_final(&r) {
                format!("update {}: the corrected quantities", describe(&r))
            } else if self.mapping.document == OdooDocument::Invoice {
                format!(
                    "a credit note reversing {} and a new draft with ref {this}",
                    describe(&r)
                )
            } else {
                format!(
                    "a new draft {model} {this} with the changes ({} stays)",
                    describe(&r)
                )
            });
        }
        Ok(format!("wait: {base} is not in Odoo yet"))
    }
}

/// The connection settings of a sink (for [`crate::config::SinkKind::Odoo`]).
pub fn settings(
    url: &str,
    database: &str,
    login: &str,
    api_key: &str,
    protocol: Protocol,
    timeout: Duration,
) -> Settings {
    Settings {
        url: url.to_owned(),
        database: database.to_owned(),
        login: login.to_owned(),
        api_key: api_key.to_owned(),
        protocol,
        timeout,
    }
}
