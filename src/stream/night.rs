//! Night-scoped sources, as Fink operates: one folder per night
//! (`science/{night}`, or `science/year={year}/month={month}/day={day}`),
//! a run per night, and progress kept per night.

use std::fmt;

/// A UTC night, `YYYYMMDD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Night {
    pub year: u32,
    pub month: u32,
    pub day: u32,
}

pub use crate::config::validate::{is_templated, unknown_placeholders, PLACEHOLDERS};

impl Night {
    /// `YYYYMMDD`, a real calendar date.
    pub fn parse(s: &str) -> Result<Night, String> {
        let bad = || format!("night {s:?}: expected YYYYMMDD, a date such as 20260101");
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let (year, month, day) = (s[..4].parse().unwrap(), s[4..6].parse().unwrap(), s[6..].parse().unwrap());
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(bad());
        }
        Ok(Night { year, month, day })
    }

    /// The current UTC night.
    pub fn today() -> Night {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Night::from_days((secs / 86_400) as i64)
    }

    fn from_days(z: i64) -> Night {
        let (year, month, day) = civil_from_days(z);
        Night { year: year as u32, month, day }
    }

    /// `path` with its placeholders replaced.
    pub fn expand(&self, path: &str) -> String {
        crate::config::validate::expand_night(path, &self.to_string())
    }
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

impl fmt::Display for Night {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}{:02}{:02}", self.year, self.month, self.day)
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `--exit-after` durations: `90s`, `30m`, `8h`, `1h30m`, `2d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("duration {s:?}: expected a number and a unit (s, m, h, d), such as 90s, 30m, 8h or 1h30m");
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
    }
    if !num.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nights_parse_expand_and_count_days() {
        let n = Night::parse("20260101").unwrap();
        assert_eq!(n.expand("science/{night}"), "science/20260101");
        assert_eq!(n.expand("science/year={year}/month={month}/day={day}"), "science/year=2026/month=01/day=01");
        assert!(Night::parse("20260230").is_err() && Night::parse("2026011").is_err());
        assert_eq!(Night::parse("20240229").unwrap().day, 29);
        assert_eq!(Night::from_days(0).to_string(), "19700101");
        assert_eq!(Night::from_days(20_454).to_string(), "20260101");
        assert!(is_templated("a/{night}") && !is_templated("a/b"));
        assert_eq!(unknown_placeholders("a/{nigth}/{day}"), vec!["{nigth}".to_string()]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert!(parse_duration("10").is_err() && parse_duration("5x").is_err() && parse_duration("").is_err());
    }
}
