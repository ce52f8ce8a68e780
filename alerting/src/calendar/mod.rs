//! Calendars and time windows in Asia/Shanghai: which days are workdays (Chinese statutory
//! holidays and 调休 make-up workdays, shipped for 2024–2026 and overridable), and named
//! windows of weekday/day-kind sets and time-of-day ranges that routes and receivers use.
//!
//! Asia/Shanghai has had no daylight saving time since 1991, so a fixed UTC+8 offset is exact
//! and no time-zone database is needed.

mod window;

pub use window::{DaySet, IntervalConfig, TimeWindow, TimeWindowConfig};

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Weekday};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Asia/Shanghai's offset from UTC.
pub const SHANGHAI_OFFSET_MS: i64 = 8 * 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// The statutory schedules, one file a year, embedded so the appliance needs no download.
const EMBEDDED: &[(&str, &str)] = &[
    ("cn-2024.toml", include_str!("data/cn-2024.toml")),
    ("cn-2025.toml", include_str!("data/cn-2025.toml")),
    ("cn-2026.toml", include_str!("data/cn-2026.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> CalendarError {
    CalendarError::Invalid { field: field.into(), message: message.into() }
}

/// The local (Asia/Shanghai) date and time of a UTC millisecond instant.
pub fn local_datetime(ms: i64) -> NaiveDateTime {
    DateTime::from_timestamp_millis(ms.saturating_add(SHANGHAI_OFFSET_MS)).unwrap_or(DateTime::UNIX_EPOCH).naive_utc()
}

pub fn local_date(ms: i64) -> NaiveDate {
    local_datetime(ms).date()
}

/// UTC milliseconds of `minute` minutes after local midnight of `date` (minute may be 1440).
pub fn local_to_ms(date: NaiveDate, minute: u32) -> i64 {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_millis();
    midnight - SHANGHAI_OFFSET_MS + i64::from(minute) * 60_000
}

/// Start of the local day containing `ms`, in UTC milliseconds.
pub fn local_day_start_ms(ms: i64) -> i64 {
    (ms + SHANGHAI_OFFSET_MS).div_euclid(DAY_MS) * DAY_MS - SHANGHAI_OFFSET_MS
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(field: &str, s: &str) -> Result<NaiveDate, CalendarError> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|e| invalid(field, format!("invalid date {s:?}: {e} (expected YYYY-MM-DD)")))
}

/// What a dated entry says about its day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DayKind {
    /// A day off (statutory holiday, or a local one such as a hospital's anniversary).
    Holiday,
    /// A working day even if it falls on a weekend (调休 make-up workday).
    Workday,
}

/// Where a day's classification came from; later sources win.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaySource {
    /// Monday–Friday work, weekends off.
    Weekday,
    /// The embedded State Council schedule.
    Statutory,
    /// `calendar.overrides` in the configuration.
    Config,
    /// Set through the API (persisted).
    Api,
}

/// A dated override, as configured or sent to the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayOverride {
    /// `YYYY-MM-DD`, Asia/Shanghai.
    pub date: String,
    pub kind: DayKind,
    /// Shown in the calendar view, e.g. "院庆".
    #[serde(default)]
    pub name: String,
}

/// Calendar settings in the routing configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// Ignore the embedded statutory schedules (then only weekends and overrides count).
    #[serde(default)]
    pub disable_statutory: bool,
    #[serde(default)]
    pub overrides: Vec<DayOverride>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: DayKind,
    name: String,
    source: DaySource,
}

/// One day as the calendar sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayInfo {
    pub date: String,
    /// ISO weekday, 1 = Monday … 7 = Sunday.
    pub weekday: u32,
    pub workday: bool,
    /// A named day off (statutory or configured holiday).
    pub holiday: bool,
    /// A weekend day that is worked (调休).
    pub makeup_workday: bool,
    pub name: String,
    pub source: DaySource,
}

/// Workday calendar: weekends, then statutory data, then config overrides, then API overrides.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    base: BTreeMap<NaiveDate, Entry>,
    api: BTreeMap<NaiveDate, Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YearFile {
    year: i32,
    holidays: Vec<HolidayRange>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayRange {
    name: String,
    from: String,
    to: String,
    #[serde(default)]
    workdays: Vec<String>,
}

impl Calendar {
    /// The embedded statutory schedules plus the configured overrides.
    pub fn new(config: &CalendarConfig) -> Result<Self, CalendarError> {
        let mut cal = Calendar::default();
        if !config.disable_statutory {
            for (file, text) in EMBEDDED {
                cal.load_year_file(file, text)?;
            }
        }
        for (i, o) in config.overrides.iter().enumerate() {
            let field = format!("calendar.overrides[{i}].date");
            let date = parse_date(&field, &o.date)?;
            cal.base.insert(date, Entry { kind: o.kind, name: o.name.clone(), source: DaySource::Config });
        }
        Ok(cal)
    }

    fn load_year_file(&mut self, file: &str, text: &str) -> Result<(), CalendarError> {
        let y: YearFile = toml::from_str(text).map_err(|e| invalid(file, e.to_string()))?;
        for h in &y.holidays {
            let from = parse_date(file, &h.from)?;
            let to = parse_date(file, &h.to)?;
            if from.year() != y.year || to < from {
                return Err(invalid(file, format!("holiday {:?} range {from}..{to} is not within {}", h.name, y.year)));
            }
            for d in from.iter_days().take_while(|d| *d <= to) {
                self.base
                    .insert(d, Entry { kind: DayKind::Holiday, name: h.name.clone(), source: DaySource::Statutory });
            }
            for w in &h.workdays {
                let d = parse_date(file, w)?;
                let name = format!("{}调休", h.name);
                self.base.insert(d, Entry { kind: DayKind::Workday, name, source: DaySource::Statutory });
            }
        }
        Ok(())
    }

    /// Replaces the API layer (loaded from the store at open, and after every API edit).
    pub fn set_api_overrides(&mut self, overrides: impl IntoIterator<Item = (NaiveDate, DayKind, String)>) {
        self.api =
            overrides.into_iter().map(|(d, kind, name)| (d, Entry { kind, name, source: DaySource::Api })).collect();
    }

    fn entry(&self, date: NaiveDate) -> Option<&Entry> {
        self.api.get(&date).or_else(|| self.base.get(&date))
    }

    pub fn is_workday(&self, date: NaiveDate) -> bool {
        match self.entry(date) {
            Some(e) => e.kind == DayKind::Workday,
            None => !matches!(date.weekday(), Weekday::Sat | Weekday::Sun),
        }
    }

    pub fn is_holiday(&self, date: NaiveDate) -> bool {
        self.entry(date).is_some_and(|e| e.kind == DayKind::Holiday)
    }

    pub fn day(&self, date: NaiveDate) -> DayInfo {
        let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
        let (workday, holiday, name, source) = match self.entry(date) {
            Some(e) => (e.kind == DayKind::Workday, e.kind == DayKind::Holiday, e.name.clone(), e.source),
            None => (!weekend, false, String::new(), DaySource::Weekday),
        };
        DayInfo {
            date: date.format("%Y-%m-%d").to_string(),
            weekday: date.weekday().number_from_monday(),
            workday,
            holiday,
            makeup_workday: workday && weekend,
            name,
            source,
        }
    }

    /// Every day of `year` that differs from a plain Monday–Friday week, or is named.
    pub fn special_days(&self, year: i32) -> Vec<DayInfo> {
        let (Some(first), Some(last)) = (NaiveDate::from_ymd_opt(year, 1, 1), NaiveDate::from_ymd_opt(year, 12, 31))
        else {
            return Vec::new();
        };
        first.iter_days().take_while(|d| *d <= last).filter(|d| self.entry(*d).is_some()).map(|d| self.day(d)).collect()
    }

    /// Years the embedded statutory data covers.
    pub fn statutory_years() -> Vec<i32> {
        EMBEDDED
            .iter()
            .filter_map(|(f, _)| f.trim_start_matches("cn-").trim_end_matches(".toml").parse().ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        parse_date("t", s).unwrap()
    }

    #[test]
    fn statutory_2025_spring_festival_and_makeup_days() {
        let cal = Calendar::new(&CalendarConfig::default()).unwrap();
        assert!(cal.is_workday(d("2025-01-26")), "Sunday 2025-01-26 is a 调休 workday");
        assert!(cal.is_workday(d("2025-02-08")), "Saturday 2025-02-08 is a 调休 workday");
        for day in ["2025-01-28", "2025-01-31", "2025-02-03", "2025-02-04"] {
            assert!(!cal.is_workday(d(day)) && cal.is_holiday(d(day)), "{day} is a Spring Festival holiday");
        }
        assert!(cal.is_workday(d("2025-02-05")));
        assert!(!cal.is_workday(d("2025-02-09")), "an ordinary Sunday");
        assert!(cal.day(d("2025-02-08")).makeup_workday);
    }

    #[test]
    fn every_year_is_loaded_and_consistent() {
        let cal = Calendar::new(&CalendarConfig::default()).unwrap();
        assert_eq!(Calendar::statutory_years(), vec![2024, 2025, 2026]);
        for year in [2024, 2025, 2026] {
            let days = cal.special_days(year);
            // Make-up workdays are always weekend days; the State Council never lists a weekday.
            for m in days.iter().filter(|x| x.workday) {
                assert!(m.weekday >= 6, "{} listed as 调休 workday but is a weekday", m.date);
            }
            assert!(days.iter().filter(|x| x.holiday).count() >= 25, "{year} has its holidays");
        }
        assert!(cal.is_workday(d("2024-02-04")) && cal.is_workday(d("2024-02-18")));
        assert!(!cal.is_workday(d("2024-02-16")));
        assert!(cal.is_workday(d("2026-01-04")) && cal.is_workday(d("2026-02-14")) && cal.is_workday(d("2026-02-28")));
        assert!(!cal.is_workday(d("2026-02-23")), "2026 Spring Festival ends Monday 02-23");
        assert!(!cal.is_workday(d("2026-10-07")) && cal.is_workday(d("2026-10-10")));
    }

    #[test]
    fn overrides_win_in_order() {
        let cfg = CalendarConfig {
            disable_statutory: false,
            overrides: vec![DayOverride { date: "2025-03-12".into(), kind: DayKind::Holiday, name: "院庆".into() }],
        };
        let mut cal = Calendar::new(&cfg).unwrap();
        assert!(!cal.is_workday(d("2025-03-12")));
        cal.set_api_overrides([(d("2025-03-12"), DayKind::Workday, String::new())]);
        assert!(cal.is_workday(d("2025-03-12")));
        assert_eq!(cal.day(d("2025-03-12")).source, DaySource::Api);
        let bad = CalendarConfig {
            disable_statutory: true,
            overrides: vec![DayOverride { date: "2025-13-01".into(), kind: DayKind::Holiday, name: String::new() }],
        };
        let err = Calendar::new(&bad).unwrap_err().to_string();
        assert!(err.contains("calendar.overrides[0].date"), "{err}");
    }

    #[test]
    fn shanghai_clock_is_utc_plus_8() {
        // 2025-02-07T16:30:00Z is 2025-02-08 00:30 in Shanghai.
        let ms = DateTime::parse_from_rfc3339("2025-02-07T16:30:00Z").unwrap().timestamp_millis();
        assert_eq!(local_date(ms), d("2025-02-08"));
        assert_eq!(local_to_ms(d("2025-02-08"), 30), ms);
        assert_eq!(local_day_start_ms(ms), local_to_ms(d("2025-02-08"), 0));
    }
}
