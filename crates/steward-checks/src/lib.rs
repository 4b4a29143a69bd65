//! Conformance checks an operator can trust: SCS image metadata (`images`), and — in progress
//! (issue 13) — standard images, entropy, Ceph RGW object storage and load-balancer health
//! monitors.
//!
//! Every check is a folder shaped like its siblings (`images/`, `standard_images/`,
//! `entropy/`: rules and tests) returning [`model::CheckResult`]s; checks that create things
//! run under [`runner::run`], which removes them whatever happens; [`output`] renders them as a table, JSON or JUnit XML with a summary,
//! and [`model::Summary::exit_code`] turns them into the exit status (0 all pass, 1 findings, 2
//! could not run).

pub mod entropy;
pub mod images;
pub mod loadbalancer;
pub mod model;
pub mod output;
pub mod runner;
pub mod standard_images;
