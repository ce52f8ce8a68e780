//! Generic webhook with an Alertmanager-compatible body (version 4: status, receiver,
//! groupLabels, commonLabels, commonAnnotations, externalURL, alerts, groupKey,
//! truncatedAlerts), so anything that takes Alertmanager webhooks takes tingzhen's. An
//! `Idempotency-Key` header carries the delivery's dedup id for receivers that deduplicate.

use super::http::HttpClient;
use super::{BuildError, Message, Notifier, NotifyError, Receipt, WebhookConfig, secret};
use crate::model::{AlertState, Notification, NotificationStatus};
use crate::templates::common;
use serde_json::{Value, json};
use std::time::Duration;

/// Alertmanager's "zero time" for an alert that has not ended.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub struct Webhook {
    url: String,
    bearer: Option<String>,
    max_alerts: usize,
    external_url: String,
    http: HttpClient,
}

fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ZERO_TIME.to_string())
}

/// The Alertmanager webhook body (version 4) for `n`.
pub fn alertmanager_body(n: &Notification, external_url: &str, max_alerts: usize) -> Value {
    let status = match n.status {
        NotificationStatus::Firing => "firing",
        NotificationStatus::Resolved => "resolved",
    };
    let keep = if max_alerts == 0 { n.alerts.len() } else { max_alerts.min(n.alerts.len()) };
    let alerts: Vec<Value> = n.alerts[..keep]
        .iter()
        .map(|a| {
            json!({
                "status": if a.state == AlertState::Resolved { "resolved" } else { "firing" },
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": utc(a.starts_at_ms),
                "endsAt": a.ends_at_ms.map(utc).unwrap_or_else(|| ZERO_TIME.to_string()),
                "generatorURL": "",
                "fingerprint": a.fingerprint(),
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": n.alerts.len() - keep,
        "status": status,
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": common(n.alerts.iter().map(|a| &a.labels)),
        "commonAnnotations": common(n.alerts.iter().map(|a| &a.annotations)),
        "externalURL": external_url,
        "alerts": alerts,
    })
}

impl Webhook {
    pub fn new(name: &str, c: &WebhookConfig, timeout: Duration) -> Result<Self, BuildError> {
        let bearer = c.bearer.as_ref().map(|b| secret(&format!("webhooks.{name}.bearer"), b)).transpose()?;
        Ok(Self {
            url: c.url.clone(),
            bearer: bearer.map(|b| format!("Bearer {b}")),
            max_alerts: c.max_alerts,
            external_url: c.external_url.clone(),
            http: HttpClient::new(timeout, c.ca_file.as_deref(), &format!("webhooks.{name}.ca_file"))?,
        })
    }
}

impl Notifier for Webhook {
    fn send(&self, msg: &Message<'_>) -> Result<Receipt, NotifyError> {
        let body = alertmanager_body(msg.notification, &self.external_url, self.max_alerts);
        let mut headers = vec![("Idempotency-Key", msg.dedup_id)];
        if let Some(b) = &self.bearer {
            headers.push(("Authorization", b.as_str()));
        }
        let answer = self.http.post_json(&self.url, &headers, &body)?;
        answer.check_status()?;
        Ok(Receipt(format!("HTTP {}", answer.status)))
    }
}
