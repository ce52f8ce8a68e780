//! Access-time restriction: a user may be limited to weekday/time windows in local time
//! (`utc_offset_minutes`, fixed offset — China has no daylight saving time).

use super::{Result, invalid};
use chrono::{Datelike, Timelike};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessWindow {
    /// ISO weekdays, 1 = Monday … 7 = Sunday.
    pub days: Vec<u8>,
    /// `HH:MM`, local time, inclusive.
    pub start: String,
    /// `HH:MM`, local time, exclusive; an end before the start runs past midnight.
    pub end: String,
}

fn minutes(field: &'static str, s: &str) -> Result<u32> {
    let (h, m) = s.split_once(':').ok_or_else(|| invalid(field, format!("{s:?} is not HH:MM")))?;
    let (h, m): (u32, u32) = (
        h.parse().map_err(|_| invalid(field, format!("{s:?} is not HH:MM")))?,
        m.parse().map_err(|_| invalid(field, format!("{s:?} is not HH:MM")))?,
    );
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(invalid(field, format!("{s:?} is not a time of day")));
    }
    Ok(h * 60 + m)
}

impl AccessWindow {
    pub fn validate(&self) -> Result<()> {
        if self.days.is_empty() || self.days.iter().any(|d| !(1..=7).contains(d)) {
            return Err(invalid("access_windows.days", "must list weekdays 1 (Monday) to 7 (Sunday)"));
        }
        minutes("access_windows.start", &self.start)?;
        minutes("access_windows.end", &self.end)?;
        Ok(())
    }

    fn contains(&self, weekday: u8, minute: u32) -> bool {
        let (Ok(s), Ok(e)) = (minutes("start", &self.start), minutes("end", &self.end)) else { return false };
        let prev_day = if weekday == 1 { 7 } else { weekday - 1 };
        if s < e {
            self.days.contains(&weekday) && (s..e).contains(&minute)
        } else {
            // Overnight: the part after midnight belongs to the window that started the day before.
            (self.days.contains(&weekday) && minute >= s) || (self.days.contains(&prev_day) && minute < e)
        }
    }
}

/// Whether `now_ms` falls in any window; no windows means no restriction.
pub fn permitted(windows: &[AccessWindow], now_ms: i64, utc_offset_minutes: i32) -> bool {
    if windows.is_empty() {
        return true;
    }
    let local = now_ms + utc_offset_minutes as i64 * 60_000;
    let Some(t) = chrono::DateTime::from_timestamp_millis(local) else { return false };
    let weekday = t.weekday().number_from_monday() as u8;
    let minute = t.hour() * 60 + t.minute();
    windows.iter().any(|w| w.contains(weekday, minute))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(days: &[u8], s: &str, e: &str) -> AccessWindow {
        AccessWindow { days: days.to_vec(), start: s.into(), end: e.into() }
    }

    #[test]
    fn windows_in_local_time() {
        // 2026-11-23 is a Monday; 01:30 UTC = 09:30 CST.
        let mon_0930_cst = chrono::DateTime::parse_from_rfc3339("2026-11-23T01:30:00Z").unwrap().timestamp_millis();
        let office = [w(&[1, 2, 3, 4, 5], "08:00", "18:00")];
        assert!(permitted(&office, mon_0930_cst, 480));
        assert!(!permitted(&office, mon_0930_cst, 0), "01:30 UTC is before 08:00");
        assert!(!permitted(&[w(&[6, 7], "00:00", "24:00")], mon_0930_cst, 480));
        let night = [w(&[7], "22:00", "10:00")];
        assert!(permitted(&night, mon_0930_cst, 480), "Sunday night window runs into Monday morning");
        assert!(permitted(&[], mon_0930_cst, 480));
        assert!(w(&[8], "08:00", "09:00").validate().is_err());
        assert!(w(&[1], "8h", "09:00").validate().is_err());
    }
}
