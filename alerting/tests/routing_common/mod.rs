//! Shared helpers for the routing and calendar tests: config from TOML, alerts, Shanghai
//! wall times, and a driver that ticks the dispatcher at every wake-up it asks for.
#![allow(dead_code)]

use std::sync::Arc;
use tingzhen_alerting::calendar::{local_to_ms, parse_date};
use tingzhen_alerting::model::{Alert, AlertSource, AlertState, LabelMap, Notification};
use tingzhen_alerting::routing::{Dispatcher, RoutingConfig};
use tingzhen_core::db::testing::fresh_db;

pub fn config(toml_text: &str) -> RoutingConfig {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("test config does not parse: {e}"))
}

pub fn open(toml_text: &str) -> Dispatcher {
    Dispatcher::open(&config(toml_text), Arc::new(fresh_db())).unwrap()
}

/// `"2025-02-08 09:30"` in Asia/Shanghai as UTC milliseconds.
pub fn at(s: &str) -> i64 {
    let (d, t) = s.split_once(' ').unwrap();
    let (h, m) = t.split_once(':').unwrap();
    local_to_ms(parse_date("t", d).unwrap(), h.parse::<u32>().unwrap() * 60 + m.parse::<u32>().unwrap())
}

pub const MIN: i64 = 60_000;

pub fn alert(pairs: &[(&str, &str)], state: AlertState, starts_at_ms: i64) -> Alert {
    Alert {
        labels: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<LabelMap>(),
        annotations: LabelMap::new(),
        state,
        starts_at_ms,
        ends_at_ms: (state == AlertState::Resolved).then_some(starts_at_ms),
        value: 1.0,
        source: AlertSource::Rule("test".into()),
    }
}

pub fn firing(pairs: &[(&str, &str)], t: i64) -> Alert {
    alert(pairs, AlertState::Firing, t)
}

pub fn resolved(pairs: &[(&str, &str)], t: i64) -> Alert {
    alert(pairs, AlertState::Resolved, t)
}

/// (receiver, sorted alertnames with states) — what a person would notice about a message.
pub fn summary(n: &Notification) -> (String, Vec<String>) {
    let mut v: Vec<String> = n
        .alerts
        .iter()
        .map(|a| {
            format!(
                "{}:{}",
                a.labels.get("host").or(a.labels.get("alertname")).cloned().unwrap_or_default(),
                a.state.as_str()
            )
        })
        .collect();
    v.sort();
    (n.receiver.clone(), v)
}

/// Ticks at every wake-up the dispatcher asks for until `until_ms`, collecting what is sent
/// with the time it was sent.
pub fn run_until(d: &Dispatcher, until_ms: i64) -> Vec<(i64, Notification)> {
    let mut out = Vec::new();
    let mut guard = 0;
    while let Some(t) = d.next_wake_ms() {
        if t > until_ms {
            break;
        }
        guard += 1;
        assert!(guard < 10_000, "dispatcher keeps asking to wake up");
        for n in d.tick(t) {
            out.push((t, n));
        }
    }
    d.tick(until_ms).into_iter().for_each(|n| out.push((until_ms, n)));
    out
}
