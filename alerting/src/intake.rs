//! Alertmanager-compatible intake (`POST /api/v2/alerts`): an existing Prometheus (or
//! anything speaking Alertmanager's v2 API) hands its alerts to tingzhen's routing, calendars
//! and Chinese channels. The body is validated whole — one bad alert refuses the request —
//! and errors name the alert index and field.

use crate::model::LabelMap;
use crate::state::ExternalAlert;
use chrono::DateTime;
use serde::Deserialize;

/// One alert of an Alertmanager v2 `PostableAlerts` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: LabelMap,
    #[serde(default)]
    pub annotations: LabelMap,
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct IntakeError {
    /// e.g. `alerts[2].labels`.
    pub field: String,
    pub message: String,
}

fn err(i: usize, field: &str, message: impl Into<String>) -> IntakeError {
    IntakeError { field: format!("alerts[{i}].{field}"), message: message.into() }
}

fn parse_time(i: usize, field: &str, s: &Option<String>) -> Result<Option<i64>, IntakeError> {
    match s.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        // Alertmanager clients send Go's zero time for "unset".
        Some(t) if t.starts_with("0001-01-01") => Ok(None),
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|d| Some(d.timestamp_millis()))
            .map_err(|e| err(i, field, format!("{t:?} is not an RFC 3339 time: {e}"))),
    }
}

fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// Decodes and validates a body. Alerts without `endsAt` fire until `now + resolve_timeout_ms`
/// unless sent again, as in Alertmanager.
pub fn parse(body: &[u8], now_ms: i64, resolve_timeout_ms: i64) -> Result<Vec<ExternalAlert>, IntakeError> {
    let alerts: Vec<PostableAlert> = serde_json::from_slice(body).map_err(|e| IntakeError {
        field: "body".into(),
        message: format!("expected a JSON array of alerts (Alertmanager API v2): {e}"),
    })?;
    alerts
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            if a.labels.is_empty() {
                return Err(err(i, "labels", "at least one label is required"));
            }
            for (k, v) in &a.labels {
                if !valid_label_name(k) {
                    return Err(err(i, "labels", format!("{k:?} is not a valid label name")));
                }
                if v.is_empty() {
                    return Err(err(i, &format!("labels.{k}"), "empty value"));
                }
            }
            for k in a.annotations.keys() {
                if !valid_label_name(k) {
                    return Err(err(i, "annotations", format!("{k:?} is not a valid annotation name")));
                }
            }
            let starts = parse_time(i, "startsAt", &a.starts_at)?.unwrap_or(now_ms);
            let ends = parse_time(i, "endsAt", &a.ends_at)?;
            if let Some(e) = ends
                && e < starts
            {
                return Err(err(i, "endsAt", "is before startsAt"));
            }
            Ok(ExternalAlert {
                labels: a.labels,
                annotations: a.annotations,
                starts_at_ms: starts,
                ends_at_ms: ends.unwrap_or(now_ms.max(starts).saturating_add(resolve_timeout_ms)),
                generator_url: a.generator_url.unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_alertmanager_v2_bodies() {
        let body = br#"[
            {"labels": {"alertname": "DiskFull", "host": "db-1"}, "annotations": {"summary": "disk"},
             "startsAt": "2026-01-01T00:00:00Z", "generatorURL": "http://prom/graph"},
            {"labels": {"alertname": "Gone"}, "startsAt": "2025-12-31T16:00:00Z", "endsAt": "2026-01-01T00:05:00+08:00"},
            {"labels": {"alertname": "Zero"}, "startsAt": "0001-01-01T00:00:00Z"}
        ]"#;
        let now = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let a = parse(body, now + 60_000, 300_000).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].starts_at_ms, now);
        assert_eq!(a[0].ends_at_ms, now + 60_000 + 300_000, "no endsAt: now + resolve_timeout");
        assert_eq!(a[0].generator_url, "http://prom/graph");
        assert_eq!(a[1].ends_at_ms, now - 8 * 3_600_000 + 300_000);
        assert_eq!(a[2].starts_at_ms, now + 60_000, "Go zero time means unset");
    }

    #[test]
    fn names_the_bad_field() {
        let cases: [(&[u8], &str); 6] = [
            (b"{}", "body"),
            (br#"[{"labels": {}}]"#, "alerts[0].labels"),
            (br#"[{"labels": {"a": "1"}}, {"labels": {"bad-name": "x"}}]"#, "alerts[1].labels"),
            (br#"[{"labels": {"a": ""}}]"#, "alerts[0].labels.a"),
            (br#"[{"labels": {"a": "1"}, "startsAt": "yesterday"}]"#, "alerts[0].startsAt"),
            (
                br#"[{"labels": {"a": "1"}, "startsAt": "2026-01-02T00:00:00Z", "endsAt": "2026-01-01T00:00:00Z"}]"#,
                "alerts[0].endsAt",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(parse(body, 0, 1).unwrap_err().field, field, "{}", String::from_utf8_lossy(body));
        }
    }
}
