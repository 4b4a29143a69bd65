//! Billing periods: half-open UTC intervals `[start, end)`.

use chrono::{Datelike, NaiveDate};

use crate::time::{Instant, parse_timestamp};

/// A half-open UTC interval `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    /// First instant inside the period.
    pub start: Instant,
    /// First instant after the period.
    pub end: Instant,
}

/// A period that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeriodError {
    /// Not `YYYY-MM`.
    #[error("period {0:?} is not a month like 2026-10")]
    Month(String),
    /// Not an RFC 3339 time.
    #[error("{0:?} is not an RFC 3339 time like 2026-10-01T00:00:00Z")]
    Time(String),
    /// `end` is not after `start`.
    #[error("the period must end after it starts")]
    Empty,
}

impl Period {
    /// `[start, end)`; `end` must be after `start`.
    pub fn new(start: Instant, end: Instant) -> Result<Self, PeriodError> {
        if end <= start {
            return Err(PeriodError::Empty);
        }
        Ok(Self { start, end })
    }

    /// The calendar month `YYYY-MM` in UTC.
    pub fn month(text: &str) -> Result<Self, PeriodError> {
        let bad = || PeriodError::Month(text.to_owned());
        let first =
            NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").map_err(|_| bad())?;
        if first.format("%Y-%m").to_string() != text {
            return Err(bad());
        }
        let next = if first.month() == 12 {
            NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
        }
        .ok_or_else(bad)?;
        let at = |d: NaiveDate| {
            d.and_hms_opt(0, 0, 0)
                .map(|t| Instant::from_datetime(t.and_utc()))
                .ok_or_else(bad)
        };
        Self::new(at(first)?, at(next)?)
    }

    /// From two RFC 3339 times.
    pub fn from_rfc3339(from: &str, to: &str) -> Result<Self, PeriodError> {
        let parse = |s: &str| match parse_timestamp(s) {
            Ok(Some(t)) => Ok(t),
            _ => Err(PeriodError::Time(s.to_owned())),
        };
        Self::new(parse(from)?, parse(to)?)
    }

    /// Length in microseconds.
    pub fn micros(&self) -> i64 {
        self.end.micros() - self.start.micros()
    }

    /// The overlap of `[start, end)` (either side open when `None`) with this period.
    pub fn clip(&self, start: Option<Instant>, end: Option<Instant>) -> Option<(Instant, Instant)> {
        let s = start.map_or(self.start, |s| s.max(self.start));
        let e = end.map_or(self.end, |e| e.min(self.end));
        (s < e).then_some((s, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_half_open_utc() {
        let p = Period::month("2026-10").unwrap();
        assert_eq!(p.start.to_rfc3339(), "2026-10-01T00:00:00.000000Z");
        assert_eq!(p.end.to_rfc3339(), "2026-11-01T00:00:00.000000Z");
        let dec = Period::month("2026-12").unwrap();
        assert_eq!(dec.end.to_rfc3339(), "2027-01-01T00:00:00.000000Z");
        for bad in ["2026-13", "2026-1", "october", "2026-10-01"] {
            assert!(Period::month(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn explicit_periods_must_not_be_empty() {
        assert!(Period::from_rfc3339("2026-10-02T00:00:00Z", "2026-10-01T00:00:00Z").is_err());
        assert!(Period::from_rfc3339("yesterday", "2026-10-01T00:00:00Z").is_err());
        let p = Period::from_rfc3339("2026-10-01T00:00:00Z", "2026-10-01T01:00:00+00:00").unwrap();
        assert_eq!(p.micros(), 3_600_000_000);
    }
}
