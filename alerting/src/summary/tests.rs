use super::*;
use crate::outbox::DeliveryState;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn episode(id: i64, host: &str, rule: &str, start: i64, end: Option<i64>, ack: Option<i64>) -> HistoryRow {
    HistoryRow {
        id,
        rule_key: format!("g/{rule}#0"),
        fingerprint: format!("fp{id}"),
        alertname: rule.into(),
        labels: labels(&[("alertname", rule), ("host", host), ("severity", "critical"), ("campus", "east")]),
        source: "rule".into(),
        started_at_ms: start,
        ended_at_ms: end,
        acked_at_ms: ack,
        value: None,
    }
}

fn delivery(notification_id: i64, receiver: &str, kind: &str, outcome: DeliveryState, at: i64) -> DeliveryRecord {
    DeliveryRecord {
        delivery_id: notification_id * 10 + kind.len() as i64,
        notification_id,
        idempotency_key: format!("k{notification_id}"),
        receiver: receiver.into(),
        group_key: "g".into(),
        status: "firing".into(),
        escalation_level: 0,
        alert_count: 1,
        labels: labels(&[("severity", "critical"), ("system", "his")]),
        channel: kind.into(),
        kind: kind.into(),
        role: "primary".into(),
        outcome,
        attempts: 1,
        created_at_ms: at,
        finished_at_ms: Some(at),
        last_error: None,
        receipt: None,
        notification_created_at_ms: at,
    }
}

#[test]
fn counts_leaderboards_mtta_and_mttr() {
    let history = vec![
        episode(1, "db-1", "HostDown", 1_000, Some(61_000), Some(31_000)),
        episode(2, "db-1", "DiskFull", 2_000, None, None),
        episode(3, "web-1", "HostDown", 3_000, Some(123_000), Some(13_000)),
        episode(4, "web-2", "HostDown", 500_000, None, None), // outside the range
    ];
    let deliveries = vec![
        delivery(1, "oncall", "email", DeliveryState::Sent, 1_500),
        delivery(1, "oncall", "sms_aliyun", DeliveryState::Dead, 1_500),
        delivery(2, "dba", "email", DeliveryState::Sent, 2_500),
        delivery(3, "dba", "email", DeliveryState::Sent, 900_000), // outside
    ];
    let p = summarize(&history, &deliveries, 0, 400_000, &Dimension::ALL);
    assert_eq!((p.alerts.total, p.alerts.resolved, p.alerts.acknowledged), (3, 2, 2));
    assert_eq!(p.alerts.by["host"]["db-1"], 2);
    assert_eq!(p.alerts.by["rule"]["HostDown"], 2);
    assert_eq!(p.alerts.by["system"]["(none)"], 3, "missing labels are counted, not dropped");
    assert_eq!(p.leaderboards.hosts[0], Ranked { key: "db-1".into(), count: 2 });
    assert_eq!(p.leaderboards.rules[0].key, "HostDown");
    assert_eq!(p.leaderboards.campuses, vec![Ranked { key: "east".into(), count: 3 }]);
    assert!(p.leaderboards.systems.is_empty());
    assert_eq!(p.mtta_seconds, Some(20.0)); // (30 s + 10 s) / 2
    assert_eq!(p.mttr_seconds, Some(90.0)); // (60 s + 120 s) / 2
    assert_eq!((p.notifications.total, p.notifications.deliveries), (2, 3));
    assert_eq!(p.notifications.by["receiver"]["oncall"], 1);
    assert_eq!(p.notifications.by["channel"]["email"], 2);
    assert_eq!(p.notifications.by["outcome"]["dead"], 1);
    assert_eq!(p.notifications.by["system"]["his"], 2);
    let only = summarize(&history, &deliveries, 0, 400_000, &[Dimension::Severity]);
    assert_eq!(only.alerts.by.keys().collect::<Vec<_>>(), ["severity"]);
    assert!(only.notifications.by.contains_key("severity"));
    assert!(!only.notifications.by.contains_key("channel"));
}

#[test]
fn dimensions_and_shanghai_days() {
    assert_eq!(Dimension::parse_list("").unwrap().len(), 8);
    assert_eq!(Dimension::parse_list("host, rule,host").unwrap(), [Dimension::Rule, Dimension::Host]);
    assert!(Dimension::parse_list("colour").unwrap_err().contains("colour"));
    // 2026-01-01T15:59:59Z is 23:59:59 in Shanghai; the day began at 2025-12-31T16:00:00Z.
    let t = 1_767_283_199_000;
    assert_eq!(shanghai_day_start(t), 1_767_196_800_000);
    assert_eq!(shanghai_day_start(t + 1_000), t + 1_000, "midnight in Shanghai starts a new day");
}
