//! The vocabulary every alerting stage shares: an alert (its identity is its label set), its
//! state, and a notification (a group of alerts for one receiver, with the key that makes
//! delivery idempotent).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Label and annotation maps are ordered so fingerprints and rendered messages are stable.
pub type LabelMap = BTreeMap<String, String>;

/// The label every tingzhen alert carries with its name (Prometheus's convention).
pub const ALERTNAME: &str = "alertname";
/// The severity label: `critical`, `warning` or `info` by convention.
pub const SEVERITY: &str = "severity";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inactive => "inactive",
            Self::Pending => "pending",
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// Where an alert came from: a rule evaluated here, or an external Prometheus via intake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "lowercase")]
pub enum AlertSource {
    Rule(String),
    External(String),
}

/// One alert instance. Its identity is its label set (`fingerprint`); annotations are rendered
/// text that may change while the alert fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: LabelMap,
    pub annotations: LabelMap,
    pub state: AlertState,
    /// When the condition first held (pending) or, for firing alerts, when it started firing.
    pub starts_at_ms: i64,
    /// Set once the alert resolved.
    pub ends_at_ms: Option<i64>,
    /// The value of the expression at the last evaluation that matched.
    pub value: f64,
    pub source: AlertSource,
}

impl Alert {
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.labels)
    }

    pub fn name(&self) -> &str {
        self.labels.get(ALERTNAME).map(String::as_str).unwrap_or("")
    }

    pub fn severity(&self) -> &str {
        self.labels.get(SEVERITY).map(String::as_str).unwrap_or("")
    }
}

/// A stable identity for a label set: hex SHA-256 over `name\xffvalue\xff` pairs in order, so it
/// survives restarts and matches across processes.
pub fn fingerprint(labels: &LabelMap) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(v.as_bytes());
        h.update([0xff]);
    }
    hex::encode(&h.finalize()[..16])
}

/// Whether a notification announces trouble or its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationStatus {
    Firing,
    Resolved,
}

/// What routing hands to the outbox: the alerts of one group for one receiver. The outbox
/// stores it before any attempt and delivers it at least once per channel; `idempotency_key`
/// is what makes a retry, a restart or a re-flush of the same group state a no-op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique per (receiver, group, the alert states it announces); see `routing`.
    pub idempotency_key: String,
    pub receiver: String,
    /// The route's group key (route path + group_by label values).
    pub group_key: String,
    pub group_labels: LabelMap,
    pub status: NotificationStatus,
    pub alerts: Vec<Alert>,
    pub created_at_ms: i64,
    /// 0 for the first receiver; n for the n-th escalation step.
    pub escalation_level: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_order_independent_and_label_sensitive() {
        let a: LabelMap = [("a", "1"), ("b", "2")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let mut b = LabelMap::new();
        b.insert("b".into(), "2".into());
        b.insert("a".into(), "1".into());
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b.insert("a".into(), "12".into());
        assert_ne!(fingerprint(&a), fingerprint(&b));
        // "a=1,b=2" must not collide with "a=1\xffb=2"-style concatenations.
        let c: LabelMap = [("a", "1\u{ff}b")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }
}
