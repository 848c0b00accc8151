//! Times written as text: epoch seconds with a fraction, `YYYY-MM-DD
//! HH:MM:SS` and RFC 3339, read to and written from UNIX milliseconds
//! without a date-time dependency (Howard Hinnant's civil-date algorithms).

/// `"1677577561"` or `"1677577561.123456"` → ms.
pub(super) fn epoch_decimal_ms(s: &str) -> Option<i64> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    secs.checked_mul(1000)?.checked_add(fraction_ms(frac)?)
}

/// The milliseconds of a fraction's digits (`"5"` → 500, `"123456"` → 123).
fn fraction_ms(digits: &str) -> Option<i64> {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ms = 0;
    for i in 0..3 {
        ms = ms * 10 + digits.as_bytes().get(i).map_or(0, |d| i64::from(d - b'0'));
    }
    Some(ms)
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.fraction][Z|±HH:MM|±HHMM]` → ms since the epoch;
/// no offset means UTC.
pub(super) fn datetime_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = b.get(from..to)?;
        digits.iter().try_fold(0i64, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let sep_ok = b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && matches!(b.get(10), Some(b' ' | b'T' | b't'))
        && b.get(13) == Some(&b':')
        && b.get(16) == Some(&b':');
    if !sep_ok {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second <= 60;
    if !valid {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let end = after_dot
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after_dot.len());
        if end == 0 {
            return None;
        }
        ms = fraction_ms(&after_dot[..end])?;
        rest = &after_dot[end..];
    }
    let offset_secs = match rest.as_bytes() {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let (h1, h2, m1, m2) = (*h1, *h2, *m1, *m2);
            if ![h1, h2, m1, m2].iter().all(u8::is_ascii_digit) {
                return None;
            }
            let hours = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let minutes = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            let secs = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs * 1000 + ms)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// ms since the epoch → `"YYYY-MM-DD HH:MM:SS.ffffff"` (UTC), as pmacct
/// writes `timestamp_*` with `timestamps_utc: true`.
pub(super) fn format_datetime(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000 * 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_parses_space_and_rfc3339_forms() {
        assert_eq!(datetime_ms("2023-02-28 09:46:01"), Some(1_677_577_561_000));
        assert_eq!(
            datetime_ms("2023-02-28T09:46:01.25Z"),
            Some(1_677_577_561_250)
        );
        assert_eq!(
            datetime_ms("2023-02-28T10:46:01.123456+01:00"),
            Some(1_677_577_561_123)
        );
        assert_eq!(
            datetime_ms("2023-02-28T04:46:01-0500"),
            Some(1_677_577_561_000)
        );
        assert_eq!(datetime_ms("2024-02-29 00:00:00"), Some(1_709_164_800_000));
    }

    #[test]
    fn impossible_datetimes_are_refused() {
        for bad in [
            "2023-02-29 00:00:00",
            "2023-13-01 00:00:00",
            "2023-01-01 24:00:00",
            "2023-01-01 00:00:00.",
            "2023-01-01 00:00:00 junk",
            "2023-01-01",
            "2023/01/01 00:00:00",
            "2023-01-01 00:00:00+1",
        ] {
            assert_eq!(datetime_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn format_datetime_inverts_datetime_ms() {
        for ms in [
            0,
            1_677_577_561_123,
            951_782_400_000,
            -86_400_001,
            253_402_300_799_999,
        ] {
            assert_eq!(datetime_ms(&format_datetime(ms)), Some(ms), "{ms}");
        }
    }
}
