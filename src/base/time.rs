//! The one clock and the time vocabulary: the wall clock in Unix seconds ([`now`]) and
//! milliseconds ([`now_ms`]); timestamps written and read as RFC 3339 in UTC
//! (`2026-11-22T22:16:04Z`); durations written as `30s`, `1h30m`, `7d`; member expiry.
//! Small and dependency-free; [`parse_rfc3339`] takes untrusted input and is fuzzed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wall clock in Unix seconds (0 before 1970, which no clock here shows).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The wall clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Formats Unix seconds as RFC 3339 UTC.
pub fn format_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS` with an optional fraction and `Z` or `±HH:MM`.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let err = || format!("{text:?} is not an RFC 3339 time such as 2026-12-01T00:00:00Z");
    let b = text.as_bytes();
    if b.len() < 20 || !text.is_ascii() {
        return Err(err());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        text.get(r)
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(err)
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(err());
    }
    let (y, mo, d, h, mi, s) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60 {
        return Err(err());
    }
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":" =>
        {
            let oh: i64 = rest[1..3].parse().map_err(|_| err())?;
            let om: i64 = rest[4..6].parse().map_err(|_| err())?;
            if oh > 23 || om > 59 {
                return Err(err());
            }
            let o = oh * 3600 + om * 60;
            if rest.starts_with('-') { -o } else { o }
        }
        _ => return Err(err()),
    };
    Ok(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s.min(59) - offset)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days.
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
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// When a member added now should expire: at an RFC 3339 time, or after a duration (`7d`).
/// Both absent is no expiry; a time not in the future is refused (the member would leave at
/// once).
pub fn expiry(at: Option<&str>, after: Option<&str>, now: i64) -> Result<Option<i64>, String> {
    let expires_at = match (at, after) {
        (Some(_), Some(_)) => return Err("give an expiry time or a duration, not both".into()),
        (Some(t), None) => parse_rfc3339(t)?,
        (None, Some(d)) => {
            let d = parse_duration(d)?;
            now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        }
        (None, None) => return Ok(None),
    };
    if expires_at <= now {
        return Err(
            "the expiry is not in the future; the member would leave the list at once".into(),
        );
    }
    Ok(Some(expires_at))
}

/// A point in time (Unix milliseconds) as a filter takes it: Unix milliseconds, an RFC 3339
/// time, or a duration ago (`1h`, `7d`: that long before `now_ms`).
pub fn instant_or_ago(text: &str, now_ms: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(secs) = parse_rfc3339(text) {
        return Ok(secs.saturating_mul(1000));
    }
    match parse_duration(text) {
        Ok(ago) => Ok(now_ms.saturating_sub(i64::try_from(ago.as_millis()).unwrap_or(i64::MAX))),
        Err(_) => Err(format!(
            "{text:?} is neither a time (RFC 3339, e.g. 2026-12-01T09:00:00Z, or Unix ms) nor \
             a duration ago (e.g. 1h, 7d)"
        )),
    }
}

/// Parses a duration such as `500ms`, `10s`, `1m`, `1h30m` or `2d`. A bare number is refused:
/// the unit is part of the value.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. \"30s\" or \"1m\"".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "{text:?} is not a duration; write e.g. \"30s\" or \"1m\""
            ));
        }
        let (num, tail) = rest.split_at(digits);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{text:?}: number {num} is too large"))?;
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            "" => {
                return Err(format!(
                    "{text:?} has no unit; write e.g. \"{n}s\" (units: ms, s, m, h, d)"
                ));
            }
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (units: ms, s, m, h, d)"
                ));
            }
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("{text:?} is too long"))?;
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod instant_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_filter_time_is_absolute_or_a_duration_ago() {
        let now = 1_000_000_000;
        assert_eq!(instant_or_ago("1h", now).unwrap(), now - 3_600_000);
        assert_eq!(instant_or_ago("7d", now).unwrap(), now - 7 * 86_400_000);
        assert_eq!(instant_or_ago("12345", now).unwrap(), 12345);
        assert_eq!(instant_or_ago("1970-01-01T00:00:10Z", now).unwrap(), 10_000);
        assert!(instant_or_ago("soon", now).unwrap_err().contains("1h"));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips() {
        for t in [0, 1_795_385_764, 951_782_400, -86_400, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)).unwrap(), t);
        }
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            parse_rfc3339("2000-02-29T12:00:00+01:00").unwrap(),
            951_822_000
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T22:16:04.123Z").unwrap(),
            1_795_385_764
        );
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "",
            "2026-02-30T00:00:00Z",
            "2026-11-22",
            "2026-11-22T25:00:00Z",
            "2026-11-22T00:00:00",
            "2026-11-22T00:00:00+5",
            "ÿÿÿÿ-11-22T00:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("1y").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }
}
