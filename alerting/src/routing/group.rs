//! One aggregation group (a route and its group-label values) and its memory: the alerts in
//! it, what was last announced, when it flushes next, whether a time window holds it, and how
//! far it has escalated. Decisions follow Alertmanager's dedup rule: notify when a new alert
//! fires, when an announced alert resolves, or when `repeat_interval` has passed.
//! The whole struct is persisted as JSON, so a restart continues exactly where it stopped.

use super::tree::Route;
use crate::model::{Alert, AlertState, LabelMap, Notification, NotificationStatus};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Whether time windows allow a receiver to be notified now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    Open,
    /// A mute window is open: what would be sent is suppressed; what is still true when it
    /// closes is sent then.
    Muted,
    /// Outside every active window: notifications are held and delivered when one opens.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Hold {
    Active,
    Mute,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Group {
    pub route_key: String,
    pub group_key: String,
    pub group_labels: LabelMap,
    /// Members by fingerprint: firing alerts, and resolved ones until announced.
    pub alerts: BTreeMap<String, Alert>,
    pub created_ms: i64,
    pub next_flush_ms: i64,
    /// The first flush (after group_wait) has happened.
    pub flushed: bool,
    /// fingerprint → state as last announced to the route's receiver.
    pub notified: BTreeMap<String, AlertState>,
    /// fingerprint → when this group first announced it firing (for MTTA).
    pub first_announced_ms: BTreeMap<String, i64>,
    pub last_notified_ms: Option<i64>,
    /// Notifications emitted for this group so far; part of every idempotency key.
    pub seq: u64,
    pub hold: Option<Hold>,
    /// Fingerprints muted (silenced or inhibited) at the last evaluation.
    pub muted: BTreeSet<String>,
    /// Escalation clock: the first firing notification with unacknowledged alerts.
    pub esc_started_ms: Option<i64>,
    /// Escalation steps sent since the clock started.
    pub esc_level: u32,
    /// Highest step ever reached while the group lived: those receivers hear the resolution.
    pub esc_reached: u32,
    pub acked: BTreeSet<String>,
    pub acked_at_ms: Option<i64>,
    pub acked_by: Option<String>,
}

/// The deterministic key: same receiver, group, announced alert states, level and sequence
/// → same key, so a re-flush after a crash is deduplicated by the outbox.
pub(crate) fn idempotency_key(receiver: &str, group_key: &str, alerts: &[Alert], level: u32, seq: u64) -> String {
    let mut h = Sha256::new();
    for part in [receiver, group_key] {
        h.update(part.as_bytes());
        h.update([0xff]);
    }
    let mut states: Vec<(String, &str)> = alerts.iter().map(|a| (a.fingerprint(), a.state.as_str())).collect();
    states.sort();
    for (fp, st) in states {
        h.update(fp.as_bytes());
        h.update(b"=");
        h.update(st.as_bytes());
        h.update([0xfe]);
    }
    h.update(level.to_be_bytes());
    h.update(seq.to_be_bytes());
    hex::encode(h.finalize())
}

impl Group {
    pub fn new(route: &Route, group_key: String, group_labels: LabelMap, now_ms: i64) -> Self {
        Self {
            route_key: route.key.clone(),
            group_key,
            group_labels,
            alerts: BTreeMap::new(),
            created_ms: now_ms,
            next_flush_ms: now_ms.saturating_add(route.group_wait_ms),
            flushed: false,
            notified: BTreeMap::new(),
            first_announced_ms: BTreeMap::new(),
            last_notified_ms: None,
            seq: 0,
            hold: None,
            muted: BTreeSet::new(),
            esc_started_ms: None,
            esc_level: 0,
            esc_reached: 0,
            acked: BTreeSet::new(),
            acked_at_ms: None,
            acked_by: None,
        }
    }

    pub fn visible_firing(&self) -> Vec<&Alert> {
        self.alerts
            .iter()
            .filter(|(fp, a)| a.state == AlertState::Firing && !self.muted.contains(*fp))
            .map(|(_, a)| a)
            .collect()
    }

    fn unacked_firing(&self) -> bool {
        self.visible_firing().iter().any(|a| !self.acked.contains(&a.fingerprint()))
    }

    fn notification(&self, receiver: &str, alerts: Vec<Alert>, level: u32, now_ms: i64) -> Notification {
        let status = if alerts.iter().any(|a| a.state == AlertState::Firing) {
            NotificationStatus::Firing
        } else {
            NotificationStatus::Resolved
        };
        Notification {
            idempotency_key: idempotency_key(receiver, &self.group_key, &alerts, level, self.seq),
            receiver: receiver.to_string(),
            group_key: self.group_key.clone(),
            group_labels: self.group_labels.clone(),
            status,
            alerts,
            created_at_ms: now_ms,
            escalation_level: level,
        }
    }

    /// Whether the group should be flushed now.
    pub fn due(&self, now_ms: i64, gate: Gate, muted_changed: bool) -> bool {
        now_ms >= self.next_flush_ms || (self.hold.is_some() && gate == Gate::Open) || (self.flushed && muted_changed)
    }

    /// Flushes: decides whether the route's receiver must hear about the group now and, if
    /// the gate allows, returns that notification (plus resolutions for escalation receivers).
    pub fn flush(&mut self, route: &Route, gate: Gate, now_ms: i64) -> Vec<Notification> {
        self.flushed = true;
        self.next_flush_ms = now_ms.saturating_add(route.group_interval_ms);
        let firing: Vec<Alert> = self.visible_firing().into_iter().cloned().collect();
        let prev_firing: BTreeSet<&String> =
            self.notified.iter().filter(|(_, s)| **s == AlertState::Firing).map(|(fp, _)| fp).collect();
        let held_active = self.hold == Some(Hold::Active);
        let resolved: Vec<Alert> = self
            .alerts
            .iter()
            .filter(|(fp, a)| {
                a.state == AlertState::Resolved
                    && (prev_firing.contains(fp) || (held_active && !self.notified.contains_key(*fp)))
            })
            .map(|(_, a)| a.clone())
            .collect();
        let new_firing = firing.iter().any(|a| !prev_firing.contains(&a.fingerprint()));
        let repeat_due = !firing.is_empty()
            && self.last_notified_ms.is_some_and(|t| now_ms.saturating_sub(t) >= route.repeat_interval_ms);
        let needed = new_firing || !resolved.is_empty() || repeat_due;
        let mut out = Vec::new();
        if needed {
            match gate {
                Gate::Closed => self.hold = Some(Hold::Active),
                Gate::Muted => self.hold = Some(Hold::Mute),
                Gate::Open => {
                    out = self.announce(route, firing, resolved, now_ms);
                    self.hold = None;
                }
            }
        } else if gate == Gate::Open {
            self.hold = None;
        }
        // Resolved alerts that were never announced are dropped — unless an active window
        // holds them: "held, not dropped" means the receiver still learns they happened.
        if self.hold != Some(Hold::Active) {
            let notified = &self.notified;
            self.alerts.retain(|fp, a| a.state == AlertState::Firing || notified.contains_key(fp));
        }
        out
    }

    fn announce(&mut self, route: &Route, firing: Vec<Alert>, resolved: Vec<Alert>, now_ms: i64) -> Vec<Notification> {
        self.seq += 1;
        let mut out = Vec::new();
        // Over only when nothing fires any more, silenced or not.
        let all_resolved = !self.alerts.values().any(|a| a.state == AlertState::Firing);
        let mut alerts = firing.clone();
        alerts.extend(resolved.iter().cloned());
        out.push(self.notification(&route.receiver, alerts, 0, now_ms));
        if all_resolved {
            // Everyone who was escalated to also hears that it is over.
            for level in 1..=self.esc_reached {
                if let Some(step) = route.escalation.get(level as usize - 1) {
                    out.push(self.notification(&step.receiver, resolved.clone(), level, now_ms));
                }
            }
            self.esc_started_ms = None;
            self.esc_level = 0;
            self.esc_reached = 0;
        }
        // Announced alerts that are muted now but still firing stay "announced": the receiver
        // was told they fire, so it must hear when they resolve (Alertmanager forgets them).
        let still_muted: Vec<String> = self
            .notified
            .iter()
            .filter(|(fp, st)| {
                **st == AlertState::Firing
                    && self.muted.contains(*fp)
                    && self.alerts.get(*fp).is_some_and(|a| a.state == AlertState::Firing)
            })
            .map(|(fp, _)| fp.clone())
            .collect();
        self.notified = firing.iter().map(|a| (a.fingerprint(), AlertState::Firing)).collect();
        self.notified.extend(still_muted.into_iter().map(|fp| (fp, AlertState::Firing)));
        for a in &firing {
            self.first_announced_ms.entry(a.fingerprint()).or_insert(now_ms);
        }
        for a in &resolved {
            let fp = a.fingerprint();
            self.alerts.remove(&fp);
            self.first_announced_ms.remove(&fp);
            self.acked.remove(&fp);
        }
        self.last_notified_ms = Some(now_ms);
        if self.esc_started_ms.is_none() && !route.escalation.is_empty() && self.unacked_firing() {
            self.esc_started_ms = Some(now_ms);
            self.esc_level = 0;
        }
        out
    }

    /// When the next escalation step is due, if one is pending.
    pub fn escalation_due_ms(&self, route: &Route) -> Option<i64> {
        let t0 = self.esc_started_ms?;
        let step = route.escalation.get(self.esc_level as usize)?;
        self.unacked_firing().then(|| t0.saturating_add(step.after_ms))
    }

    /// Sends every escalation step that is due and whose receiver's windows allow it now.
    pub fn escalate(&mut self, route: &Route, gate_for: impl Fn(&str) -> Gate, now_ms: i64) -> Vec<Notification> {
        let mut out = Vec::new();
        while let Some(due) = self.escalation_due_ms(route) {
            if now_ms < due {
                break;
            }
            let step = &route.escalation[self.esc_level as usize];
            if gate_for(&step.receiver) != Gate::Open {
                break;
            }
            let receiver = step.receiver.clone();
            let firing: Vec<Alert> = self.visible_firing().into_iter().cloned().collect();
            self.esc_level += 1;
            self.esc_reached = self.esc_reached.max(self.esc_level);
            self.seq += 1;
            out.push(self.notification(&receiver, firing, self.esc_level, now_ms));
        }
        out
    }

    /// Acknowledges the firing alerts (all, or those with the given fingerprints); stops the
    /// escalation clock. Returns the fingerprints newly acknowledged.
    pub fn ack(&mut self, only: Option<&str>, by: &str, now_ms: i64) -> Vec<String> {
        let fps: Vec<String> = self
            .alerts
            .iter()
            .filter(|(fp, a)| a.state == AlertState::Firing && only.is_none_or(|o| o == fp.as_str()))
            .map(|(fp, _)| fp.clone())
            .filter(|fp| !self.acked.contains(fp))
            .collect();
        if fps.is_empty() {
            return fps;
        }
        self.acked.extend(fps.iter().cloned());
        self.acked_at_ms = Some(now_ms);
        self.acked_by = Some(by.to_string());
        if !self.unacked_firing() {
            self.esc_started_ms = None;
        }
        fps
    }
}
