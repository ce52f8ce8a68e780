//! One flow event as clients send it (`POST /api/v1/flows/events`, or decoded from an OTLP
//! span), and its per-event validation: every error names the field, so a batch can answer
//! which of its events were refused and why while keeping the rest.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Events further in the future than this are refused (a clock gone wrong, or ms sent as s).
const MAX_FUTURE_MS: i64 = 10 * 60_000;
/// Campus or system when the sender does not say.
pub const UNKNOWN: &str = "unknown";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn {
    flow: String,
    key: String,
    step: String,
    time: Value,
    #[serde(default)]
    campus: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    interface: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, Value>,
}

/// A decoded event; the flow and step are checked against the models later.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub flow: String,
    pub key: String,
    pub step: String,
    pub time_ms: i64,
    pub campus: String,
    pub system: String,
    pub ok: bool,
    pub interface: Option<String>,
    pub attrs: BTreeMap<String, String>,
}

/// Why a text field is refused, if it is; the caller names the field (only on error, so a
/// valid event formats nothing).
fn text_problem(s: &str) -> Option<&'static str> {
    if s.trim().is_empty() {
        Some("must not be empty")
    } else if s.len() > 128 && s.chars().count() > 128 {
        Some("must be at most 128 characters")
    } else if s.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    }
}

/// A checked, trimmed text field; the string is reused when it has nothing to trim.
fn checked(field: impl std::fmt::Display, s: String) -> Result<String, String> {
    if let Some(p) = text_problem(&s) {
        return Err(format!("{field}: {p}"));
    }
    Ok(if s.trim().len() == s.len() { s } else { s.trim().to_string() })
}

fn text(field: &str, v: Option<String>, required: bool) -> Result<Option<String>, String> {
    match v {
        None if required => Err(format!("{field}: missing")),
        None => Ok(None),
        Some(s) => checked(field, s).map(Some),
    }
}

/// Unix seconds (fractions allowed) or RFC 3339.
pub fn parse_time(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(s) if s.is_finite() && s > 0.0 && s < 1e11 => Ok((s * 1000.0).round() as i64),
            _ => Err(format!("time: {n} is not Unix seconds")),
        },
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|_| format!("time: {s:?} is neither Unix seconds nor RFC 3339 (2026-11-26T08:30:00+08:00)")),
        other => Err(format!("time: expected Unix seconds or an RFC 3339 string, got {other}")),
    }
}

impl Event {
    /// Validates one element of a batch. `now_ms` bounds how far in the future it may be.
    pub fn from_json(v: Value, now_ms: i64) -> Result<Self, String> {
        if !v.is_object() {
            return Err("an event must be a JSON object".into());
        }
        // Name the missing field before serde's generic "missing field" message.
        for field in ["flow", "key", "step", "time"] {
            if v.get(field).is_none_or(Value::is_null) {
                return Err(format!("{field}: missing"));
            }
        }
        let e: EventIn = serde_json::from_value(v).map_err(|e| e.to_string())?;
        let time_ms = parse_time(&e.time)?;
        let ok = match e.status.as_deref() {
            None | Some("ok") => true,
            Some("error") => false,
            Some(other) => return Err(format!("status: {other:?} is not \"ok\" or \"error\"")),
        };
        let mut attrs = BTreeMap::new();
        for (k, v) in e.attributes {
            let s = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => return Err(format!("attributes.{k}: expected a string, number or boolean, got {other}")),
            };
            let s = checked(format_args!("attributes.{k}"), s)?;
            attrs.insert(k, s);
        }
        let event = Self {
            flow: text("flow", Some(e.flow), true)?.unwrap_or_default(),
            key: text("key", Some(e.key), true)?.unwrap_or_default(),
            step: text("step", Some(e.step), true)?.unwrap_or_default(),
            time_ms,
            campus: text("campus", e.campus, false)?.unwrap_or_else(|| UNKNOWN.into()),
            system: text("system", e.system, false)?.unwrap_or_else(|| UNKNOWN.into()),
            ok,
            interface: text("interface", e.interface, false)?,
            attrs,
        };
        event.check_time(now_ms)?;
        Ok(event)
    }

    pub fn check_time(&self, now_ms: i64) -> Result<(), String> {
        if self.time_ms > now_ms + MAX_FUTURE_MS {
            return Err(format!("time: {} ms is more than 10 minutes in the future", self.time_ms));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_the_field() {
        let now = 1_800_000_000_000;
        let e = |v| Event::from_json(v, now).unwrap_err();
        assert_eq!(e(json!({"flow":"f","step":"s","time":1})), "key: missing");
        assert!(e(json!({"flow":"f","key":"k","step":"s","time":"yesterday"})).starts_with("time:"));
        assert!(e(json!({"flow":"f","key":"","step":"s","time":1})).starts_with("key: must not be empty"));
        assert!(e(json!({"flow":"f","key":"k","step":"s","time":1,"status":"bad"})).starts_with("status:"));
        assert!(e(json!({"flow":"f","key":"k","step":"s","time":1,"colour":"red"})).contains("colour"));
        assert!(e(json!({"flow":"f","key":"k","step":"s","time":1_900_000_000})).contains("future"));
        let ok = Event::from_json(
            json!({"flow":"f","key":"k","step":"s","time":"2026-11-26T08:30:00+08:00","attributes":{"urgency":"急","n":3}}),
            now,
        )
        .unwrap();
        assert_eq!(ok.campus, UNKNOWN);
        assert_eq!(ok.attrs["n"], "3");
        assert_eq!(ok.time_ms, 1_795_653_000_000);
    }
}
