//! Message templates: handlebars files per language (`zh-CN/`, `en/`), embedded in the binary,
//! with the words around them (severity and status names, duration units) in each language's
//! `strings.toml`. The context a template sees is built here from a `Notification`, with every
//! time shown in Asia/Shanghai.

use crate::model::{Alert, AlertState, LabelMap, Notification, NotificationStatus};
use crate::notify::Language;
use chrono::{DateTime, FixedOffset, TimeZone};
use handlebars::{Handlebars, handlebars_helper};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// Which message a channel sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateKind {
    EmailSubject,
    EmailBody,
    /// WeChat Work markdown (robot and app).
    Markdown,
    /// One short line for SMS gateways that take free text.
    Sms,
}

impl TemplateKind {
    pub const ALL: [TemplateKind; 4] = [Self::EmailSubject, Self::EmailBody, Self::Markdown, Self::Sms];

    fn file(self) -> &'static str {
        match self {
            Self::EmailSubject => "email_subject",
            Self::EmailBody => "email_body",
            Self::Markdown => "markdown",
            Self::Sms => "sms",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template {name}: {message}")]
    Invalid { name: String, message: String },
    #[error("rendering {name}: {message}")]
    Render { name: String, message: String },
    #[error("strings for {lang}: {message}")]
    Strings { lang: &'static str, message: String },
}

struct Source {
    lang: Language,
    strings: &'static str,
    files: [(TemplateKind, &'static str); 4],
}

const SOURCES: [Source; 2] = [
    Source {
        lang: Language::ZhCn,
        strings: include_str!("zh-CN/strings.toml"),
        files: [
            (TemplateKind::EmailSubject, include_str!("zh-CN/email_subject.hbs")),
            (TemplateKind::EmailBody, include_str!("zh-CN/email_body.hbs")),
            (TemplateKind::Markdown, include_str!("zh-CN/markdown.hbs")),
            (TemplateKind::Sms, include_str!("zh-CN/sms.hbs")),
        ],
    },
    Source {
        lang: Language::En,
        strings: include_str!("en/strings.toml"),
        files: [
            (TemplateKind::EmailSubject, include_str!("en/email_subject.hbs")),
            (TemplateKind::EmailBody, include_str!("en/email_body.hbs")),
            (TemplateKind::Markdown, include_str!("en/markdown.hbs")),
            (TemplateKind::Sms, include_str!("en/sms.hbs")),
        ],
    },
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Strings {
    severity: BTreeMap<String, String>,
    status: BTreeMap<String, String>,
    duration: DurationUnits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DurationUnits {
    day: String,
    hour: String,
    minute: String,
    second: String,
}

/// China has kept UTC+8 without daylight saving since 1991, so a fixed offset is Asia/Shanghai
/// for every time an alert can carry.
pub fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// `2026-11-26 09:05:00` in Asia/Shanghai.
pub fn format_time(ms: i64) -> String {
    match shanghai().timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => ms.to_string(),
    }
}

/// RFC 3339 with the +08:00 offset (for JSON bodies).
pub fn rfc3339(ms: i64) -> String {
    let t: Option<DateTime<FixedOffset>> = shanghai().timestamp_millis_opt(ms).single();
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, false)).unwrap_or_default()
}

handlebars_helper!(json_helper: |v: Value| serde_json::to_string(&v).unwrap_or_default());

/// The compiled templates of every language.
pub struct Templates {
    hb: Handlebars<'static>,
    strings: HashMap<Language, Strings>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 3,
        "warning" => 2,
        "info" => 1,
        _ => 0,
    }
}

impl Templates {
    /// Compiles the embedded templates; fails only if a shipped file is broken (tests catch it).
    pub fn new() -> Result<Self, TemplateError> {
        let mut hb = new_registry();
        let mut strings = HashMap::new();
        for src in &SOURCES {
            let s: Strings = toml::from_str(src.strings)
                .map_err(|e| TemplateError::Strings { lang: src.lang.as_str(), message: e.to_string() })?;
            strings.insert(src.lang, s);
            for (kind, text) in src.files {
                let name = Self::name(src.lang, kind);
                hb.register_template_string(&name, text)
                    .map_err(|e| TemplateError::Invalid { name: name.clone(), message: e.to_string() })?;
            }
        }
        Ok(Self { hb, strings })
    }

    fn name(lang: Language, kind: TemplateKind) -> String {
        format!("{}/{}", lang.as_str(), kind.file())
    }

    /// Renders one of the shipped templates for `n` in `lang`.
    pub fn render(&self, kind: TemplateKind, n: &Notification, lang: Language) -> Result<String, TemplateError> {
        let ctx = self.context(n, lang);
        self.render_kind(kind, lang, &ctx)
    }

    pub fn render_kind(&self, kind: TemplateKind, lang: Language, ctx: &Value) -> Result<String, TemplateError> {
        let name = Self::name(lang, kind);
        let out = self.hb.render(&name, ctx).map_err(|e| TemplateError::Render { name, message: e.to_string() })?;
        Ok(match kind {
            // One line: header injection and SMS gateways both dislike newlines.
            TemplateKind::EmailSubject | TemplateKind::Sms => out.split_whitespace().collect::<Vec<_>>().join(" "),
            TemplateKind::EmailBody | TemplateKind::Markdown => out.trim().to_string() + "\n",
        })
    }

    /// Renders a template string from the config (SMS parameters, the HTTP SMS body).
    pub fn render_str(&self, name: &str, template: &str, ctx: &Value) -> Result<String, TemplateError> {
        self.hb
            .render_template(template, ctx)
            .map_err(|e| TemplateError::Render { name: name.to_string(), message: e.to_string() })
    }

    /// Checks a template string from the config at startup.
    pub fn check_str(name: &str, template: &str) -> Result<(), TemplateError> {
        handlebars::Template::compile(template)
            .map(|_| ())
            .map_err(|e| TemplateError::Invalid { name: name.to_string(), message: e.to_string() })
    }

    fn severity_name(&self, lang: Language, sev: &str) -> String {
        self.strings[&lang].severity.get(sev).cloned().unwrap_or_else(|| sev.to_string())
    }

    fn duration(&self, lang: Language, ms: i64) -> String {
        let u = &self.strings[&lang].duration;
        let mut s = (ms.max(0) / 1000) as u64;
        let (d, h, m) = (s / 86400, s % 86400 / 3600, s % 3600 / 60);
        s %= 60;
        let mut out = String::new();
        for (v, unit) in [(d, &u.day), (h, &u.hour), (m, &u.minute)] {
            if v > 0 || !out.is_empty() {
                out.push_str(&format!("{v}{unit}"));
            }
        }
        out.push_str(&format!("{s}{}", u.second));
        out
    }

    /// The data every template sees. Field names are part of the config surface (SMS
    /// parameters and the HTTP SMS body use them), so keep them stable.
    pub fn context(&self, n: &Notification, lang: Language) -> Value {
        let st = &self.strings[&lang];
        let resolved = n.status == NotificationStatus::Resolved;
        let status_key = if resolved { "resolved" } else { "firing" };
        let common_labels = common(n.alerts.iter().map(|a| &a.labels));
        let common_annotations = common(n.alerts.iter().map(|a| &a.annotations));
        let top = n.alerts.iter().map(|a| a.severity()).max_by_key(|s| severity_rank(s)).unwrap_or("");
        let title = common_labels
            .get(crate::model::ALERTNAME)
            .or_else(|| n.group_labels.get(crate::model::ALERTNAME))
            .cloned()
            .or_else(|| n.alerts.first().map(|a| a.name().to_string()))
            .unwrap_or_default();
        let host = common_labels.get("instance").or_else(|| common_labels.get("host")).cloned().unwrap_or_default();
        let alerts: Vec<Value> = n.alerts.iter().map(|a| self.alert_context(a, lang)).collect();
        let firing_count = n.alerts.iter().filter(|a| a.state != AlertState::Resolved).count();
        json!({
            "status": status_key,
            "status_name": st.status.get(status_key).cloned().unwrap_or_default(),
            "firing": !resolved,
            "resolved": resolved,
            "receiver": n.receiver,
            "group_key": n.group_key,
            "group_labels": n.group_labels,
            "common_labels": common_labels,
            "common_annotations": common_annotations,
            "title": title,
            "host": host,
            "severity": top,
            "severity_name": self.severity_name(lang, top),
            "summary": common_annotations.get("summary").cloned().unwrap_or_default(),
            "time": format_time(n.created_at_ms),
            "escalation_level": n.escalation_level,
            "alert_count": n.alerts.len(),
            "firing_count": firing_count,
            "resolved_count": n.alerts.len() - firing_count,
            "alerts": alerts,
        })
    }

    fn alert_context(&self, a: &Alert, lang: Language) -> Value {
        let st = &self.strings[&lang];
        let resolved = a.state == AlertState::Resolved;
        let status_key = if resolved { "resolved" } else { "firing" };
        let labels_text = a
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != crate::model::ALERTNAME)
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let value = if a.value.fract() == 0.0 && a.value.abs() < 1e15 {
            format!("{}", a.value as i64)
        } else {
            format!("{:.4}", a.value).trim_end_matches('0').to_string()
        };
        json!({
            "alertname": a.name(),
            "status": status_key,
            "status_name": st.status.get(status_key).cloned().unwrap_or_default(),
            "severity": a.severity(),
            "severity_name": self.severity_name(lang, a.severity()),
            "instance": a.labels.get("instance").or_else(|| a.labels.get("host")).cloned().unwrap_or_default(),
            "summary": a.annotations.get("summary").cloned().unwrap_or_default(),
            "description": a.annotations.get("description").cloned().unwrap_or_default(),
            "labels": a.labels,
            "annotations": a.annotations,
            "labels_text": labels_text,
            "value": value,
            "starts_at": format_time(a.starts_at_ms),
            "ends_at": a.ends_at_ms.map(format_time).unwrap_or_default(),
            "duration": a.ends_at_ms.map(|e| self.duration(lang, e - a.starts_at_ms)).unwrap_or_default(),
            "fingerprint": a.fingerprint(),
        })
    }
}

fn new_registry() -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    // Plain text, markdown and SMS: HTML escaping would corrupt them. JSON bodies use `json`.
    hb.register_escape_fn(handlebars::no_escape);
    hb.register_helper("json", Box::new(json_helper));
    hb
}

/// Labels (or annotations) shared by every alert with the same value.
pub fn common<'a>(mut maps: impl Iterator<Item = &'a LabelMap>) -> LabelMap {
    let Some(first) = maps.next() else { return LabelMap::new() };
    let mut out = first.clone();
    for m in maps {
        out.retain(|k, v| m.get(k) == Some(v));
    }
    out
}

/// Cuts `s` to at most `max` characters (Unicode scalar values, which is how Chinese SMS
/// providers count), ending with `…` when cut, never inside a character.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AlertSource;

    fn alert(name: &str, sev: &str, state: AlertState) -> Alert {
        let labels: LabelMap = [("alertname", name), ("severity", sev), ("instance", "his-db-01"), ("campus", "东院")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Alert {
            labels,
            annotations: [("summary".to_string(), "磁盘使用率 93%".to_string())].into_iter().collect(),
            state,
            starts_at_ms: 1_764_118_800_000, // 2025-11-26 01:00:00 UTC
            ends_at_ms: (state == AlertState::Resolved).then_some(1_764_118_800_000 + 330_000),
            value: 93.25,
            source: AlertSource::Rule("r1".into()),
        }
    }

    fn notification(status: NotificationStatus) -> Notification {
        let st = if status == NotificationStatus::Firing { AlertState::Firing } else { AlertState::Resolved };
        Notification {
            idempotency_key: "k1".into(),
            receiver: "oncall".into(),
            group_key: "g".into(),
            group_labels: LabelMap::new(),
            status,
            alerts: vec![alert("DiskFull", "critical", st)],
            created_at_ms: 1_764_118_800_000,
            escalation_level: 0,
        }
    }

    #[test]
    fn every_shipped_template_compiles_and_renders_in_both_languages() {
        let t = Templates::new().unwrap();
        for lang in [Language::ZhCn, Language::En] {
            for status in [NotificationStatus::Firing, NotificationStatus::Resolved] {
                for kind in TemplateKind::ALL {
                    let out = t.render(kind, &notification(status), lang).unwrap();
                    assert!(out.contains("DiskFull"), "{lang:?} {kind:?}: {out}");
                }
            }
        }
    }

    #[test]
    fn chinese_firing_and_resolved_subjects_with_shanghai_time() {
        let t = Templates::new().unwrap();
        let n = notification(NotificationStatus::Firing);
        let subject = t.render(TemplateKind::EmailSubject, &n, Language::ZhCn).unwrap();
        assert_eq!(subject, "[严重] DiskFull · 东院 · his-db-01");
        let body = t.render(TemplateKind::EmailBody, &n, Language::ZhCn).unwrap();
        assert!(body.contains("时间：2025-11-26 09:00:00（北京时间）"), "{body}");
        assert!(body.contains("摘要：磁盘使用率 93%"), "{body}");
        assert!(body.contains("当前值：93.25"), "{body}");
        let r = notification(NotificationStatus::Resolved);
        let subject = t.render(TemplateKind::EmailSubject, &r, Language::ZhCn).unwrap();
        assert_eq!(subject, "[已恢复] DiskFull · 东院 · his-db-01");
        let body = t.render(TemplateKind::EmailBody, &r, Language::ZhCn).unwrap();
        assert!(body.contains("结束：2025-11-26 09:05:30（持续 5分30秒）"), "{body}");
        let en = t.render(TemplateKind::EmailBody, &r, Language::En).unwrap();
        assert!(en.contains("lasted 5m30s"), "{en}");
        assert!(t.render(TemplateKind::EmailSubject, &n, Language::En).unwrap().starts_with("[CRITICAL] DiskFull"));
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate_chars("数据库磁盘已满", 5), "数据库磁…");
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "ab…");
    }
}
