//! A generic HTTP SMS gateway (many hospitals run one in front of their carrier): the body is a
//! handlebars template from the config, filled with the message fields, the SMS text (cut to
//! the gateway's limit) and the phone numbers; one request for all numbers or one per number.

use super::http::HttpClient;
use super::{BuildError, HttpSmsConfig, Message, Notifier, NotifyError, Receipt, secret};
use crate::templates::{TemplateKind, Templates, truncate_chars};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub struct HttpSms {
    url: String,
    body: String,
    content_type: String,
    per_phone: bool,
    auth: Option<(String, String)>,
    max_chars: usize,
    http: HttpClient,
}

impl HttpSms {
    pub fn new(c: &HttpSmsConfig, timeout: Duration) -> Result<Self, BuildError> {
        Templates::check_str("http_sms.body", &c.body)?;
        let auth = match (&c.auth_header, &c.auth_secret) {
            (Some(h), Some(s)) => Some((h.clone(), secret("http_sms.auth_secret", s)?)),
            _ => None,
        };
        Ok(Self {
            url: c.url.clone(),
            body: c.body.clone(),
            content_type: c.content_type.clone(),
            per_phone: c.per_phone,
            auth,
            max_chars: c.max_chars,
            http: HttpClient::new(timeout, c.ca_file.as_deref(), "http_sms.ca_file")?,
        })
    }

    /// The gateway's message limit (`max_chars`).
    pub(crate) fn max_chars(&self) -> usize {
        self.max_chars
    }

    /// Renders the configured body over `ctx` and posts it. Shared by the notification channel
    /// and the password-reset code sender.
    pub(crate) fn post_rendered(&self, t: &Templates, ctx: &Value) -> Result<(), NotifyError> {
        let body = t.render_str("http_sms.body", &self.body, ctx).map_err(|e| NotifyError::Permanent(e.to_string()))?;
        self.post(&body)
    }

    fn post(&self, body: &str) -> Result<(), NotifyError> {
        let headers: Vec<(&str, &str)> = self.auth.iter().map(|(h, v)| (h.as_str(), v.as_str())).collect();
        self.http.post(&self.url, &self.content_type, &headers, body.as_bytes())?.check_status()
    }
}

pub struct HttpSmsChannel {
    sms: Arc<HttpSms>,
    phones: Vec<String>,
}

impl HttpSmsChannel {
    pub fn new(sms: Arc<HttpSms>, phones: Vec<String>) -> Self {
        Self { sms, phones }
    }
}

impl Notifier for HttpSmsChannel {
    fn send(&self, msg: &Message<'_>) -> Result<Receipt, NotifyError> {
        let t = msg.templates;
        let mut ctx = t.context(msg.notification, msg.language);
        let text =
            t.render_kind(TemplateKind::Sms, msg.language, &ctx).map_err(|e| NotifyError::Permanent(e.to_string()))?;
        ctx["text"] = json!(truncate_chars(&text, self.sms.max_chars));
        ctx["phones"] = json!(self.phones);
        ctx["dedup_id"] = json!(msg.dedup_id);
        if self.sms.per_phone {
            // One request per number; numbers already accepted are not texted again on retry.
            msg.for_each_part(&self.phones, |p| {
                ctx["phone"] = json!(p);
                self.sms.post_rendered(t, &ctx)
            })?;
        } else {
            self.sms.post_rendered(t, &ctx)?;
        }
        Ok(Receipt(format!("{} number(s)", self.phones.len())))
    }
}
