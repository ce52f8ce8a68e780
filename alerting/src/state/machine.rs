//! The alert state machine of one rule, pure and clock-free: given the alerts the rule had,
//! what its expression returned now, and `now`, it moves each alert inactive → pending →
//! firing → resolved with Prometheus's semantics for `for` and `keep_firing_for`.

use crate::model::{Alert, AlertSource, AlertState, LabelMap, fingerprint};
use std::collections::{BTreeMap, BTreeSet};

/// One alert the state keeps (pending, firing, or resolved and not yet handed to routing).
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveAlert {
    pub rule_key: String,
    pub labels: LabelMap,
    pub annotations: LabelMap,
    pub state: AlertState,
    /// When the condition first held.
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub value: f64,
    pub source: AlertSource,
    /// Firing but no longer returned since then (keep_firing_for counts from here). Not
    /// persisted: after a restart the count starts again, erring toward firing longer.
    pub missing_since_ms: Option<i64>,
    /// External alerts resolve by themselves at this time unless refreshed.
    pub expires_at_ms: Option<i64>,
    /// The alert_history row of this firing episode.
    pub history_id: Option<i64>,
}

impl ActiveAlert {
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.labels)
    }

    /// The shared-model view routing and the API use. `starts_at_ms` is when it started
    /// firing (when the condition first held, while pending).
    pub fn to_alert(&self) -> Alert {
        Alert {
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            state: self.state,
            starts_at_ms: self.fired_at_ms.unwrap_or(self.active_at_ms),
            ends_at_ms: self.resolved_at_ms,
            value: self.value,
            source: self.source.clone(),
        }
    }
}

/// One element the rule's expression returned, labels and annotations already rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub labels: LabelMap,
    pub annotations: LabelMap,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Pending,
    Firing,
    Resolved,
    /// A pending alert whose condition stopped holding before `for` elapsed: it never fired
    /// and simply disappears.
    Cleared,
}

/// Timing of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
}

/// Advances the alerts of one rule to `now`. Cleared alerts are removed from `alerts`;
/// resolved ones stay (state `Resolved`) until routing has them.
pub fn step(
    rule_key: &str,
    source: &AlertSource,
    timing: Timing,
    alerts: &mut BTreeMap<String, ActiveAlert>,
    observed: Vec<Observed>,
    now_ms: i64,
) -> Vec<(String, Transition)> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for o in observed {
        let fp = fingerprint(&o.labels);
        if !seen.insert(fp.clone()) {
            // Two results with one label set (possible after label templating): the first wins,
            // as in Prometheus, which reports the duplicate as an evaluation error.
            continue;
        }
        match alerts.get_mut(&fp) {
            Some(a) if a.state != AlertState::Resolved => {
                a.value = o.value;
                a.annotations = o.annotations;
                a.missing_since_ms = None;
            }
            _ => {
                alerts.insert(
                    fp.clone(),
                    ActiveAlert {
                        rule_key: rule_key.to_string(),
                        labels: o.labels,
                        annotations: o.annotations,
                        state: AlertState::Pending,
                        active_at_ms: now_ms,
                        fired_at_ms: None,
                        resolved_at_ms: None,
                        value: o.value,
                        source: source.clone(),
                        missing_since_ms: None,
                        expires_at_ms: None,
                        history_id: None,
                    },
                );
                if timing.for_ms > 0 {
                    out.push((fp.clone(), Transition::Pending));
                }
            }
        }
    }
    let mut cleared = Vec::new();
    for (fp, a) in alerts.iter_mut() {
        if seen.contains(fp) {
            if a.state == AlertState::Pending && now_ms.saturating_sub(a.active_at_ms) >= timing.for_ms {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(now_ms);
                out.push((fp.clone(), Transition::Firing));
            }
            continue;
        }
        match a.state {
            AlertState::Pending | AlertState::Inactive => {
                cleared.push(fp.clone());
                out.push((fp.clone(), Transition::Cleared));
            }
            AlertState::Firing => {
                let since = *a.missing_since_ms.get_or_insert(now_ms);
                if now_ms.saturating_sub(since) >= timing.keep_firing_for_ms {
                    a.state = AlertState::Resolved;
                    a.resolved_at_ms = Some(now_ms);
                    out.push((fp.clone(), Transition::Resolved));
                }
            }
            AlertState::Resolved => {}
        }
    }
    for fp in cleared {
        alerts.remove(&fp);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(host: &str, v: f64) -> Observed {
        let labels: LabelMap =
            [("alertname", "Hot"), ("host", host)].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        Observed { labels, annotations: LabelMap::new(), value: v }
    }

    fn kinds(t: &[(String, Transition)]) -> Vec<Transition> {
        t.iter().map(|(_, k)| *k).collect()
    }

    const SRC: AlertSource = AlertSource::External(String::new());

    #[test]
    fn for_holds_pending_then_fires_then_resolves() {
        let timing = Timing { for_ms: 10_000, keep_firing_for_ms: 0 };
        let mut a = BTreeMap::new();
        assert_eq!(kinds(&step("r", &SRC, timing, &mut a, vec![obs("h", 1.0)], 0)), [Transition::Pending]);
        assert_eq!(kinds(&step("r", &SRC, timing, &mut a, vec![obs("h", 2.0)], 9_999)), []);
        assert_eq!(kinds(&step("r", &SRC, timing, &mut a, vec![obs("h", 3.0)], 10_000)), [Transition::Firing]);
        let fp = fingerprint(&obs("h", 0.0).labels);
        assert_eq!(a[&fp].value, 3.0);
        assert_eq!(a[&fp].to_alert().starts_at_ms, 10_000);
        assert_eq!(kinds(&step("r", &SRC, timing, &mut a, vec![], 15_000)), [Transition::Resolved]);
        assert_eq!(a[&fp].to_alert().ends_at_ms, Some(15_000));
        // Resolved and not yet removed: nothing more happens to it.
        assert_eq!(kinds(&step("r", &SRC, timing, &mut a, vec![], 20_000)), []);
    }

    #[test]
    fn pending_that_stops_is_cleared_and_restarts_its_clock() {
        let timing = Timing { for_ms: 10_000, keep_firing_for_ms: 0 };
        let mut a = BTreeMap::new();
        step("r", &SRC, timing, &mut a, vec![obs("h", 1.0)], 0);
        assert_eq!(kinds(&step("r", &SRC, timing, &mut a, vec![], 5_000)), [Transition::Cleared]);
        assert!(a.is_empty());
        step("r", &SRC, timing, &mut a, vec![obs("h", 1.0)], 6_000);
        assert_eq!(kinds(&step("r", &SRC, timing, &mut a, vec![obs("h", 1.0)], 15_000)), []);
        assert_eq!(kinds(&step("r", &SRC, timing, &mut a, vec![obs("h", 1.0)], 16_000)), [Transition::Firing]);
    }

    #[test]
    fn zero_for_fires_at_once_and_keep_firing_for_holds() {
        let timing = Timing { for_ms: 0, keep_firing_for_ms: 30_000 };
        let mut a = BTreeMap::new();
        assert_eq!(kinds(&step("r", &SRC, timing, &mut a, vec![obs("h", 1.0)], 0)), [Transition::Firing]);
        assert_eq!(kinds(&step("r", &SRC, timing, &mut a, vec![], 5_000)), []);
        // Back within the window: the clock resets.
        assert_eq!(kinds(&step("r", &SRC, timing, &mut a, vec![obs("h", 1.0)], 20_000)), []);
        assert_eq!(kinds(&step("r", &SRC, timing, &mut a, vec![], 25_000)), []);
        assert_eq!(kinds(&step("r", &SRC, timing, &mut a, vec![], 54_999)), []);
        assert_eq!(kinds(&step("r", &SRC, timing, &mut a, vec![], 55_000)), [Transition::Resolved]);
    }

    #[test]
    fn alerts_are_per_label_set() {
        let timing = Timing::default();
        let mut a = BTreeMap::new();
        let t = step("r", &SRC, timing, &mut a, vec![obs("a", 1.0), obs("b", 1.0), obs("a", 9.0)], 0);
        assert_eq!(kinds(&t), [Transition::Firing, Transition::Firing]);
        assert_eq!(a.values().find(|x| x.labels["host"] == "a").unwrap().value, 1.0, "first duplicate wins");
        let t = step("r", &SRC, timing, &mut a, vec![obs("b", 1.0)], 1);
        assert_eq!(kinds(&t), [Transition::Resolved]);
        assert_eq!(a.values().filter(|x| x.state == AlertState::Firing).count(), 1);
    }
}
