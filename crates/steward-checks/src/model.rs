//! What a check says: one [`CheckResult`] per finding or per passed rule, each with the
//! evidence that led to it, and the run's exit status.
//!
//! Invariants:
//! - **A warning is a finding.** `WARN` is never noise: it names the resource and the value,
//!   and counts like a failure for the exit status (1). Known false alarms of the SCS reference
//!   tests are not reproduced (each difference is documented in `docs/checks.md`).
//! - **Could not run is not a verdict.** `ABORT` (the check could not complete: an API down,
//!   a timeout, Ctrl-C) makes the exit status 2, whatever else was found.

use std::collections::BTreeMap;

use serde::Serialize;

/// The verdict of one result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// The rule holds.
    Pass,
    /// The rule is broken.
    Fail,
    /// A recommendation is not followed, or a known defect of the peer shows.
    Warn,
    /// The check could not complete.
    Abort,
    /// Not applicable here (said why).
    Skip,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Warn => "WARN",
            Self::Abort => "ABORT",
            Self::Skip => "SKIP",
        })
    }
}

/// One result of a check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    /// The test id, e.g. `scs-0102-prop-os_distro` (the SCS test's id where there is one).
    pub id: String,
    /// The standard, e.g. `scs-0102`.
    pub standard: String,
    /// Its version, e.g. `v2`.
    pub version: String,
    /// What was checked (`image 5f0c… "Ubuntu 24.04"`); `None` for a rule over everything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The verdict.
    pub status: Status,
    /// What was found, in words.
    pub message: String,
    /// The resource ids and values that led to the verdict.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub evidence: BTreeMap<String, serde_json::Value>,
}

impl CheckResult {
    /// A result without evidence.
    pub fn new(
        id: impl Into<String>,
        (standard, version): (&str, &str),
        status: Status,
        message: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            standard: standard.to_owned(),
            version: version.to_owned(),
            subject: None,
            status,
            message: message.into(),
            evidence: BTreeMap::new(),
        }
    }

    /// With `subject`.
    pub fn about(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// With one more piece of evidence.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.evidence.insert(key.to_owned(), value.into());
        self
    }
}

/// Counts per status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Results in all.
    pub total: usize,
    /// Per status.
    pub pass: usize,
    /// Failures.
    pub fail: usize,
    /// Warnings.
    pub warn: usize,
    /// Aborted checks.
    pub abort: usize,
    /// Skipped checks.
    pub skip: usize,
}

impl Summary {
    /// The counts of `results`.
    pub fn of(results: &[CheckResult]) -> Self {
        let mut s = Self {
            total: results.len(),
            ..Self::default()
        };
        for r in results {
            match r.status {
                Status::Pass => s.pass += 1,
                Status::Fail => s.fail += 1,
                Status::Warn => s.warn += 1,
                Status::Abort => s.abort += 1,
                Status::Skip => s.skip += 1,
            }
        }
        s
    }

    /// The exit status: 2 when anything could not run, 1 for findings (FAIL, WARN), else 0.
    pub fn exit_code(&self) -> u8 {
        if self.abort > 0 {
            2
        } else if self.fail + self.warn > 0 {
            1
        } else {
            0
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} result(s): {} PASS, {} FAIL, {} WARN, {} ABORT, {} SKIP",
            self.total, self.pass, self.fail, self.warn, self.abort, self.skip
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_status_is_2_when_anything_aborted_then_1_for_findings() {
        let r = |status| CheckResult::new("t", ("scs-0102", "v2"), status, "m");
        assert_eq!(
            Summary::of(&[r(Status::Pass), r(Status::Skip)]).exit_code(),
            0
        );
        assert_eq!(
            Summary::of(&[r(Status::Pass), r(Status::Warn)]).exit_code(),
            1
        );
        assert_eq!(
            Summary::of(&[r(Status::Fail), r(Status::Abort)]).exit_code(),
            2
        );
        assert_eq!(
            Summary::of(&[r(Status::Fail), r(Status::Warn), r(Status::Pass)]).to_string(),
            "3 result(s): 1 PASS, 1 FAIL, 1 WARN, 0 ABORT, 0 SKIP"
        );
    }
}
