//! The three ways the platforms write a time: RFC 3339 (EC2 spot and rebalance,
//! `2017-09-18T08:22:00Z`), RFC 1123 (Azure's `NotBefore`, `Mon, 19 Sep 2016 18:29:47 GMT`) and
//! EC2 scheduled events' own (`21 Jan 2019 09:00:43 GMT`: RFC 1123 without the weekday).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2017-09-18T08:22:00Z` (fractions and offsets as RFC 3339 allows).
pub fn rfc3339(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim().trim_end_matches('Z')).ok()
}

/// `Mon, 19 Sep 2016 18:29:47 GMT` or `19 Sep 2016 18:29:47 GMT`. The weekday, when given, is
/// not checked: the date says which day it is.
pub fn gmt(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let text = match text.split_once(", ") {
        Some((weekday, rest)) if weekday.len() == 3 => rest,
        _ => text,
    };
    let mut parts = text.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    let month = month(parts.next()?)?;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':');
    let hour: u64 = clock.next()?.parse().ok()?;
    let minute: u64 = clock.next()?.parse().ok()?;
    let second: u64 = clock.next()?.parse().ok()?;
    if parts.next()? != "GMT" || parts.next().is_some() || clock.next().is_some() {
        return None;
    }
    let valid = (1970..=9999).contains(&year)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    if !valid {
        return None;
    }
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + hour * 3600 + minute * 60 + second))
}

fn month(name: &str) -> Option<u32> {
    const NAMES: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    NAMES.iter().position(|m| *m == name).map(|i| i as u32 + 1)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2024-06-01T12:00:00Z`, for messages.
pub fn show(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn reads_each_platform_format() {
        // date -u -d '2019-01-21 09:00:43' +%s
        assert_eq!(gmt("21 Jan 2019 09:00:43 GMT"), Some(at(1_548_061_243)));
        assert_eq!(gmt("Mon, 19 Sep 2016 18:29:47 GMT"), Some(at(1_474_309_787)));
        assert_eq!(gmt("29 Feb 2024 00:00:00 GMT"), Some(at(1_709_164_800)));
        assert_eq!(gmt("Tue, 14 Nov 2023 22:13:20 GMT"), Some(at(1_700_000_000)));
        assert_eq!(rfc3339("2017-09-18T08:22:00Z"), Some(at(1_505_722_920)));
    }

    #[test]
    fn refuses_what_is_not_a_date() {
        for bad in [
            "",
            "30 Feb 2024 00:00:00 GMT",
            "21 Jan 2019 09:00:43",
            "21 Jan 2019 09:00:43 UTC",
            "21 January 2019 09:00:43 GMT",
            "21 Jan 2019 24:00:00 GMT",
            "21 Jan 2019 09:00 GMT",
            "21 Jan 2019 09:00:43 GMT extra",
            "2019-01-21T09:00:43Z",
        ] {
            assert_eq!(gmt(bad), None, "{bad:?}");
        }
        assert_eq!(rfc3339("soon"), None);
    }
}
