//! Usage of one timeline over one period, per product, in exact integers.
//!
//! Quantities are exact rationals `numerator / denominator` with a fixed denominator per
//! product (`3_600_000_000 × divisor`: microseconds per hour times the divisor), so adding the
//! usage of two adjacent periods gives exactly the usage of their union. Rounding happens only
//! when a quantity is printed ([`Quantity::decimal`]).

use std::collections::BTreeSet;

use super::catalogue::Product;
use super::period::Period;
use super::timeline::{Presence, Segment, Timeline};
use crate::time::Instant;

/// Microseconds per hour.
pub const MICROS_PER_HOUR: i128 = 3_600_000_000;

/// An exact quantity `numerator / denominator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quantity {
    /// Numerator (e.g. microsecond·GiB).
    pub numerator: i128,
    /// Denominator (microseconds per hour × divisor).
    pub denominator: i128,
}

impl Quantity {
    /// Adds another quantity exactly. Quantities of one product share a denominator; others
    /// are brought to a common one (the least common multiple), so a sum is never rounded.
    pub fn add(&mut self, other: Quantity) {
        if other.denominator == 0 {
            return;
        }
        if self.denominator == 0 {
            *self = other;
            return;
        }
        if self.denominator == other.denominator {
            self.numerator += other.numerator;
            return;
        }
        let common =
            self.denominator / gcd(self.denominator, other.denominator) * other.denominator;
        self.numerator = self.numerator * (common / self.denominator)
            + other.numerator * (common / other.denominator);
        self.denominator = common;
    }

    /// The quantity as a decimal string with `places` decimals, rounded half to even.
    pub fn decimal(&self, places: u32) -> String {
        if self.denominator == 0 {
            return format!("{:.*}", places as usize, 0.0);
        }
        let scale = 10i128.pow(places);
        let n = self.numerator * scale;
        let (mut q, r) = (n / self.denominator, n % self.denominator);
        let twice = 2 * r.abs();
        if twice > self.denominator || (twice == self.denominator && q % 2 != 0) {
            q += n.signum();
        }
        let (whole, frac) = (q / scale, (q % scale).abs());
        let sign = if q < 0 && whole == 0 { "-" } else { "" };
        if places == 0 {
            format!("{sign}{whole}")
        } else {
            format!("{sign}{whole}.{frac:0width$}", width = places as usize)
        }
    }

    /// Reads what [`Quantity::exact`] wrote (`numerator/denominator`); `None` for anything
    /// else or a zero denominator.
    pub fn parse_exact(text: &str) -> Option<Quantity> {
        let (n, d) = text.split_once('/')?;
        let (numerator, denominator) = (n.parse().ok()?, d.parse().ok()?);
        (denominator != 0).then_some(Quantity {
            numerator,
            denominator,
        })
    }

    /// `self - other`, exactly.
    pub fn minus(&self, other: Quantity) -> Quantity {
        let mut out = *self;
        out.add(Quantity {
            numerator: -other.numerator,
            denominator: other.denominator,
        });
        out
    }

    /// Whether the quantity is zero.
    pub fn is_zero(&self) -> bool {
        self.numerator == 0 || self.denominator == 0
    }

    /// `numerator/denominator` in lowest terms.
    pub fn exact(&self) -> String {
        let g = gcd(self.numerator.abs(), self.denominator.abs()).max(1);
        format!("{}/{}", self.numerator / g, self.denominator / g)
    }
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// What one resource used of one product in the period.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductUsage {
    /// Filled-in product name.
    pub product: String,
    /// Unit.
    pub unit: String,
    /// Exact quantity.
    pub quantity: Quantity,
    /// Provenance of the intervals behind it.
    pub origins: BTreeSet<String>,
}

/// A window in which usage cannot be stated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownWindow {
    /// Start.
    pub start: Instant,
    /// End (exclusive).
    pub end: Instant,
    /// Why: creation not seen, or a missing attribute.
    pub reason: String,
}

/// One billed interval of a resource (for `--detail`).
#[derive(Debug, Clone, PartialEq)]
pub struct BilledInterval {
    /// Start, clipped to the period.
    pub start: Instant,
    /// End, clipped to the period.
    pub end: Instant,
    /// Run state.
    pub status: super::timeline::Status,
    /// Attributes in force.
    pub attributes: std::collections::BTreeMap<String, serde_json::Value>,
}

/// The usage of one resource in one period.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceUsage {
    /// The owner (the latest known owner in the period).
    pub project_id: Option<String>,
    /// Per product.
    pub products: Vec<ProductUsage>,
    /// Windows that could not be billed.
    pub unknown: Vec<UnknownWindow>,
    /// Present intervals inside the period.
    pub intervals: Vec<BilledInterval>,
}

/// Computes the usage of `timeline` in `period` under `catalogue`, one entry per owner: a
/// resource transferred during the period bills its donor, then its recipient. Unknown windows
/// go to the resource's first known owner.
pub fn usage_by_owner(
    timeline: &Timeline,
    period: &Period,
    catalogue: &[Product],
) -> Vec<ResourceUsage> {
    let owner_of_unknown = timeline.segments.iter().find_map(|s| s.project_id.clone());
    let mut by_owner: Vec<ResourceUsage> = Vec::new();
    let products: Vec<&Product> = catalogue
        .iter()
        .filter(|p| p.resource == timeline.resource_type)
        .collect();
    for segment in &timeline.segments {
        let Some((start, end)) = period.clip(segment.start, segment.end) else {
            continue;
        };
        match segment.presence {
            Presence::Absent => {}
            Presence::Unknown => {
                let i = slot(&mut by_owner, &owner_of_unknown);
                by_owner[i].unknown.push(UnknownWindow {
                    start,
                    end,
                    reason: "creation not seen".to_owned(),
                });
            }
            Presence::Undescribed => {
                // It existed: what needs nothing but existence bills; the rest is unknown.
                let i = slot(&mut by_owner, &segment.project_id);
                let usage = &mut by_owner[i];
                let micros = i128::from(end.micros() - start.micros());
                let (blind, described): (Vec<&Product>, Vec<&Product>) =
                    products.iter().partition(|p| p.needs_only_existence());
                for product in &blind {
                    add(usage, product, product.product.clone(), micros, 1, segment);
                }
                if !blind.is_empty() {
                    usage.intervals.push(BilledInterval {
                        start,
                        end,
                        status: segment.status,
                        attributes: segment.attributes.clone(),
                    });
                }
                if !described.is_empty() {
                    let names: Vec<&str> = described.iter().map(|p| p.product.as_str()).collect();
                    usage.unknown.push(UnknownWindow {
                        start,
                        end,
                        reason: format!(
                            "creation not seen: it existed, but its {} before its first fact \
                             is not known",
                            names.join(", ")
                        ),
                    });
                }
            }
            Presence::Present => {
                let i = slot(&mut by_owner, &segment.project_id);
                let usage = &mut by_owner[i];
                usage.intervals.push(BilledInterval {
                    start,
                    end,
                    status: segment.status,
                    attributes: segment.attributes.clone(),
                });
                let micros = i128::from(end.micros() - start.micros());
                for product in &products {
                    if !product.bills(segment.status) {
                        continue;
                    }
                    let factor = match &product.attribute {
                        None => Some(1i128),
                        Some(attr) => segment.attributes.get(attr).and_then(integer),
                    };
                    if let Some(key) = product.missing_placeholder(&segment.attributes) {
                        // Billing "instance:unknown" would bill a product nobody priced.
                        usage.unknown.push(UnknownWindow {
                            start,
                            end,
                            reason: format!("{} has no {key}", product.product),
                        });
                        continue;
                    }
                    let Some(factor) = factor else {
                        usage.unknown.push(UnknownWindow {
                            start,
                            end,
                            reason: format!(
                                "{} has no {}",
                                product.product,
                                product.attribute.as_deref().unwrap_or_default()
                            ),
                        });
                        continue;
                    };
                    let name = product.name_for(&segment.attributes);
                    add(usage, product, name, micros, factor, segment);
                }
            }
        }
    }
    by_owner
}

/// Adds `micros × factor` of `product` (named `name`) to `usage`.
fn add(
    usage: &mut ResourceUsage,
    product: &Product,
    name: String,
    micros: i128,
    factor: i128,
    segment: &Segment,
) {
    let quantity = Quantity {
        numerator: micros * factor,
        denominator: MICROS_PER_HOUR * i128::from(product.divisor),
    };
    match usage.products.iter_mut().find(|p| p.product == name) {
        Some(p) => {
            p.quantity.add(quantity);
            p.origins.extend(segment.origins.iter().cloned());
        }
        None => usage.products.push(ProductUsage {
            product: name,
            unit: product.unit.clone(),
            quantity,
            origins: segment.origins.clone(),
        }),
    }
}

/// The index of `project`'s entry, added when missing.
fn slot(by_owner: &mut Vec<ResourceUsage>, project: &Option<String>) -> usize {
    if let Some(i) = by_owner.iter().position(|u| &u.project_id == project) {
        return i;
    }
    by_owner.push(ResourceUsage {
        project_id: project.clone(),
        products: Vec::new(),
        unknown: Vec::new(),
        intervals: Vec::new(),
    });
    by_owner.len() - 1
}

/// A JSON number as an integer (sizes are integral; a float is rounded).
fn integer(value: &serde_json::Value) -> Option<i128> {
    value.as_i64().map(i128::from).or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f.round() as i128)
    })
}

#[cfg(test)]
mod tests {
    use super::Quantity;

    #[test]
    fn decimals_round_half_to_even() {
        let q = |n, d| Quantity {
            numerator: n,
            denominator: d,
        };
        assert_eq!(q(1, 3).decimal(6), "0.333333");
        assert_eq!(q(2, 3).decimal(6), "0.666667");
        assert_eq!(q(5, 2).decimal(0), "2");
        assert_eq!(q(7, 2).decimal(0), "4");
        assert_eq!(q(25, 10_000_000).decimal(6), "0.000002");
        assert_eq!(q(35, 10_000_000).decimal(6), "0.000004");
        assert_eq!(
            q(3_600_000_000 * 5 + 1_800_000_000, 3_600_000_000).decimal(6),
            "5.500000"
        );
        assert_eq!(q(0, 0).decimal(6), "0.000000");
        assert_eq!(q(6, 8).exact(), "3/4");
    }

    #[test]
    fn sums_are_exact_across_denominators() {
        let mut sum = Quantity::default();
        sum.add(Quantity {
            numerator: 1,
            denominator: 3,
        });
        sum.add(Quantity {
            numerator: 1,
            denominator: 6,
        });
        assert_eq!(sum.exact(), "1/2");
        sum.add(Quantity::default());
        assert_eq!(sum.exact(), "1/2");
    }
}
