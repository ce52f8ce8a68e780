//! Time windows over the Chinese workday calendar, through the dispatcher with an injected
//! clock: "workdays 08:00–18:00" follows 调休 and holidays, notifications held outside an
//! active window go out when it opens (even if the alert resolved meanwhile), mute windows
//! suppress, receiver windows apply wherever the receiver is used, API calendar edits count.
//! Alert times are off the 5-minute flush grid so deliveries at window edges prove that
//! the window opening itself wakes the dispatcher.

mod routing_common;

use routing_common::*;
use tingzhen_alerting::calendar::DayKind;
use tingzhen_alerting::model::NotificationStatus;

const WINDOWS: &str = r#"
[route]
receiver = "oncall-wechat"
group_by = ["alertname"]
group_wait = "0s"
group_interval = "5m"
repeat_interval = "24h"

[[route.routes]]
matchers = ['severity="warning"']
receiver = "office-email"
active_time_windows = ["office"]

[[route.routes]]
matchers = ['severity="info"']
receiver = "ops-wechat"
mute_time_windows = ["night"]

[[route.routes]]
matchers = ['severity="critical"']
receiver = "director-sms"

[[time_windows]]
name = "office"
intervals = [{ days = "workdays", times = ["08:00-18:00"] }]

[[time_windows]]
name = "night"
intervals = [{ times = ["00:00-07:00"] }]

[[receiver_windows]]
receiver = "director-sms"
active_time_windows = ["office"]
"#;

fn warn(name: &str, t: i64) -> tingzhen_alerting::model::Alert {
    firing(&[("alertname", name), ("severity", "warning")], t)
}

#[test]
fn calendar_makeup_saturday_is_a_workday_and_holiday_weekday_is_not() {
    let d = open(WINDOWS);
    // 2025-02-08 is a Saturday and a 调休 workday: delivered at once.
    let sat = at("2025-02-08 10:00");
    let sent = d.process(&[warn("DiskSlow", sat)], sat);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].receiver, "office-email");

    // 2025-01-29 is a Wednesday in the Spring Festival holiday: held …
    let d = open(WINDOWS);
    let wed = at("2025-01-29 10:03");
    assert!(d.process(&[warn("DiskSlow", wed)], wed).is_empty());
    assert_eq!(d.groups(wed)[0].held.as_deref(), Some("active"));
    // … through the holiday, and past the ordinary weekend 2025-02-01/02 which is also holiday,
    // until the first workday morning, Wednesday 2025-02-05 08:00.
    let sent = run_until(&d, at("2025-02-06 00:00"));
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, at("2025-02-05 08:00"));
    assert_eq!(summary(&sent[0].1).1, vec!["DiskSlow:firing"]);
}

#[test]
fn calendar_held_alert_that_resolved_is_still_delivered_when_the_window_opens() {
    let d = open(WINDOWS);
    // Friday evening 2025-03-07 19:00: outside office hours.
    let t = at("2025-03-07 19:01");
    assert!(d.process(&[warn("BackupLate", t)], t).is_empty());
    let r = at("2025-03-08 03:00");
    let mut sent = d.process(&[resolved(&[("alertname", "BackupLate"), ("severity", "warning")], r)], r);
    assert!(sent.is_empty());
    sent.extend(run_until(&d, at("2025-03-10 12:00")).into_iter().map(|(when, n)| {
        assert_eq!(when, at("2025-03-10 08:00"), "Monday morning");
        n
    }));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status, NotificationStatus::Resolved);
    assert_eq!(summary(&sent[0]).1, vec!["BackupLate:resolved"]);
    assert!(d.groups(at("2025-03-10 12:00")).is_empty());
}

#[test]
fn calendar_window_closing_holds_changes_until_it_reopens() {
    let d = open(WINDOWS);
    let t = at("2025-03-04 17:00");
    assert_eq!(d.process(&[warn("A", t)], t).len(), 1);
    // At 18:30 (closed) the alert resolves: the resolution waits for 08:00 next morning.
    let r = at("2025-03-04 18:31");
    assert!(d.process(&[resolved(&[("alertname", "A"), ("severity", "warning")], r)], r).is_empty());
    let sent = run_until(&d, at("2025-03-05 12:00"));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, at("2025-03-05 08:00"));
    assert_eq!(sent[0].1.status, NotificationStatus::Resolved);
}

#[test]
fn calendar_mute_window_suppresses_and_releases() {
    let d = open(WINDOWS);
    let info = |name: &str, t: i64| firing(&[("alertname", name), ("severity", "info")], t);
    let t = at("2025-03-04 03:02");
    assert!(d.process(&[info("CertExpiring", t), info("Flap", t)], t).is_empty());
    // Flap fires and resolves inside the mute window: never sent.
    let r = at("2025-03-04 04:00");
    assert!(d.process(&[resolved(&[("alertname", "Flap"), ("severity", "info")], r)], r).is_empty());
    let sent = run_until(&d, at("2025-03-04 09:00"));
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, at("2025-03-04 07:00"));
    assert_eq!(summary(&sent[0].1).1, vec!["CertExpiring:firing"]);
}

#[test]
fn calendar_receiver_windows_apply_to_the_receiver() {
    let d = open(WINDOWS);
    let crit = |t: i64| firing(&[("alertname", "HisDown"), ("severity", "critical")], t);
    // Sunday 2025-03-09 is a rest day: the director's SMS waits for Monday 08:00.
    let t = at("2025-03-09 11:03");
    assert!(d.process(&[crit(t)], t).is_empty());
    let sent = run_until(&d, at("2025-03-10 09:00"));
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0, sent[0].1.receiver.as_str()), (at("2025-03-10 08:00"), "director-sms"));
}

#[test]
fn calendar_api_override_changes_what_a_workday_is() {
    let d = open(WINDOWS);
    // 2025-03-12 (Wednesday) declared a hospital holiday through the API.
    let day = d.set_calendar_day("2025-03-12", DayKind::Holiday, "院庆", "admin", at("2025-03-01 09:00")).unwrap();
    assert!(!day.workday && day.holiday);
    let t = at("2025-03-12 10:03");
    assert!(d.process(&[warn("DiskSlow", t)], t).is_empty());
    let sent = run_until(&d, at("2025-03-13 09:00"));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, at("2025-03-13 08:00"));
    // Cleared again, the day is a plain Wednesday.
    assert!(d.clear_calendar_day("2025-03-12").unwrap().workday);
    assert!(d.clear_calendar_day("2025-03-12").is_err(), "nothing left to clear");
    assert!(
        d.set_calendar_day("2025-3-12x", DayKind::Holiday, "", "admin", t).unwrap_err().to_string().contains("date")
    );
    // The 2025 statutory list is visible with its 调休 days.
    let year = d.calendar_year(2025);
    let makeup: Vec<_> = year.iter().filter(|x| x.makeup_workday).map(|x| x.date.as_str()).collect();
    assert_eq!(makeup, vec!["2025-01-26", "2025-02-08", "2025-04-27", "2025-09-28", "2025-10-11"]);
}

#[test]
fn calendar_escalation_waits_for_the_receivers_window() {
    let d = open(
        r#"
[route]
receiver = "oncall-wechat"
group_wait = "0s"
repeat_interval = "7d"
escalation = [{ after = "10m", receiver = "director-sms" }]

[[time_windows]]
name = "office"
intervals = [{ days = "workdays", times = ["08:00-18:00"] }]

[[receiver_windows]]
receiver = "director-sms"
active_time_windows = ["office"]
"#,
    );
    // Friday 2025-01-24 17:55: the on-call hears at once; the director's step falls due at
    // 18:05, after office hours, and the next workday is the 调休 Sunday 2025-01-26.
    let t = at("2025-01-24 17:55");
    let sent = d.process(&[firing(&[("alertname", "HisDown")], t)], t);
    assert_eq!(sent.len(), 1);
    let later = run_until(&d, at("2025-01-27 12:00"));
    assert_eq!(later.len(), 1, "{later:?}");
    assert_eq!((later[0].0, later[0].1.receiver.as_str()), (at("2025-01-26 08:00"), "director-sms"));
    assert_eq!(later[0].1.escalation_level, 1);
}
