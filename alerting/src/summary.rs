//! Summaries (MON-12 alerts, MON-13 notifications): counts by severity, campus, system, rule,
//! host, receiver, channel and outcome; leaderboards of the most alerting hosts, rules,
//! systems and campuses; MTTA and MTTR — for today (Asia/Shanghai) and a chosen range.
//! Pure functions over alert history and outbox deliveries, so tests need no clock.

use crate::outbox::DeliveryRecord;
use crate::state::store::HistoryRow;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Asia/Shanghai has been UTC+8 without daylight saving since 1991.
const SHANGHAI_OFFSET_MS: i64 = 8 * 3_600_000;
const DAY_MS: i64 = 86_400_000;
const LEADERBOARD_SIZE: usize = 10;

/// Midnight (Asia/Shanghai) of the day containing `now_ms`.
pub fn shanghai_day_start(now_ms: i64) -> i64 {
    (now_ms + SHANGHAI_OFFSET_MS).div_euclid(DAY_MS) * DAY_MS - SHANGHAI_OFFSET_MS
}

/// A breakdown a caller may ask for with `by=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    Severity,
    Campus,
    System,
    Rule,
    Host,
    Receiver,
    Channel,
    Outcome,
}

impl Dimension {
    pub const ALL: [Dimension; 8] = [
        Self::Severity,
        Self::Campus,
        Self::System,
        Self::Rule,
        Self::Host,
        Self::Receiver,
        Self::Channel,
        Self::Outcome,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Severity => "severity",
            Self::Campus => "campus",
            Self::System => "system",
            Self::Rule => "rule",
            Self::Host => "host",
            Self::Receiver => "receiver",
            Self::Channel => "channel",
            Self::Outcome => "outcome",
        }
    }

    /// Parses `by=severity,campus`; empty means all. Names the unknown one.
    pub fn parse_list(s: &str) -> Result<Vec<Dimension>, String> {
        let mut out = BTreeSet::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let d = Self::ALL.into_iter().find(|d| d.as_str() == part).ok_or_else(|| {
                format!("unknown dimension {part:?}; use {}", Self::ALL.map(|d| d.as_str()).join(", "))
            })?;
            out.insert(d);
        }
        Ok(if out.is_empty() { Self::ALL.to_vec() } else { out.into_iter().collect() })
    }

    /// The label an alert is counted under (rules by `alertname`; hosts fall back to `instance`).
    fn alert_key(self, labels: &BTreeMap<String, String>) -> Option<String> {
        let get = |k: &str| labels.get(k).cloned();
        match self {
            Self::Severity => get("severity"),
            Self::Campus => get("campus"),
            Self::System => get("system"),
            Self::Rule => get("alertname"),
            Self::Host => get("host").or_else(|| get("instance")),
            Self::Receiver | Self::Channel | Self::Outcome => None,
        }
    }
}

/// Label value used when an alert has no such label, so totals still add up.
const NONE: &str = "(none)";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranked {
    pub key: String,
    pub count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertCounts {
    /// Firing episodes that started in the period.
    pub total: u64,
    /// Of those, how many have resolved.
    pub resolved: u64,
    /// Of those, how many were acknowledged.
    pub acknowledged: u64,
    pub by: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NotificationCounts {
    /// Notifications (one message for one receiver, whatever channels it used).
    pub total: u64,
    /// Deliveries: one per notification and channel.
    pub deliveries: u64,
    pub by: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Leaderboards {
    pub hosts: Vec<Ranked>,
    pub rules: Vec<Ranked>,
    pub systems: Vec<Ranked>,
    pub campuses: Vec<Ranked>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Period {
    pub from_ms: i64,
    pub to_ms: i64,
    pub alerts: AlertCounts,
    pub notifications: NotificationCounts,
    pub leaderboards: Leaderboards,
    /// Mean time to acknowledge, over episodes started in the period and acknowledged.
    pub mtta_seconds: Option<f64>,
    /// Mean time to resolve, over episodes that resolved in the period.
    pub mttr_seconds: Option<f64>,
}

fn bump(map: &mut BTreeMap<String, BTreeMap<String, u64>>, dim: Dimension, key: Option<String>) {
    *map.entry(dim.as_str().into()).or_default().entry(key.unwrap_or_else(|| NONE.into())).or_default() += 1;
}

fn leaderboard(counts: HashMap<String, u64>) -> Vec<Ranked> {
    let mut v: Vec<Ranked> = counts.into_iter().map(|(key, count)| Ranked { key, count }).collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    v.truncate(LEADERBOARD_SIZE);
    v
}

fn mean_seconds(v: &[i64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().map(|&ms| ms as f64).sum::<f64>() / v.len() as f64 / 1000.0)
}

/// Summarises `[from_ms, to_ms)`. `history` and `deliveries` may cover more; this filters.
pub fn summarize(
    history: &[HistoryRow],
    deliveries: &[DeliveryRecord],
    from_ms: i64,
    to_ms: i64,
    dims: &[Dimension],
) -> Period {
    let in_range = |t: i64| t >= from_ms && t < to_ms;
    let mut alerts = AlertCounts::default();
    let mut boards: [HashMap<String, u64>; 4] = Default::default();
    let mut ack_times = Vec::new();
    let mut resolve_times = Vec::new();
    for h in history {
        if let Some(end) = h.ended_at_ms
            && in_range(end)
        {
            resolve_times.push(end - h.started_at_ms);
        }
        if !in_range(h.started_at_ms) {
            continue;
        }
        alerts.total += 1;
        alerts.resolved += u64::from(h.ended_at_ms.is_some());
        if let Some(ack) = h.acked_at_ms {
            alerts.acknowledged += 1;
            ack_times.push((ack - h.started_at_ms).max(0));
        }
        for &d in dims {
            if matches!(
                d,
                Dimension::Severity | Dimension::Campus | Dimension::System | Dimension::Rule | Dimension::Host
            ) {
                bump(&mut alerts.by, d, d.alert_key(&h.labels));
            }
        }
        for (board, dim) in
            boards.iter_mut().zip([Dimension::Host, Dimension::Rule, Dimension::System, Dimension::Campus])
        {
            if let Some(k) = dim.alert_key(&h.labels) {
                *board.entry(k).or_default() += 1;
            }
        }
    }
    let mut notes = NotificationCounts::default();
    let mut seen_notifications = BTreeSet::new();
    for d in deliveries.iter().filter(|d| in_range(d.created_at_ms)) {
        notes.deliveries += 1;
        let first = seen_notifications.insert(d.notification_id);
        notes.total += u64::from(first);
        for &dim in dims {
            match dim {
                Dimension::Receiver if first => bump(&mut notes.by, dim, Some(d.receiver.clone())),
                Dimension::Channel => bump(&mut notes.by, dim, Some(d.kind.clone())),
                Dimension::Outcome => bump(&mut notes.by, dim, Some(d.outcome.as_str().to_string())),
                Dimension::Receiver => {}
                other if first => bump(&mut notes.by, other, other.alert_key(&d.labels)),
                _ => {}
            }
        }
    }
    let [hosts, rules, systems, campuses] = boards;
    Period {
        from_ms,
        to_ms,
        alerts,
        notifications: notes,
        leaderboards: Leaderboards {
            hosts: leaderboard(hosts),
            rules: leaderboard(rules),
            systems: leaderboard(systems),
            campuses: leaderboard(campuses),
        },
        mtta_seconds: mean_seconds(&ack_times),
        mttr_seconds: mean_seconds(&resolve_times),
    }
}

#[cfg(test)]
mod tests;
