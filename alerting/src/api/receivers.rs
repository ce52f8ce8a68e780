//! What the console shows about notification targets, and the "send a test message" button:
//! `GET /api/v1/alerting/receivers` (configured receivers and their channels, no secrets),
//! `GET /api/v1/alerting/routing/config` (the route tree, inhibition rules, time windows as
//! configured in the server's TOML) and `POST /api/v1/alerting/receivers/{name}/test`, which
//! sends one real test notification on every channel of the receiver through the same
//! notifiers as real alerts and answers each channel's outcome.
//!
//! The test bypasses the outbox on purpose: the person pressing the button wants to know now
//! whether each channel works, not a queued delivery that retries for minutes; and a test
//! message must not show up in the alert notification log or its summaries.

use super::error::{ApiError, ApiResult};
use super::{AppState, ok_json};
use crate::model::{Alert, AlertSource, AlertState, LabelMap, Notification, NotificationStatus};
use crate::notify::{self, ChannelConfig, Language, Message, NotifyConfig, NotifyError};
use crate::templates::Templates;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

/// The alert name a test notification carries, so receivers (and filters in their tools) can
/// tell it from a real alert.
pub const TEST_ALERTNAME: &str = "TingzhenTestMessage";

#[derive(Debug, thiserror::Error)]
pub enum TestSendError {
    #[error("receiver {0:?} is not configured in [alerting.notify]")]
    UnknownReceiver(String),
    #[error("the notifiers could not be built: {0}")]
    Build(#[from] notify::BuildError),
    #[error("notification templates: {0}")]
    Template(#[from] crate::templates::TemplateError),
}

/// One channel's answer to the test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelOutcome {
    pub channel: String,
    pub kind: String,
    /// `primary` or `fallback`.
    pub role: String,
    pub ok: bool,
    /// What the provider said when it accepted the message.
    pub receipt: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestBody {
    /// Who asked for the test (shown in the message).
    #[serde(default)]
    by: String,
}

fn test_notification(receiver: &str, language: Language, by: &str, now_ms: i64) -> Notification {
    let (summary, description) = match language {
        Language::ZhCn => (
            "听诊测试消息：此通知渠道工作正常".to_string(),
            format!(
                "这是一条由 {} 发起的测试消息，不是真实告警，无需处理。",
                if by.is_empty() { "管理员" } else { by }
            ),
        ),
        Language::En => (
            "tingzhen test message: this notification channel works".to_string(),
            format!(
                "This test message was requested by {}. It is not an alert; no action is needed.",
                if by.is_empty() { "an administrator" } else { by }
            ),
        ),
    };
    let labels: LabelMap = [
        ("alertname".to_string(), TEST_ALERTNAME.to_string()),
        ("severity".to_string(), "info".to_string()),
        ("receiver".to_string(), receiver.to_string()),
    ]
    .into();
    let annotations: LabelMap = [("summary".to_string(), summary), ("description".to_string(), description)].into();
    Notification {
        idempotency_key: format!("test:{receiver}:{now_ms}"),
        receiver: receiver.to_string(),
        group_key: format!("test:{receiver}"),
        group_labels: [("alertname".to_string(), TEST_ALERTNAME.to_string())].into(),
        status: NotificationStatus::Firing,
        alerts: vec![Alert {
            labels,
            annotations,
            state: AlertState::Firing,
            starts_at_ms: now_ms,
            ends_at_ms: None,
            value: 0.0,
            source: AlertSource::External("test".into()),
        }],
        created_at_ms: now_ms,
        escalation_level: 0,
    }
}

/// Sends a test notification to every channel (primary, then fallback) of `receiver`, with the
/// notifiers `build_receivers` makes for real deliveries, one channel after the other so a
/// slow provider's timeout is charged to that channel only.
pub async fn send_test(
    cfg: &NotifyConfig,
    receiver: &str,
    by: &str,
    now_ms: i64,
) -> Result<Vec<ChannelOutcome>, TestSendError> {
    if !cfg.receivers.iter().any(|r| r.name == receiver) {
        return Err(TestSendError::UnknownReceiver(receiver.to_string()));
    }
    let mut built = notify::build_receivers(cfg)?;
    let r = built.remove(receiver).ok_or_else(|| TestSendError::UnknownReceiver(receiver.to_string()))?;
    let templates = Arc::new(Templates::new()?);
    let n = Arc::new(test_notification(receiver, r.language, by, now_ms));
    let mut out = Vec::new();
    let channels = r.channels.iter().map(|c| (c, "primary")).chain(r.fallback.iter().map(|c| (c, "fallback")));
    for (ch, role) in channels {
        let (ch2, n2, t2, lang) = (ch.clone(), n.clone(), templates.clone(), r.language);
        let dedup = crate::outbox::dedup_id(&n.idempotency_key, receiver, &ch.name);
        let result = tokio::task::spawn_blocking(move || {
            let parts = AtomicU32::new(0);
            ch2.notifier.send(&Message {
                notification: &n2,
                language: lang,
                templates: &t2,
                dedup_id: &dedup,
                parts_done: &parts,
            })
        })
        .await
        .unwrap_or_else(|e| Err(NotifyError::Transient(format!("notifier failed: {e}"))));
        let (ok, receipt, error) = match result {
            Ok(r) => (true, Some(r.0), None),
            Err(e) => (false, None, Some(e.to_string())),
        };
        out.push(ChannelOutcome {
            channel: ch.name.clone(),
            kind: ch.kind.to_string(),
            role: role.to_string(),
            ok,
            receipt,
            error,
        });
    }
    Ok(out)
}

/// Who a channel reaches, without any credential.
fn channel_json(c: &ChannelConfig, name: &str, role: &str) -> Value {
    let to: Vec<String> = match c {
        ChannelConfig::Email { to, cc } => to.iter().chain(cc).cloned().collect(),
        ChannelConfig::WecomRobot { robot, mention_mobiles } => {
            std::iter::once(robot.clone()).chain(mention_mobiles.iter().map(|m| format!("@{m}"))).collect()
        }
        ChannelConfig::WecomApp { users, parties } => {
            users.iter().cloned().chain(parties.iter().map(|p| format!("party:{p}"))).collect()
        }
        ChannelConfig::Sms { phones, .. } => phones.clone(),
        ChannelConfig::Webhook { webhook } => vec![webhook.clone()],
    };
    json!({"name": name, "kind": c.kind(), "role": role, "to": to})
}

pub async fn list(State(state): State<AppState>) -> Response {
    let cfg = &state.config().notify;
    let receivers: Vec<Value> = cfg
        .receivers
        .iter()
        .map(|r| {
            let (pn, fnames) = r.channel_names();
            let channels: Vec<Value> = r
                .channels
                .iter()
                .zip(&pn)
                .map(|(c, n)| channel_json(c, n, "primary"))
                .chain(r.fallback.iter().zip(&fnames).map(|(c, n)| channel_json(c, n, "fallback")))
                .collect();
            json!({"name": r.name, "language": r.language.as_str(), "channels": channels})
        })
        .collect();
    let referenced = state.dispatcher().map(|d| d.receivers_referenced()).unwrap_or_default();
    ok_json(json!({"receivers": receivers, "referenced": referenced}))
}

pub async fn routing_config(State(state): State<AppState>) -> ApiResult<Response> {
    let routing = serde_json::to_value(&state.config().routing)
        .map_err(|e| ApiError::internal("routing config encoding failed", e))?;
    Ok(ok_json(json!({"routing": routing})))
}

pub async fn test(State(state): State<AppState>, Path(name): Path<String>, body: Bytes) -> ApiResult<Response> {
    let b: TestBody = if body.iter().all(u8::is_ascii_whitespace) {
        TestBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadData(format!("body: {e}")))?
    };
    let outcomes =
        send_test(&state.config().notify, &name, b.by.trim(), state.now_ms()).await.map_err(|e| match e {
            TestSendError::UnknownReceiver(_) => ApiError::NotFound(e.to_string()),
            other => ApiError::BadData(other.to_string()),
        })?;
    let ok = outcomes.iter().all(|o| o.ok);
    Ok(ok_json(json!({"receiver": name, "ok": ok, "channels": outcomes})))
}
