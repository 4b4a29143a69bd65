//! Timestamps as OpenStack emits them.
//!
//! OpenStack services print times in a dozen shapes (reference §1.3): RFC 3339 with `Z` or an
//! offset, Python's `str(datetime)` with a space separator, naive ISO values with 0–6 fraction
//! digits, integer epoch seconds, and `""` or `null` for "not set". This module turns all of them
//! into one [`Instant`]: microseconds since the Unix epoch, UTC.
//!
//! Invariants:
//! - naive values are UTC (every OpenStack service stores UTC);
//! - `""`, `null` and `"None"` are *absent* ([`None`]), never the epoch;
//! - anything else that does not parse is an error, so the caller can quarantine or fall back
//!   explicitly instead of guessing — also an epoch number outside 1970-01-01 … 9999-12-31,
//!   which is never "absent";
//! - a leap second (`23:59:60.f`) stays inside its minute: it is mapped into the last
//!   millisecond of `23:59:59` (`23:59:59.999` + f/1000), so it keeps its order and never
//!   collides with the next second, whose dedup keys it would otherwise take.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Timelike, Utc};
use serde_json::Value;

/// A point in time: microseconds since 1970-01-01T00:00:00Z.
///
/// Stored as a plain integer so that both store backends keep it exactly and compare it cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub i64);

impl Instant {
    /// The current time of this host.
    pub fn now() -> Self {
        Self(Utc::now().timestamp_micros())
    }

    /// Converts from a chrono UTC datetime; a leap second is kept inside its minute (see the
    /// module docs).
    pub fn from_datetime(dt: DateTime<Utc>) -> Self {
        let nanos = dt.nanosecond();
        if nanos >= 1_000_000_000 {
            let second = dt.timestamp() * 1_000_000;
            let leap_micros = i64::from(nanos - 1_000_000_000) / 1_000;
            return Self(second + 999_000 + leap_micros / 1_000);
        }
        Self(dt.timestamp_micros())
    }

    /// Microseconds since the epoch.
    pub fn micros(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (floor).
    pub fn seconds(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// As a chrono UTC datetime (saturating at chrono's range).
    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_micros(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// RFC 3339 with microseconds and `Z`, e.g. `2023-05-03T10:11:12.123456Z`.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}

impl serde::Serialize for Instant {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> serde::Deserialize<'de> for Instant {
    /// Reads any RFC 3339 form [`parse_timestamp`] accepts (what [`Instant`] writes included).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        match parse_timestamp(&text) {
            Ok(Some(instant)) => Ok(instant),
            Ok(None) => Err(serde::de::Error::custom("an empty time")),
            Err(e) => Err(serde::de::Error::custom(e)),
        }
    }
}

impl std::fmt::Display for Instant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A timestamp string that matches none of the shapes OpenStack emits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognised timestamp {0:?}")]
pub struct TimestampError(pub String);

/// Parses one timestamp string. `Ok(None)` means "absent" (`""`, `"None"`, `"null"`).
pub fn parse_timestamp(text: &str) -> Result<Option<Instant>, TimestampError> {
    Ok(parse_datetime(text)?.map(Instant::from_datetime))
}

/// True when `text` names an instant inside a leap second (`23:59:60.f`). Dedup keys that
/// hold an [`Instant`] add this, because the leap second shares its [`Instant`] range with the
/// last millisecond of `23:59:59`.
pub fn is_leap_second(text: &str) -> bool {
    text.contains(":60")
        && parse_datetime(text)
            .is_ok_and(|dt| dt.is_some_and(|dt| dt.nanosecond() >= 1_000_000_000))
}

/// [`parse_timestamp`] before the conversion to an [`Instant`].
fn parse_datetime(text: &str) -> Result<Option<DateTime<Utc>>, TimestampError> {
    let s = text.trim();
    if s.is_empty() || s == "None" || s == "null" {
        return Ok(None);
    }
    if let Some(instant) = parse_epoch(s) {
        return Ok(Some(instant.to_datetime()));
    }
    // OpenStack writes four-digit years; chrono's `%Y` would also take `-4` or `+12345`.
    let b = s.as_bytes();
    if !(b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-') {
        return Err(TimestampError(text.to_owned()));
    }
    let dated = parse_dated(s).ok_or_else(|| TimestampError(text.to_owned()))?;
    // An offset can carry the last day of 9999 past it.
    if dated.timestamp() > MAX_EPOCH_SECS {
        return Err(TimestampError(text.to_owned()));
    }
    Ok(Some(dated))
}

/// The RFC 3339 and Python forms of a dated timestamp.
fn parse_dated(s: &str) -> Option<DateTime<Utc>> {
    // Normalise the Python `str(datetime)` space separator to RFC 3339's `T`.
    let normalised: std::borrow::Cow<'_, str> = match s.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &s[..10], &s[11..]).into(),
        _ => s.into(),
    };
    if let Ok(dt) = DateTime::parse_from_rfc3339(&normalised) {
        return Some(dt.with_timezone(&Utc));
    }
    // Offsets without a colon (`+0000`) and naive values.
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(dt) = DateTime::parse_from_str(&normalised, format) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&normalised, format) {
            return Some(naive.and_utc());
        }
    }
    let date = NaiveDate::parse_from_str(&normalised, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc())
}

/// Integer (or decimal) epoch seconds, as neutron's `l3.meter` sends them.
fn parse_epoch(s: &str) -> Option<Instant> {
    if !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') || s.len() < 9 {
        return None;
    }
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = whole.parse().ok()?;
    let mut micros_text = frac.chars().take(6).collect::<String>();
    while micros_text.len() < 6 {
        micros_text.push('0');
    }
    let micros: i64 = micros_text.parse().ok()?;
    if secs > MAX_EPOCH_SECS {
        return None;
    }
    Some(Instant(secs.checked_mul(1_000_000)?.checked_add(micros)?))
}

/// 9999-12-31T23:59:59Z: the last second a timestamp may name.
const MAX_EPOCH_SECS: i64 = 253_402_300_799;

/// Epoch seconds (integer or decimal) from a JSON number, within 1970 … 9999.
fn epoch_number(n: &serde_json::Number) -> Result<Instant, TimestampError> {
    let out_of_range = || {
        TimestampError(format!(
            "{n} (epoch seconds out of range 0 … {MAX_EPOCH_SECS})"
        ))
    };
    if let Some(secs) = n.as_i64() {
        if !(0..=MAX_EPOCH_SECS).contains(&secs) {
            return Err(out_of_range());
        }
        return Ok(Instant(secs * 1_000_000));
    }
    match n.as_f64() {
        Some(secs) if secs.is_finite() && (0.0..=MAX_EPOCH_SECS as f64).contains(&secs) => {
            Ok(Instant((secs * 1_000_000.0).round() as i64))
        }
        _ => Err(out_of_range()),
    }
}

/// Parses a JSON value that may hold a timestamp: a string, an integer epoch, or `null`.
pub fn parse_timestamp_value(value: &Value) -> Result<Option<Instant>, TimestampError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => parse_timestamp(s),
        Value::Number(n) => epoch_number(n).map(Some),
        other => Err(TimestampError(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        parse_timestamp(s).unwrap().unwrap().micros()
    }

    const BASE: i64 = 1_683_108_672_000_000; // 2023-05-03T10:11:12Z

    #[test]
    fn every_openstack_shape_parses_to_the_same_instant() {
        // Reference §1.3, one line per source.
        assert_eq!(at("2023-05-03 10:11:12"), BASE); // envelope, fraction omitted
        assert_eq!(at("2023-05-03 10:11:12.123456"), BASE + 123_456); // envelope
        assert_eq!(at("2023-05-03 10:11:12+00:00"), BASE); // nova legacy created_at
        assert_eq!(at("2023-05-03T10:11:12.000000"), BASE); // nova legacy launched_at
        assert_eq!(at("2023-05-03T10:11:12Z"), BASE); // nova versioned, glance, neutron
        assert_eq!(at("2023-05-03T10:11:12+00:00"), BASE); // cinder
        assert_eq!(at("2023-05-03T10:11:12.123456+00:00"), BASE + 123_456); // cinder, ceilometer
        assert_eq!(at("2023-05-03T10:11:12.123456"), BASE + 123_456); // ceilometer generated
        assert_eq!(at("2023-05-03T10:11:12.1"), BASE + 100_000); // short fraction
        assert_eq!(at("1683108672"), BASE); // neutron l3.meter epoch seconds
        assert_eq!(at("2023-05-03T12:11:12+02:00"), BASE); // non-UTC offset
        assert_eq!(at("2023-05-03T12:11:12+0200"), BASE); // offset without colon
    }

    #[test]
    fn empty_and_none_are_absent_not_epoch() {
        for s in ["", "  ", "None", "null"] {
            assert_eq!(parse_timestamp(s), Ok(None), "{s:?}");
        }
        assert_eq!(parse_timestamp_value(&Value::Null), Ok(None));
    }

    #[test]
    fn garbage_is_an_error() {
        for s in [
            "yesterday",
            "2023-13-45T99:00:00",
            "12:00",
            "2023/05/03 10:11:12",
            // Found by cargo fuzz: chrono's %Y takes any number of digits and a sign.
            "-4-01-01",
            "+12345-01-01T00:00:00Z",
            "99-01-01",
            // Past 9999 once the offset is applied.
            "9999-12-31T23:00:00-05:00",
        ] {
            assert!(parse_timestamp(s).is_err(), "{s:?} should not parse");
        }
    }

    #[test]
    fn short_digit_runs_are_not_epochs() {
        assert!(
            parse_timestamp("20230503").is_err(),
            "a compact date is not 1970-08-23"
        );
    }

    #[test]
    fn json_numbers_are_epoch_seconds() {
        assert_eq!(
            parse_timestamp_value(&serde_json::json!(1683108672)),
            Ok(Some(Instant(BASE)))
        );
    }

    #[test]
    fn numbers_out_of_range_are_errors_never_absent() {
        for n in [
            serde_json::json!(-1),
            serde_json::json!(i64::MAX),
            serde_json::json!(u64::MAX),
            serde_json::json!(253_402_300_800_i64),
            serde_json::json!(1e300),
            serde_json::json!(-0.5),
        ] {
            let result = parse_timestamp_value(&n);
            assert!(result.is_err(), "{n} gave {result:?}");
        }
        assert_eq!(
            parse_timestamp_value(&serde_json::json!(1683108672.25)),
            Ok(Some(Instant(BASE + 250_000)))
        );
        assert!(parse_timestamp("99999999999999999999").is_err());
        assert!(parse_timestamp("253402300800").is_err());
    }

    #[test]
    fn a_leap_second_stays_in_its_minute_and_apart_from_the_next_second() {
        let midnight = at("2016-12-31T23:59:59Z") + 1_000_000;
        let leap = at("2016-12-31T23:59:60Z");
        let leap_late = at("2016-12-31T23:59:60.5Z");
        assert!(
            leap < midnight && leap_late < midnight,
            "{leap} {leap_late} {midnight}"
        );
        assert!(at("2016-12-31T23:59:59.998Z") < leap && leap < leap_late);
        assert_eq!(Instant(leap).seconds(), Instant(midnight).seconds() - 1);
        assert_eq!(
            at("2016-12-31 23:59:60.500000"),
            leap_late,
            "every shape alike"
        );
    }

    #[test]
    fn rfc3339_round_trip() {
        let i = Instant(BASE + 5);
        assert_eq!(i.to_rfc3339(), "2023-05-03T10:11:12.000005Z");
        assert_eq!(parse_timestamp(&i.to_rfc3339()).unwrap(), Some(i));
    }

    proptest::proptest! {
        #[test]
        fn every_shape_round_trips_at_its_precision(micros in 0i64..4_102_444_800_000_000) {
            let t = Instant(micros).to_datetime();
            let whole = Instant(micros - micros.rem_euclid(1_000_000));
            let shapes = [
                (t.format("%Y-%m-%d %H:%M:%S%.6f").to_string(), Instant(micros)),
                (t.format("%Y-%m-%d %H:%M:%S").to_string(), whole),
                (t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(), Instant(micros)),
                (t.format("%Y-%m-%dT%H:%M:%SZ").to_string(), whole),
                (t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(), Instant(micros)),
                (t.format("%Y-%m-%d %H:%M:%S+00:00").to_string(), whole),
            ];
            // Epoch text needs 9+ digits (from 1973 on): shorter digit runs are not epochs.
            let epoch = (whole.seconds() >= 100_000_000).then(|| (whole.seconds().to_string(), whole));
            for (text, expected) in shapes.into_iter().chain(epoch) {
                proptest::prop_assert_eq!(parse_timestamp(&text), Ok(Some(expected)), "{}", text);
            }
        }
    }
}
