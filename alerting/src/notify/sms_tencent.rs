//! Tencent Cloud SMS `SendSms` (API 2021-01-11) signed with TC3-HMAC-SHA256: canonical request
//! over `content-type;host;x-tc-action` and the SHA-256 of the JSON payload, string to sign
//! with `<date>/sms/tc3_request`, the key derived `TC3<secret>` → date → `sms` → `tc3_request`.
//! Template variables are cut to the configured per-variable limit.

use super::http::HttpClient;
use super::{BuildError, ConfigError, Message, Notifier, NotifyError, Receipt, TencentSmsConfig, secret};
use crate::templates::{Templates, truncate_chars};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

const SERVICE: &str = "sms";
const ACTION: &str = "SendSms";
const VERSION: &str = "2021-01-11";
const CONTENT_TYPE: &str = "application/json; charset=utf-8";

pub struct TencentSms {
    endpoint: String,
    host: String,
    secret_id: String,
    secret_key: String,
    sdk_app_id: String,
    sign_name: String,
    template_id: String,
    region: String,
    params: Vec<String>,
    max_chars: usize,
    http: HttpClient,
}

pub fn default_params() -> Vec<String> {
    vec!["{{title}}".into(), "{{status_name}}".into(), "{{time}}".into()]
}

fn hmac256(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The `Authorization` header for a POST of `payload` to `host` at unix time `timestamp`.
pub fn authorization(secret_id: &str, secret_key: &str, host: &str, timestamp: i64, payload: &str) -> String {
    let date = chrono::DateTime::from_timestamp(timestamp, 0).unwrap_or_default().format("%Y-%m-%d").to_string();
    let signed_headers = "content-type;host;x-tc-action";
    let canonical_request = format!(
        "POST\n/\n\ncontent-type:{CONTENT_TYPE}\nhost:{host}\nx-tc-action:{}\n\n{signed_headers}\n{}",
        ACTION.to_lowercase(),
        hex::encode(Sha256::digest(payload.as_bytes()))
    );
    let scope = format!("{date}/{SERVICE}/tc3_request");
    let to_sign =
        format!("TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{}", hex::encode(Sha256::digest(canonical_request.as_bytes())));
    let k_date = hmac256(format!("TC3{secret_key}").as_bytes(), &date);
    let k_service = hmac256(&k_date, SERVICE);
    let k_signing = hmac256(&k_service, "tc3_request");
    let signature = hex::encode(hmac256(&k_signing, &to_sign));
    format!("TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}")
}

/// Error codes that pass with time; the rest are rejections (bad template, signature, phone).
fn transient_code(code: &str) -> bool {
    code.starts_with("InternalError") || code.starts_with("LimitExceeded") || code == "RequestLimitExceeded"
}

impl TencentSms {
    pub fn new(c: &TencentSmsConfig, timeout: Duration) -> Result<Self, BuildError> {
        let params = if c.template_params.is_empty() { default_params() } else { c.template_params.clone() };
        for (i, t) in params.iter().enumerate() {
            Templates::check_str(&format!("tencent_sms.template_params[{i}]"), t)?;
        }
        let endpoint = c.endpoint.trim_end_matches('/').to_string();
        let host = endpoint.split_once("://").map(|(_, rest)| rest).unwrap_or(&endpoint);
        let host = host.split('/').next().unwrap_or("").to_string();
        if host.is_empty() {
            return Err(ConfigError::new("tencent_sms.endpoint", "has no host").into());
        }
        Ok(Self {
            endpoint,
            host,
            secret_id: secret("tencent_sms.secret_id", &c.secret_id)?,
            secret_key: secret("tencent_sms.secret_key", &c.secret_key)?,
            sdk_app_id: c.sdk_app_id.clone(),
            sign_name: c.sign_name.clone(),
            template_id: c.template_id.clone(),
            region: c.region.clone(),
            params,
            max_chars: c.max_param_chars,
            http: HttpClient::new(timeout, c.ca_file.as_deref(), "tencent_sms.ca_file")?,
        })
    }

    fn send(&self, phones: &[String], msg: &Message<'_>) -> Result<Receipt, NotifyError> {
        let ctx = msg.templates.context(msg.notification, msg.language);
        let mut values = Vec::new();
        for (i, t) in self.params.iter().enumerate() {
            let v = msg
                .templates
                .render_str(&format!("template_params[{i}]"), t, &ctx)
                .map_err(|e| NotifyError::Permanent(e.to_string()))?;
            values.push(truncate_chars(v.trim(), self.max_chars));
        }
        self.send_sms(phones, &self.template_id, &values, msg.dedup_id)
    }

    /// One TC3-signed `SendSms` call with the template's `{1}`, `{2}`, … values in order and
    /// `session_context` echoed back by the provider. Shared by the notification channel and
    /// the password-reset code sender.
    pub(crate) fn send_sms(
        &self,
        phones: &[String],
        template_id: &str,
        values: &[String],
        session_context: &str,
    ) -> Result<Receipt, NotifyError> {
        // E.164 is required; a bare 11-digit mainland number gets +86.
        let phones: Vec<String> =
            phones.iter().map(|p| if p.starts_with('+') { p.clone() } else { format!("+86{p}") }).collect();
        let payload = json!({
            "PhoneNumberSet": phones,
            "SmsSdkAppId": self.sdk_app_id,
            "SignName": self.sign_name,
            "TemplateId": template_id,
            "TemplateParamSet": values,
            "SessionContext": session_context,
        })
        .to_string();
        let ts = chrono::Utc::now().timestamp();
        let auth = authorization(&self.secret_id, &self.secret_key, &self.host, ts, &payload);
        let ts_s = ts.to_string();
        let headers = [
            ("Authorization", auth.as_str()),
            ("X-TC-Action", ACTION),
            ("X-TC-Version", VERSION),
            ("X-TC-Timestamp", ts_s.as_str()),
            ("X-TC-Region", self.region.as_str()),
        ];
        let v = self.http.post(&format!("{}/", self.endpoint), CONTENT_TYPE, &headers, payload.as_bytes())?.json()?;
        let resp = v.get("Response").cloned().unwrap_or(Value::Null);
        if let Some(err) = resp.get("Error") {
            let code = err.get("Code").and_then(Value::as_str).unwrap_or("");
            let e = format!("Tencent {code}: {}", err.get("Message").and_then(Value::as_str).unwrap_or(""));
            return Err(if transient_code(code) { NotifyError::Transient(e) } else { NotifyError::Permanent(e) });
        }
        let set = resp.get("SendStatusSet").and_then(Value::as_array).cloned().unwrap_or_default();
        let (ok, failed): (Vec<&Value>, Vec<&Value>) =
            set.iter().partition(|s| s.get("Code").and_then(Value::as_str) == Some("Ok"));
        let describe = |s: &Value| {
            format!(
                "{} {}",
                s.get("PhoneNumber").and_then(Value::as_str).unwrap_or("?"),
                s.get("Code").and_then(Value::as_str).unwrap_or("?")
            )
        };
        if ok.is_empty() {
            let codes: Vec<String> = failed.iter().map(|s| describe(s)).collect();
            let all_transient = !failed.is_empty()
                && failed.iter().all(|s| transient_code(s.get("Code").and_then(Value::as_str).unwrap_or("")));
            let e = format!("Tencent: no number accepted: {}", codes.join(", "));
            return Err(if all_transient { NotifyError::Transient(e) } else { NotifyError::Permanent(e) });
        }
        // Some numbers accepted: resending would page those people twice, so this is a
        // delivery, with the refused numbers recorded in the receipt.
        let serials: Vec<&str> = ok.iter().filter_map(|s| s.get("SerialNo").and_then(Value::as_str)).collect();
        let mut r = format!("SerialNo {}", serials.join(","));
        if !failed.is_empty() {
            r.push_str(&format!(" (refused: {})", failed.iter().map(|s| describe(s)).collect::<Vec<_>>().join(", ")));
        }
        Ok(Receipt(r))
    }
}

pub struct TencentChannel {
    sms: Arc<TencentSms>,
    phones: Vec<String>,
}

impl TencentChannel {
    pub fn new(sms: Arc<TencentSms>, phones: Vec<String>) -> Self {
        Self { sms, phones }
    }
}

impl Notifier for TencentChannel {
    fn send(&self, msg: &Message<'_>) -> Result<Receipt, NotifyError> {
        self.sms.send(&self.phones, msg)
    }
}
