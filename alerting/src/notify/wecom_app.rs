//! WeChat Work application messages: `gettoken` → `access_token`, cached until shortly before
//! it expires and fetched again when the server says it is invalid or expired (errcode 40014,
//! 42001, 40001), then `message/send` to users (`touser`) and departments (`toparty`) with the
//! server's duplicate check on, which makes a resend after a crash a no-op within the interval.

use super::http::{HttpClient, percent_encode};
use super::wecom_robot::{check_errcode, split_utf8_lines};
use super::{BuildError, Message, Notifier, NotifyError, Receipt, WecomAppConfig, secret};
use crate::templates::TemplateKind;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The documented limit of an application markdown `content`, in bytes.
pub const APP_MARKDOWN_MAX_BYTES: usize = 2048;
/// Token errors: invalid credential, invalid access_token, access_token expired.
const TOKEN_ERRCODES: [i64; 3] = [40001, 40014, 42001];
/// Refresh this long before the announced expiry so a token never dies mid-request.
const EARLY_REFRESH: Duration = Duration::from_secs(300);

pub struct WecomAppClient {
    base: String,
    corp_id: String,
    agent_id: i64,
    secret: String,
    dup_interval_s: u64,
    http: HttpClient,
    token: Mutex<Option<(String, Instant)>>,
}

impl WecomAppClient {
    pub fn new(c: &WecomAppConfig, timeout: Duration) -> Result<Self, BuildError> {
        Ok(Self {
            base: c.api_base.trim_end_matches('/').to_string(),
            corp_id: c.corp_id.clone(),
            agent_id: c.agent_id,
            secret: secret("wecom_app.secret", &c.secret)?,
            dup_interval_s: c.duplicate_check_interval.0.as_secs().clamp(1, 4 * 3600),
            http: HttpClient::new(timeout, c.ca_file.as_deref(), "wecom_app.ca_file")?,
            token: Mutex::new(None),
        })
    }

    fn token(&self) -> Result<String, NotifyError> {
        if let Some((t, until)) = &*self.token.lock()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let url = format!(
            "{}/cgi-bin/gettoken?corpid={}&corpsecret={}",
            self.base,
            percent_encode(&self.corp_id),
            percent_encode(&self.secret)
        );
        let v = self.http.get(&url)?.json()?;
        check_errcode(&v)?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| NotifyError::Transient("gettoken answer has no access_token".into()))?
            .to_string();
        let ttl = Duration::from_secs(v.get("expires_in").and_then(Value::as_u64).unwrap_or(7200));
        let until = Instant::now() + ttl.saturating_sub(EARLY_REFRESH).max(Duration::from_secs(1));
        *self.token.lock() = Some((token.clone(), until));
        Ok(token)
    }

    /// Forgets `used` if it is still the cached token (another thread may have refreshed it).
    fn invalidate(&self, used: &str) {
        let mut g = self.token.lock();
        if g.as_ref().is_some_and(|(t, _)| t == used) {
            *g = None;
        }
    }

    fn send_body(&self, body: &Value) -> Result<Value, NotifyError> {
        for _ in 0..2 {
            let token = self.token()?;
            let url = format!("{}/cgi-bin/message/send?access_token={}", self.base, percent_encode(&token));
            let v = self.http.post_json(&url, &[], body)?.json()?;
            let code = v.get("errcode").and_then(Value::as_i64).unwrap_or(-1);
            if TOKEN_ERRCODES.contains(&code) {
                self.invalidate(&token);
                continue;
            }
            check_errcode(&v)?;
            return Ok(v);
        }
        Err(NotifyError::Transient("access_token rejected twice in a row".into()))
    }
}

pub struct AppChannel {
    client: Arc<WecomAppClient>,
    users: Vec<String>,
    parties: Vec<String>,
}

impl AppChannel {
    pub fn new(client: Arc<WecomAppClient>, users: Vec<String>, parties: Vec<String>) -> Self {
        Self { client, users, parties }
    }
}

impl Notifier for AppChannel {
    fn send(&self, msg: &Message<'_>) -> Result<Receipt, NotifyError> {
        let text = msg
            .templates
            .render(TemplateKind::Markdown, msg.notification, msg.language)
            .map_err(|e| NotifyError::Permanent(e.to_string()))?;
        let mut ids = Vec::new();
        let mut invalid = Vec::new();
        let parts = split_utf8_lines(&text, APP_MARKDOWN_MAX_BYTES);
        msg.for_each_part(&parts, |part| {
            let mut body = json!({
                "msgtype": "markdown",
                "agentid": self.client.agent_id,
                "markdown": {"content": part},
                "enable_duplicate_check": 1,
                "duplicate_check_interval": self.client.dup_interval_s,
            });
            if !self.users.is_empty() {
                body["touser"] = json!(self.users.join("|"));
            }
            if !self.parties.is_empty() {
                body["toparty"] = json!(self.parties.join("|"));
            }
            let v = self.client.send_body(&body)?;
            if let Some(id) = v.get("msgid").and_then(Value::as_str) {
                ids.push(id.to_string());
            }
            for k in ["invaliduser", "invalidparty"] {
                if let Some(s) = v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()) {
                    invalid.push(format!("{k}={s}"));
                }
            }
            Ok(())
        })?;
        let mut receipt = format!("msgid {}", ids.join(","));
        if !invalid.is_empty() {
            receipt.push_str(&format!(" ({})", invalid.join(" ")));
        }
        Ok(Receipt(receipt))
    }
}
