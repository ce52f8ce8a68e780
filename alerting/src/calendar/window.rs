//! Named time windows: a union of intervals, each a day filter (calendar day kind and/or
//! weekdays) and time-of-day ranges in Asia/Shanghai. Answers "is `now` inside?" and "when
//! does that next change?" — the latter is what lets held notifications go out the moment a
//! window opens.

use super::{Calendar, CalendarError, invalid, local_date, local_datetime, local_to_ms};
use chrono::{Datelike, Duration, Timelike, Weekday};
use serde::{Deserialize, Serialize};

/// Which days an interval applies to, by the calendar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaySet {
    #[default]
    All,
    /// Calendar workdays: Monday–Friday that are not holidays, plus 调休 make-up workdays.
    Workdays,
    /// Every day that is not a workday (weekends and holidays).
    Restdays,
    /// Named holidays only (statutory or configured), not ordinary weekends.
    Holidays,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntervalConfig {
    #[serde(default)]
    pub days: DaySet,
    /// `mon` … `sun`, or ranges such as `mon-fri`; empty means every weekday. Combined with
    /// `days` by AND (e.g. `days = "workdays"`, `weekdays = ["sat", "sun"]` = 调休 weekends).
    #[serde(default)]
    pub weekdays: Vec<String>,
    /// `HH:MM-HH:MM` ranges, start inclusive, end exclusive, end may be `24:00`; empty means
    /// the whole day. A range may not cross midnight: write two.
    #[serde(default)]
    pub times: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWindowConfig {
    pub name: String,
    pub intervals: Vec<IntervalConfig>,
}

#[derive(Debug, Clone)]
struct Interval {
    days: DaySet,
    /// Bit `n` set = weekday `n` (0 = Monday) included; all bits when unrestricted.
    weekdays: u8,
    /// Minute-of-day ranges `[start, end)`.
    times: Vec<(u32, u32)>,
}

/// A compiled, validated window.
#[derive(Debug, Clone)]
pub struct TimeWindow {
    pub name: String,
    intervals: Vec<Interval>,
    config: TimeWindowConfig,
}

/// How far ahead `next_change` looks: beyond a year a window is treated as never changing.
const HORIZON_DAYS: i64 = 400;

fn parse_weekday(s: &str) -> Option<u32> {
    let w: Weekday = s.trim().parse().ok()?;
    Some(w.num_days_from_monday())
}

fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

impl TimeWindow {
    /// Validates the configuration; `field` is where it sits in the config, for messages.
    pub fn compile(config: &TimeWindowConfig, field: &str) -> Result<Self, CalendarError> {
        if config.name.trim().is_empty() {
            return Err(invalid(format!("{field}.name"), "must not be empty"));
        }
        if config.intervals.is_empty() {
            return Err(invalid(format!("{field}.intervals"), "a window needs at least one interval"));
        }
        let mut intervals = Vec::new();
        for (i, iv) in config.intervals.iter().enumerate() {
            let f = format!("{field}.intervals[{i}]");
            let mut weekdays = 0u8;
            for (j, w) in iv.weekdays.iter().enumerate() {
                let bad =
                    || invalid(format!("{f}.weekdays[{j}]"), format!("{w:?} is not a weekday (mon … sun or mon-fri)"));
                let (a, b) = match w.split_once('-') {
                    Some((a, b)) => (parse_weekday(a).ok_or_else(bad)?, parse_weekday(b).ok_or_else(bad)?),
                    None => {
                        let d = parse_weekday(w).ok_or_else(bad)?;
                        (d, d)
                    }
                };
                if a > b {
                    return Err(invalid(format!("{f}.weekdays[{j}]"), format!("range {w:?} runs backwards")));
                }
                for d in a..=b {
                    weekdays |= 1 << d;
                }
            }
            if weekdays == 0 {
                weekdays = 0x7f;
            }
            let mut times = Vec::new();
            for (j, t) in iv.times.iter().enumerate() {
                let tf = format!("{f}.times[{j}]");
                let (a, b) = t
                    .split_once('-')
                    .and_then(|(a, b)| Some((parse_hhmm(a)?, parse_hhmm(b)?)))
                    .ok_or_else(|| invalid(&tf, format!("{t:?} is not a HH:MM-HH:MM range")))?;
                if a >= b {
                    return Err(invalid(
                        &tf,
                        format!("{t:?} ends before it starts; a range cannot cross midnight, write two ranges"),
                    ));
                }
                times.push((a, b));
            }
            if times.is_empty() {
                times.push((0, 1440));
            }
            times.sort_unstable();
            intervals.push(Interval { days: iv.days, weekdays, times });
        }
        Ok(Self { name: config.name.clone(), intervals, config: config.clone() })
    }

    pub fn config(&self) -> &TimeWindowConfig {
        &self.config
    }

    fn day_matches(iv: &Interval, cal: &Calendar, date: chrono::NaiveDate) -> bool {
        if iv.weekdays & (1 << date.weekday().num_days_from_monday()) == 0 {
            return false;
        }
        match iv.days {
            DaySet::All => true,
            DaySet::Workdays => cal.is_workday(date),
            DaySet::Restdays => !cal.is_workday(date),
            DaySet::Holidays => cal.is_holiday(date),
        }
    }

    /// Whether the instant `ms` (UTC) falls inside the window.
    pub fn contains(&self, cal: &Calendar, ms: i64) -> bool {
        let local = local_datetime(ms);
        let minute = local.hour() * 60 + local.minute();
        let date = local.date();
        self.intervals
            .iter()
            .any(|iv| Self::day_matches(iv, cal, date) && iv.times.iter().any(|&(a, b)| a <= minute && minute < b))
    }

    /// The first instant after `ms` at which `contains` flips, within about a year.
    pub fn next_change(&self, cal: &Calendar, ms: i64) -> Option<i64> {
        let now_in = self.contains(cal, ms);
        let today = local_date(ms);
        for offset in 0..HORIZON_DAYS {
            let date = today + Duration::days(offset);
            // Boundaries only happen at range edges and midnights; state is constant between.
            let mut edges: Vec<i64> = vec![local_to_ms(date, 0), local_to_ms(date, 1440)];
            for iv in &self.intervals {
                for &(a, b) in &iv.times {
                    edges.push(local_to_ms(date, a));
                    edges.push(local_to_ms(date, b));
                }
            }
            edges.sort_unstable();
            edges.dedup();
            if let Some(t) = edges.into_iter().filter(|&t| t > ms).find(|&t| self.contains(cal, t) != now_in) {
                return Some(t);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{CalendarConfig, parse_date};

    fn window(intervals: Vec<IntervalConfig>) -> Result<TimeWindow, CalendarError> {
        TimeWindow::compile(&TimeWindowConfig { name: "w".into(), intervals }, "time_windows[0]")
    }

    fn at(date: &str, hh: u32, mm: u32) -> i64 {
        local_to_ms(parse_date("t", date).unwrap(), hh * 60 + mm)
    }

    #[test]
    fn hospital_workday_hours_follow_the_calendar() {
        let cal = Calendar::new(&CalendarConfig::default()).unwrap();
        let w = window(vec![IntervalConfig {
            days: DaySet::Workdays,
            weekdays: vec![],
            times: vec!["08:00-18:00".into()],
        }])
        .unwrap();
        assert!(w.contains(&cal, at("2025-02-08", 9, 0)), "调休 Saturday is a workday");
        assert!(!w.contains(&cal, at("2025-01-29", 9, 0)), "Spring Festival Wednesday is not");
        assert!(w.contains(&cal, at("2025-02-05", 8, 0)));
        assert!(!w.contains(&cal, at("2025-02-05", 18, 0)), "end is exclusive");
        // From the Friday evening before the festival, the next opening is the 调休 Sunday 01-26.
        assert_eq!(w.next_change(&cal, at("2025-01-24", 19, 0)), Some(at("2025-01-26", 8, 0)));
        // From the last festival day, the window opens on Wednesday 02-05.
        assert_eq!(w.next_change(&cal, at("2025-02-04", 12, 0)), Some(at("2025-02-05", 8, 0)));
        assert_eq!(w.next_change(&cal, at("2025-02-05", 9, 0)), Some(at("2025-02-05", 18, 0)));
    }

    #[test]
    fn weekday_ranges_and_adjacent_days_merge() {
        let cal = Calendar::new(&CalendarConfig { disable_statutory: true, overrides: vec![] }).unwrap();
        let w = window(vec![IntervalConfig { days: DaySet::All, weekdays: vec!["sat-sun".into()], times: vec![] }])
            .unwrap();
        // 2025-03-08 is a Saturday: the window runs Sat 00:00 to Mon 00:00 without a break at midnight.
        assert!(w.contains(&cal, at("2025-03-08", 0, 0)));
        assert_eq!(w.next_change(&cal, at("2025-03-08", 1, 0)), Some(at("2025-03-10", 0, 0)));
    }

    #[test]
    fn bad_windows_name_the_field() {
        let e = |iv: IntervalConfig| window(vec![iv]).unwrap_err().to_string();
        let base = IntervalConfig { days: DaySet::All, weekdays: vec![], times: vec![] };
        let msg = e(IntervalConfig { times: vec!["22:00-06:00".into()], ..base.clone() });
        assert!(msg.contains("time_windows[0].intervals[0].times[0]") && msg.contains("midnight"), "{msg}");
        let msg = e(IntervalConfig { times: vec!["8-18".into()], ..base.clone() });
        assert!(msg.contains("HH:MM"), "{msg}");
        let msg = e(IntervalConfig { weekdays: vec!["funday".into()], ..base.clone() });
        assert!(msg.contains("weekdays[0]"), "{msg}");
        assert!(window(vec![]).unwrap_err().to_string().contains("at least one interval"));
        assert!(window(vec![IntervalConfig { times: vec!["00:00-24:00".into()], ..base }]).is_ok());
    }
}
