//! UTC timestamps as the cache stores them (RFC 3339, `Z` suffix).
//!
//! Owns [`Timestamp`]: parsing (strict: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)`),
//! formatting, ordering (by instant, never by text) and the current time. Written here rather
//! than pulled from a date crate because the cache needs only this much.
//!
//! Depends on nothing but `std` and [`crate::error`].

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::FieldError;

/// An instant in UTC with nanosecond precision, from 1970 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    secs: i64,
    nanos: u32,
}

const MAX_SECS: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z

impl Timestamp {
    /// The current time (clamped to the epoch if the clock is before it).
    pub fn now() -> Timestamp {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            secs: i64::try_from(d.as_secs()).unwrap_or(MAX_SECS).min(MAX_SECS),
            nanos: d.subsec_nanos(),
        }
    }

    /// An instant from seconds and nanoseconds since the Unix epoch, if in range.
    pub fn from_unix(secs: i64, nanos: u32) -> Option<Timestamp> {
        ((0..=MAX_SECS).contains(&secs) && nanos < 1_000_000_000)
            .then_some(Timestamp { secs, nanos })
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(self) -> i64 {
        self.secs
    }

    /// Sub-second nanoseconds.
    pub fn subsec_nanos(self) -> u32 {
        self.nanos
    }

    /// Parses an RFC 3339 UTC time: `2025-06-01T12:00:00Z`, optionally with a fraction of up to
    /// nine digits, and `Z` or `+00:00` as the offset. Anything else is refused.
    pub fn parse(s: &str) -> Result<Timestamp, FieldError> {
        let bad = |why: &str| {
            FieldError::new(
                "measured_at",
                format!("{why} in {s:?} (want RFC 3339 UTC, e.g. 2025-06-01T12:00:00Z)"),
            )
        };
        if s.len() > 40 || !s.is_ascii() {
            return Err(bad("not an RFC 3339 time"));
        }
        let b = s.as_bytes();
        if b.len() < 20 {
            return Err(bad("too short"));
        }
        let digits = |from: usize, to: usize| -> Result<i64, FieldError> {
            let part = &b[from..to];
            if part.iter().all(u8::is_ascii_digit) {
                Ok(part
                    .iter()
                    .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
            } else {
                Err(bad("expected digits"))
            }
        };
        let sep = |i: usize, c: u8| {
            if b[i] == c {
                Ok(())
            } else {
                Err(bad("misplaced separator"))
            }
        };
        let year = digits(0, 4)?;
        sep(4, b'-')?;
        let month = digits(5, 7)?;
        sep(7, b'-')?;
        let day = digits(8, 10)?;
        sep(10, b'T')?;
        let hour = digits(11, 13)?;
        sep(13, b':')?;
        let minute = digits(14, 16)?;
        sep(16, b':')?;
        let second = digits(17, 19)?;
        let mut i = 19;
        let mut nanos = 0u32;
        if b[i] == b'.' {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            let n = end - start;
            if n == 0 || n > 9 {
                return Err(bad("fraction must have 1 to 9 digits"));
            }
            let frac = digits(start, end)?;
            nanos = u32::try_from(frac * 10i64.pow(9 - n as u32)).map_err(|_| bad("fraction"))?;
            i = end;
        }
        match &s[i..] {
            "Z" | "+00:00" => {}
            _ => return Err(bad("offset must be Z (UTC)")),
        }
        if !(1970..=9999).contains(&year) {
            return Err(bad("year out of range 1970..=9999"));
        }
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(bad("no such date"));
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(bad("no such time of day"));
        }
        let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
        Ok(Timestamp { secs, nanos })
    }
}

impl fmt::Display for Timestamp {
    /// `YYYY-MM-DDTHH:MM:SSZ`, with a fraction (trailing zeros trimmed) when not whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )?;
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian calendar).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_formats_known_instants() {
        let t = Timestamp::parse("2025-06-01T12:34:56Z").unwrap();
        assert_eq!(t.unix_seconds(), 1_748_781_296);
        assert_eq!(t.to_string(), "2025-06-01T12:34:56Z");
        let t = Timestamp::parse("2024-02-29T00:00:00.120+00:00").unwrap();
        assert_eq!(t.subsec_nanos(), 120_000_000);
        assert_eq!(t.to_string(), "2024-02-29T00:00:00.12Z");
        assert_eq!(
            Timestamp::parse("1970-01-01T00:00:00Z")
                .unwrap()
                .unix_seconds(),
            0
        );
    }

    #[test]
    fn orders_by_instant_not_text() {
        let a = Timestamp::parse("2025-01-01T00:00:05Z").unwrap();
        let b = Timestamp::parse("2025-01-01T00:00:05.1Z").unwrap();
        assert!(a < b, "text order would say otherwise");
    }

    #[test]
    fn refuses_what_is_not_rfc3339_utc() {
        for s in [
            "",
            "2025-06-01",
            "2025-06-01 12:00:00Z",
            "2025-06-01T12:00:00",
            "2025-06-01T12:00:00+02:00",
            "2025-02-29T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-06-01T24:00:00Z",
            "2025-06-01T12:00:60Z",
            "2025-06-01T12:00:00.Z",
            "2025-06-01T12:00:00.1234567890Z",
            "1969-12-31T23:59:59Z",
            "2025-06-01T12:00:00Zjunk",
            "２025-06-01T12:00:00Z",
        ] {
            assert!(Timestamp::parse(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn now_round_trips() {
        let t = Timestamp::now();
        assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(secs in 0..=MAX_SECS, nanos in 0u32..1_000_000_000) {
            let t = Timestamp::from_unix(secs, nanos).unwrap();
            prop_assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
        }
    }
}
