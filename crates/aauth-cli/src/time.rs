//! Times for people: NumericDates as RFC 3339 UTC dates, and how far they are from now.

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub(crate) fn date(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`, for days ≥ 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// `at` relative to `now`: "in 5 min", "3 h ago", "now".
pub(crate) fn relative(at: u64, now: u64) -> String {
    let (delta, future) = if at >= now {
        (at - now, true)
    } else {
        (now - at, false)
    };
    let amount = match delta {
        0 => return "now".to_owned(),
        1..=119 => format!("{delta} s"),
        120..=7199 => format!("{} min", delta / 60),
        7200..=172_799 => format!("{} h", delta / 3600),
        _ => format!("{} days", delta / 86_400),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// A time given on the command line, at `now`: seconds since the epoch (`1796385600`),
/// a UTC date (`2026-12-04T12:00:00Z` or `2026-12-04`), or a duration ago (`90m`, `7d`).
pub(crate) fn parse_time(s: &str, now: u64) -> Result<u64, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("{s:?}: too large"));
    }
    if s.len() >= 10 && s.as_bytes()[4] == b'-' {
        return parse_date(s)
            .ok_or_else(|| format!("{s:?}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)"));
    }
    crate::cli::parse_duration(s).map(|ago| now.saturating_sub(ago))
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` as seconds since the epoch.
fn parse_date(s: &str) -> Option<u64> {
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let b = s.as_bytes();
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !at(4, b'-') || !at(7, b'-') || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let secs = match s.len() {
        10 => 0,
        20 if at(10, b'T') && at(13, b':') && at(16, b':') && at(19, b'Z') => {
            let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
            if h > 23 || mi > 59 || se > 60 {
                return None;
            }
            h * 3600 + mi * 60 + se
        }
        _ => return None,
    };
    let days = days_from_civil(y, m, d)?;
    let back = civil_from_days(days);
    (back == (y, m, d)).then_some(days * 86_400 + secs)
}

/// Days from 1970-01-01 to the date (Howard Hinnant's `days_from_civil`), for years from
/// 1970.
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::{date, parse_time, relative};

    #[test]
    fn times_are_read_as_dates_seconds_or_durations_ago() {
        let now = 1_796_385_600;
        assert_eq!(parse_time("2026-12-04T12:00:00Z", now), Ok(now));
        assert_eq!(parse_time("2026-12-04", now), Ok(now - 12 * 3600));
        assert_eq!(parse_time("2000-02-29", now), Ok(951_782_400));
        assert_eq!(parse_time("1796385600", now), Ok(now));
        assert_eq!(parse_time("2h", now), Ok(now - 7200));
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-12-04T25:00:00Z",
            "2026-12-04 12:00",
            "yesterday",
            "",
            "5y",
            "2026x12-04",
            "2026-12-04T12:00:00+",
            "2026-12-04T1é:0:00Z",
        ] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
        // A character of several bytes anywhere, the length kept, is refused, never
        // sliced through.
        let good = "2026-12-04T12:00:00Z";
        for wide in ["é", "€", "😀"] {
            for i in 0..=good.len() - wide.len() {
                let s = format!("{}{wide}{}", &good[..i], &good[i + wide.len()..]);
                assert_eq!(s.len(), good.len());
                assert!(parse_time(&s, now).is_err(), "{s}");
            }
        }
    }

    #[test]
    fn dates_are_utc_and_exact() {
        assert_eq!(date(0), "1970-01-01T00:00:00Z");
        assert_eq!(date(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(date(1_796_385_600), "2026-12-04T12:00:00Z");
        assert_eq!(date(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(100, 100), "now");
        assert_eq!(relative(130, 100), "in 30 s");
        assert_eq!(relative(100, 400), "5 min ago");
        assert_eq!(relative(100 + 3 * 3600, 100), "in 3 h");
        assert_eq!(relative(0, 3 * 86_400), "3 days ago");
    }
}
