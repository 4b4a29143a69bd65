//! The usage engine: facts → resource timelines → usage per project and product.
//!
//! - [`timeline`]: per resource, contiguous half-open state intervals (present, absent,
//!   unknown) with billable attributes, built as a pure function of the set of facts;
//! - [`catalogue`]: the products, configurable, with an SCS default;
//! - [`engine`]: the usage of a timeline in a [`period::Period`], as exact rationals.
//!
//! Invariants: usage is additive over adjacent periods (exact integers, rounding only when
//! printed); unknown windows are never billed, neither as zero nor as full; the owner of an
//! interval is the owner in force then (a transferred volume bills its donor, then its
//! recipient).

pub mod catalogue;
pub mod engine;
pub mod period;
pub mod timeline;

#[cfg(test)]
mod tests;
