//! `strftime_now(format)` for chat templates (Llama 3.x writes today's date into its system prompt), as
//! Hugging Face, vLLM and llama.cpp define it; in UTC, with the C library's common conversions.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// A moment in UTC, broken down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    /// 1..=12
    month: u32,
    /// 1..=31
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Monday
    weekday: u32,
}

impl Civil {
    /// The UTC date and time `seconds` after 1970-01-01 (the days-to-civil algorithm of H. Hinnant).
    fn from_unix(seconds: i64) -> Self {
        let (days, time) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400) as u32);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z.rem_euclid(146_097);
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
        let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        // 1970-01-01 was a Thursday.
        let weekday = (days + 3).rem_euclid(7) as u32;
        Self { year, month, day, hour: time / 3600, minute: time / 60 % 60, second: time % 60, weekday }
    }
}

/// `format` with `%Y %y %m %d %e %H %M %S %b %B %h %a %A %j %F %T %%` replaced for the current UTC time;
/// other conversions are kept as written.
pub(crate) fn strftime_now(format: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    format_civil(format, Civil::from_unix(now))
}

fn format_civil(format: &str, t: Civil) -> String {
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let month = MONTHS[t.month as usize - 1];
        let weekday = WEEKDAYS[t.weekday as usize];
        match chars.next() {
            Some('Y') => out.push_str(&t.year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", t.year.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{:02}", t.month)),
            Some('d') => out.push_str(&format!("{:02}", t.day)),
            Some('e') => out.push_str(&format!("{:2}", t.day)),
            Some('H') => out.push_str(&format!("{:02}", t.hour)),
            Some('M') => out.push_str(&format!("{:02}", t.minute)),
            Some('S') => out.push_str(&format!("{:02}", t.second)),
            Some('b' | 'h') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('a') => out.push_str(&weekday[..3]),
            Some('A') => out.push_str(weekday),
            Some('j') => out.push_str(&format!("{:03}", day_of_year(t))),
            Some('F') => out.push_str(&format!("{}-{:02}-{:02}", t.year, t.month, t.day)),
            Some('T') => out.push_str(&format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

fn day_of_year(t: Civil) -> u32 {
    const BEFORE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap = t.year % 4 == 0 && (t.year % 100 != 0 || t.year % 400 == 0);
    BEFORE[t.month as usize - 1] + t.day + u32::from(leap && t.month > 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_moments_break_down_and_format() {
        // 2024-07-26 13:05:09 UTC, a Friday.
        let t = Civil::from_unix(1_721_999_109);
        assert_eq!(t, Civil { year: 2024, month: 7, day: 26, hour: 13, minute: 5, second: 9, weekday: 4 });
        assert_eq!(format_civil("%d %b %Y", t), "26 Jul 2024");
        assert_eq!(format_civil("%A %B %e, %F %T %j %y %% %Q", t), "Friday July 26, 2024-07-26 13:05:09 208 24 % %Q");
        assert_eq!(format_civil("%a %F", Civil::from_unix(0)), "Thu 1970-01-01");
        assert_eq!(format_civil("%F %j", Civil::from_unix(951_782_400)), "2000-02-29 060");
        assert_eq!(format_civil("%F", Civil::from_unix(-86_400)), "1969-12-31");
    }
}
