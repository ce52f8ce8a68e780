//! The collector's built-in working-hours rule: Asia/Shanghai (UTC+8, no daylight saving),
//! Monday to Friday 08:00–18:00. Deadlines flagged `business_hours` and the interfaces'
//! "zero volume during clinic hours" check use it. Deliberately simple: the holiday and 调休
//! calendar lives in the alerting crate, which the collector must not depend on.

const OFFSET_MS: i64 = 8 * 3_600_000;
const DAY_MS: i64 = 86_400_000;
const OPEN_MS: i64 = 8 * 3_600_000;
const CLOSE_MS: i64 = 18 * 3_600_000;

fn local(ms: i64) -> (i64, i64) {
    let l = ms + OFFSET_MS;
    (l.div_euclid(DAY_MS), l.rem_euclid(DAY_MS))
}

/// 1970-01-01 was a Thursday; Monday = 0.
fn is_workday(day: i64) -> bool {
    (day + 3).rem_euclid(7) < 5
}

/// Whether `ms` falls inside working hours.
pub fn is_business_time(ms: i64) -> bool {
    let (day, tod) = local(ms);
    is_workday(day) && (OPEN_MS..CLOSE_MS).contains(&tod)
}

/// `start_ms` plus `dur_ms` of working time.
pub fn add_business_ms(start_ms: i64, dur_ms: i64) -> i64 {
    let (mut day, mut tod) = local(start_ms);
    let mut left = dur_ms.max(0);
    // Bounded: validation caps durations at 366 days, so at most ~900 loop turns.
    loop {
        if is_workday(day) && tod < CLOSE_MS {
            let from = tod.max(OPEN_MS);
            let room = CLOSE_MS - from;
            if left <= room {
                return day * DAY_MS + from + left - OFFSET_MS;
            }
            left -= room;
        }
        day += 1;
        tod = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-27 is a Friday; 17:00 Shanghai = 09:00 UTC.
    fn shanghai(day: i64, h: i64, m: i64) -> i64 {
        let friday = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let t = friday.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis();
        t + day * DAY_MS + h * 3_600_000 + m * 60_000 - OFFSET_MS
    }

    #[test]
    fn business_time_skips_nights_and_weekends() {
        assert!(is_business_time(shanghai(0, 17, 0)));
        assert!(!is_business_time(shanghai(0, 19, 0)));
        assert!(!is_business_time(shanghai(1, 10, 0)));
        // Friday 17:00 + 2h of work = Monday 09:00.
        assert_eq!(add_business_ms(shanghai(0, 17, 0), 2 * 3_600_000), shanghai(3, 9, 0));
        // Saturday night + 30 min = Monday 08:30.
        assert_eq!(add_business_ms(shanghai(1, 22, 0), 30 * 60_000), shanghai(3, 8, 30));
        assert_eq!(add_business_ms(shanghai(0, 9, 0), 60_000), shanghai(0, 9, 1));
    }
}
